"""The audit pipeline in one place: sample latents -> generate -> embed -> accumulate -> report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from gancheck.engine import CollapseAccumulator
from gancheck.errors import GancheckError
from gancheck.stats import MCCS_FORMS, check_thresholds, distinct_modes, mccs, population_stats, worst_mode

NO_FACE_POLICIES = ("exclude", "keep")
#: How many images with no detected face are kept as PNGs for inspection.
NO_FACE_SAMPLES = 16

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

    def validate(self) -> None:
        if self.n < 1 or self.anchors < 2:
            raise GancheckError(f"--n must be at least 1 and --anchors at least 2 (got n={self.n}, anchors={self.anchors})")
        if self.mccs_form not in MCCS_FORMS:
            raise GancheckError(f"--mccs-form must be one of {', '.join(MCCS_FORMS)}, got {self.mccs_form!r}")
        if self.no_face not in NO_FACE_POLICIES:
            raise GancheckError(f"--no-face must be one of {', '.join(NO_FACE_POLICIES)}, got {self.no_face!r}")
        if self.batch_size < 1 or self.chunk_size < 1:
            raise GancheckError("--batch-size and --chunk-size must be positive")


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
    no_face_samples: list = field(default_factory=list)  # (sample index, image) pairs


def embed_indices(source, embedder, indices, batch_size, keep_no_face, on_batch=None):
    """Generate and embed ``indices`` in batches; yields (indices, vectors, found, images)."""
    for start in range(0, len(indices), batch_size):
        idx = indices[start : start + batch_size]
        images = source.images(idx)
        vectors, found = embedder.embed(images)
        vectors = np.asarray(vectors, dtype=np.float32)
        found = np.asarray(found, dtype=bool)
        if keep_no_face:
            # Every image without a face becomes the same extra-axis point: its own "no face" mode.
            vectors = np.concatenate([np.where(found[:, None], vectors, 0.0), (~found)[:, None]], axis=1).astype(np.float32)
        if on_batch:
            on_batch(len(idx))
        yield idx, vectors, found, images


def run_audit(source, embedder, config: AuditConfig, progress: Progress | None = None, on_embeddings=None) -> AuditResult:
    """Audit ``source`` (a :class:`gancheck.generators.Source`) with ``embedder``.

    ``progress(stage, done, total)`` is called as work advances; ``on_embeddings(indices, vectors)``
    receives the collection's embeddings batch by batch (to save them).
    """
    config.validate()
    theta = embedder.default_theta if config.theta is None else float(config.theta)
    radius = embedder.default_radius if config.radius is None else float(config.radius)
    check_thresholds(theta, radius)
    source.prepare(config.seed)
    keep = config.no_face == "keep"
    tick = _ticker(progress)

    a_idx = source.anchor_indices(config.anchors)
    parts = list(embed_indices(source, embedder, a_idx, config.batch_size, keep, tick("anchors", len(a_idx))))
    a_vec = np.concatenate([p[1] for p in parts])
    a_found = np.concatenate([p[2] for p in parts])
    usable = a_found | keep
    if usable.sum() < 2:
        raise GancheckError(f"the descriptor found no face in {int((~a_found).sum())} of {len(a_found)} anchor images; check --align, the generator's output, or use --no-face keep")
    acc = CollapseAccumulator(a_vec[usable], theta, radius, backend=config.backend, tile=config.chunk_size,
                              keep_neighbors=config.neighbors_k, checkpoints=convergence_grid(config.n))

    c_idx = source.collection_indices(config.n, config.anchors)
    no_face_count, samples = 0, []
    for idx, vec, found, images in embed_indices(source, embedder, c_idx, config.batch_size, keep, tick("samples", len(c_idx))):
        use = found | keep
        acc.update(vec[use], idx[use])
        if on_embeddings is not None:
            on_embeddings(idx[use], vec[use])
        missing = np.flatnonzero(~found)
        no_face_count += len(missing)
        samples.extend((int(idx[i]), images[i]) for i in missing[: NO_FACE_SAMPLES - len(samples)])
    res = acc.result()
    if res["n"] == 0:
        raise GancheckError(f"the descriptor found no face in any of the {len(c_idx)} samples; check --align or the generator's output")

    scores = mccs(res["m"], config.mccs_form)
    modes = distinct_modes(a_vec[usable], res["neighbors"], scores, radius, config.top_k)
    nearest = {i: (acc.nn_index[i][acc.nn_index[i] >= 0], acc.nn_dist[i][acc.nn_index[i] >= 0]) for i in modes}
    if acc.display is not None:
        nearest[acc.display] = (acc.display_index[acc.display_index >= 0], acc.display_dist[acc.display_index >= 0])
    total = len(c_idx) + len(a_idx)
    return AuditResult(
        config=config, theta=theta, radius=radius,
        anchor_index=a_idx[usable], anchor_vectors=a_vec[usable],
        m=res["m"], scores=scores, neighbors=res["neighbors"], n_samples=res["n"],
        modes=modes, nearest=nearest, radii=res["radii"], radial=res["radial"],
        convergence=[convergence_row(n, m, nr, config.mccs_form) for n, m, nr in acc.snapshots + [(res["n"], res["m"], res["neighbors"])]],
        no_face={"policy": config.no_face, "count": int(no_face_count + (~a_found).sum()), "rate": float((no_face_count + (~a_found).sum()) / total),
                 "collection_count": int(no_face_count), "anchor_count": int((~a_found).sum())},
        no_face_samples=samples,
    )


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
        "config": asdict(result.config),
    }


def _finite(x) -> float | None:
    """JSON has no infinity: the reference MCCS form is infinite at m = 1; that is written as null."""
    x = float(x)
    return x if np.isfinite(x) else None
