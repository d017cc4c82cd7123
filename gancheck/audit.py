"""The audit pipeline in one place: sample latents -> generate -> embed -> accumulate -> report."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from gancheck.errors import GancheckError
from gancheck.stats import MCCS_FORMS, check_thresholds, distinct_modes, mccs, population_stats, worst_mode

NO_FACE_POLICIES = ("exclude", "keep")
NAN_POLICIES = ("stop", "skip")
EXECUTORS = ("local", "ray")
RADIAL_BINS = 16

Progress = Callable[[str, int, int], None]


@dataclass
class AuditConfig:
    """Settings of one audit. ``theta``/``radius`` default to the embedder's own."""

    n: int = 10_000
    anchors: int = 1_000
    seed: int = 0
    theta: float | None = None
    radius: float | None = None
    mccs_form: str = "paper"
    batch_size: int = 64
    chunk_size: int = 4096
    backend: str = "auto"
    top_k: int = 24
    neighbors_k: int = 80
    no_face: str = "exclude"
    save_embeddings: bool = False
    shard_size: int = 16_384
    on_nan: str = "stop"
    retries: int = 2
    executor: str = "local"
    workers: int = 1
    ray_address: str | None = None

    def validate(self) -> None:
        if self.n < 1 or self.anchors < 2:
            raise GancheckError(f"--n must be at least 1 and --anchors at least 2 (got n={self.n}, anchors={self.anchors})")
        if self.mccs_form not in MCCS_FORMS:
            raise GancheckError(f"--mccs-form must be one of {', '.join(MCCS_FORMS)}, got {self.mccs_form!r}")
        if self.no_face not in NO_FACE_POLICIES:
            raise GancheckError(f"--no-face must be one of {', '.join(NO_FACE_POLICIES)}, got {self.no_face!r}")
        if self.on_nan not in NAN_POLICIES:
            raise GancheckError(f"--on-nan must be one of {', '.join(NAN_POLICIES)}, got {self.on_nan!r}")
        if self.executor not in EXECUTORS:
            raise GancheckError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if min(self.batch_size, self.chunk_size, self.shard_size, self.workers) < 1 or self.retries < 0:
            raise GancheckError("--batch-size, --chunk-size, --shard-size and --workers must be positive, --retries not negative")


@dataclass
class AuditResult:
    """Everything an audit measured; :mod:`gancheck.report` turns it into files."""

    config: AuditConfig
    theta: float
    radius: float
    anchor_index: np.ndarray  # (m,) sample indices of the anchors used
    anchor_vectors: np.ndarray  # (m, D)
    m: np.ndarray  # (m,) Eq. 6
    scores: np.ndarray  # (m,) Eq. 7
    neighbors: np.ndarray  # (m,) N_r
    n_samples: int  # |C| actually used
    modes: list[int]  # anchor positions of the distinct modes, strongest first
    nearest: dict  # anchor position -> (sample indices, distances), nearest first
    radii: np.ndarray  # (R,) radii of the radial counts
    radial: np.ndarray  # (m, R) N_radius per anchor
    convergence: list  # dicts of n, mccs_mean, mccs_std, worst_mccs, worst_neighbor_fraction
    no_face: dict = field(default_factory=dict)
    skipped_nan: int = 0
    no_face_samples: list = field(default_factory=list)  # (sample index, image) pairs


def run_audit(source, embedder, config: AuditConfig, progress: Progress | None = None, run_dir: Path | None = None,
              resume: bool = False, rebuild: dict | None = None, log: Callable[[str], None] | None = None) -> AuditResult:
    """Audit ``source`` (a :class:`gancheck.generators.Source`) with ``embedder``.

    ``progress(stage, done, total)`` is called as work advances. With ``run_dir`` the collection
    is processed in checkpointed shards (``resume`` continues a killed run there); ``rebuild``
    (generator, embedder and their options) lets other processes rebuild both for
    ``config.executor == "ray"``.
    """
    from gancheck import shards as sh
    from gancheck.engine import Partial, radial_grid
    from gancheck.executors import shard_results
    from gancheck.pipeline import NO_FACE_SAMPLES, Worker

    config.validate()
    theta = embedder.default_theta if config.theta is None else float(config.theta)
    radius = embedder.default_radius if config.radius is None else float(config.radius)
    check_thresholds(theta, radius)
    source.prepare(config.seed)
    tick = _ticker(progress)
    state = None
    if run_dir is not None:
        state = sh.State(run_dir, fingerprint(config, theta, radius, source, embedder))
        for warning in (state.load() if resume else []):
            print(f"gancheck: {warning}", file=sys.stderr)  # always: a redone shard must not go unnoticed

    worker = Worker(source, embedder, None, theta, radius, config)
    a_idx = source.anchor_indices(config.anchors)
    a_vec, a_found, a_ok = _anchors(worker, a_idx, run_dir, state, tick("anchors", len(a_idx)))
    usable = a_ok & (a_found | (config.no_face == "keep"))
    if usable.sum() < 2:
        raise GancheckError(f"only {int(usable.sum())} of {len(a_idx)} anchor images could be described (no face or NaN); "
                            "check --align and the generator's output, or use --no-face keep")
    worker.anchors = a_vec[usable]
    if log and run_dir is not None:
        log(f"run directory {run_dir}: about {run_size(len(worker.anchors), a_vec.shape[1], config) / 2**20:,.0f} MiB when finished")

    c_idx = source.collection_indices(config.n, config.anchors)
    parts = sh.plan(c_idx, config.shard_size)
    checkpoints = [int(c_idx[g]) for g in convergence_grid(len(c_idx))]
    done = {j for j in state.done if j != sh.ANCHORS} if state else set()
    todo = [j for j in range(len(parts)) if j not in done]
    on_batch = tick("samples", len(c_idx))
    if done:
        on_batch(sum(len(parts[j]) for j in done))
    computed = shard_results(config, worker, parts, checkpoints, todo, on_batch, rebuild)

    total = Partial.zeros(int(usable.sum()), config.neighbors_k, RADIAL_BINS)
    no_face, skipped, samples, pending = 0, 0, [], {}
    for j in range(len(parts)):
        if j in done:
            r = sh.read_shard(state.shard_path(j))
        else:
            while j not in pending:
                r = next(computed)
                if state is not None:
                    try:
                        state.mark(r.index, *sh.write_shard(run_dir, r))
                    except OSError as exc:
                        raise GancheckError(f"cannot write shard {r.index} to {run_dir} ({exc.strerror or exc}); free disk space or fix "
                                            f"permissions, then rerun with --resume ({len(state.done)} finished checkpoints are kept)") from None
                pending[r.index] = r
            r = pending.pop(j)
        total.merge(r.partial)
        no_face, skipped = no_face + r.no_face, skipped + r.skipped_nan
        samples.extend(r.no_face_samples[: NO_FACE_SAMPLES - len(samples)])
    if total.n == 0:
        raise GancheckError(f"none of the {len(c_idx)} samples could be described (no face or NaN); check --align or the generator's output")

    m = total.sim_sum / total.n
    scores = mccs(m, config.mccs_form)
    modes = distinct_modes(worker.anchors, total.neighbors, scores, radius, config.top_k)
    nearest = {i: (total.nn_index[i][total.nn_index[i] >= 0], total.nn_dist[i][total.nn_index[i] >= 0]) for i in modes}
    if config.neighbors_k:
        nearest.setdefault(0, (total.display_index[total.display_index >= 0], total.display_dist[total.display_index >= 0]))
    a_missing = int((a_ok & ~a_found).sum())
    rows = [convergence_row(n, s / n, nb, config.mccs_form) for _, n, s, nb in total.snapshots if n > 0]
    return AuditResult(
        config=config, theta=theta, radius=radius,
        anchor_index=a_idx[usable], anchor_vectors=worker.anchors,
        m=m, scores=scores, neighbors=total.neighbors, n_samples=total.n,
        modes=modes, nearest=nearest, radii=radial_grid(theta, radius, RADIAL_BINS), radial=total.radial,
        convergence=rows + [convergence_row(total.n, m, total.neighbors, config.mccs_form)],
        no_face={"policy": config.no_face, "count": no_face + a_missing, "rate": (no_face + a_missing) / (len(c_idx) + len(a_idx)),
                 "collection_count": no_face, "anchor_count": a_missing},
        skipped_nan=skipped + int((~a_ok).sum()),
        no_face_samples=samples,
    )


def _anchors(worker, a_idx, run_dir, state, on_batch):
    """Anchor embeddings (vectors, found, ok), from the run's checkpoint when resuming."""
    from gancheck import shards as sh

    if state is not None and sh.ANCHORS in state.done:  # State.load verified its checksum
        on_batch(len(a_idx))
        return sh.read_anchors(run_dir)
    vec, found, ok = worker.embed_all(a_idx, on_batch)
    if state is not None:
        state.mark(sh.ANCHORS, *sh.write_anchors(run_dir, a_idx, vec, found, ok))
    return vec, found, ok


def run_size(m: int, dim: int, config: AuditConfig) -> int:
    """Upper estimate of a finished run directory's bytes (latents are never stored: they are
    reproducible from the seed)."""
    shards = -(-config.n // config.shard_size)
    per_anchor = 8 + 8 + 8 * RADIAL_BINS + 16 * config.neighbors_k  # sums, counts, radial, nearest
    snapshots = len(convergence_grid(config.n)) * m * 16
    tables = m * (4 * dim + 8 * RADIAL_BINS + 40) * 2  # anchors.parquet and its checkpoint
    embeddings = 2 * config.n * (4 * dim + 8) if config.save_embeddings else 0  # shards + combined file
    return shards * m * per_anchor + snapshots + tables + embeddings


def fingerprint(config: AuditConfig, theta: float, radius: float, source, embedder) -> dict:
    """Everything a run's numbers depend on; a resumed run must match it exactly."""
    keep = {k: v for k, v in asdict(config).items() if k not in ("batch_size", "chunk_size", "backend", "executor", "workers", "ray_address", "retries")}
    return json.loads(json.dumps(dict(keep, theta=theta, radius=radius, generator=source.describe(), embedder=embedder.describe()), default=str))


def convergence_grid(n: int) -> list[int]:
    """Collection sizes 10^2, 10^2.25, ... below n at which the statistics are recorded (Fig. 2)."""
    return sorted({int(round(10 ** e)) for e in np.arange(2.0, np.log10(max(n, 1)), 0.25)} - {n})


def convergence_row(n: int, m: np.ndarray, neighbors: np.ndarray, form: str) -> dict:
    scores = mccs(m, form)
    mu, sigma = population_stats(scores)
    w = worst_mode(neighbors, scores)
    return {"n": int(n), "mccs_mean": mu, "mccs_std": sigma, "worst_mccs": float(scores[w]), "worst_neighbor_fraction": float(neighbors[w] / n)}


def _ticker(progress: Progress | None):
    def make(stage: str, total: int):
        done = [0]
        if progress:
            progress(stage, 0, total)

        def on_batch(k: int):
            done[0] += k
            if progress:
                progress(stage, done[0], total)

        return on_batch

    return make


def summary(result: AuditResult) -> dict:
    """The report's figures (the keys other tools read), from an :class:`AuditResult`."""
    mu, sigma = population_stats(result.scores)
    w = worst_mode(result.neighbors, result.scores)
    n = result.n_samples

    def mode(i: int, rank: int) -> dict:
        return {"rank": rank, "sample_index": int(result.anchor_index[i]), "neighbors": int(result.neighbors[i]),
                "neighbor_fraction": float(result.neighbors[i] / n), "mccs": _finite(result.scores[i]), "m": float(result.m[i])}

    worst = mode(w, 1)
    worst.pop("rank")
    return {
        "n_samples": n,
        "n_anchors": int(len(result.anchor_index)),
        "theta": result.theta,
        "radius": result.radius,
        "mccs_form": result.config.mccs_form,
        "mccs_formula": "1/(1-ln m)" if result.config.mccs_form == "paper" else "1/(-log10 m)",
        "seed": result.config.seed,
        "mccs": {"mean": _finite(mu), "std": _finite(sigma), "min": _finite(np.min(result.scores)),
                 "median": _finite(np.median(result.scores)), "max": _finite(np.max(result.scores))},
        "worst_mode": worst,
        "modes": [mode(i, r + 1) for r, i in enumerate(result.modes)],
        "no_face": result.no_face,
        "skipped_nan": result.skipped_nan,
        "config": asdict(result.config),
    }


def _finite(x) -> float | None:
    """JSON has no infinity: the reference MCCS form is infinite at m = 1; that is written as null."""
    x = float(x)
    return x if np.isfinite(x) else None
