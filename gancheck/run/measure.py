"""The measurement of an audit: sample latents -> generate -> embed -> accumulate, checkpointed into
its staging directory, into an in-memory :class:`gancheck.run.result.AuditResult`. The whole audit
(inputs, staging, this, analysis, files, page) is :mod:`gancheck.audits`."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from gancheck.engine.accumulator import Partial, radial_grid
from gancheck.engine.executors import plan, shard_results
from gancheck.engine.memory import release_free_memory
from gancheck.engine.pipeline import BATCHES_IN_FLIGHT, NO_FACE_SAMPLES, ShardMeasurer, retrying, running
from gancheck.errors import GancheckError
from gancheck.formatting import format_bytes, format_duration
from gancheck.run import shards as sh
from gancheck.run.fingerprint import calibrator_hash, run_fingerprint
from gancheck.maths import check_thresholds, distinct_modes, expected_similarity, mccs
from gancheck.run.config import RADIAL_BINS, AuditConfig
from gancheck.run.result import AuditResult, convergence_grid, convergence_row

Progress = Callable[[str, int, int], None]


def measure(source, embedder, config: AuditConfig, progress: Progress | None = None, run_dir: Path | None = None,
            resume: bool = False, specs: dict | None = None, log: Callable[[str], None] | None = None) -> AuditResult:
    """Measure ``source`` (a :class:`gancheck.sources.Source`, prepared here by its probe batch) with
    ``embedder``.

    ``progress(stage, done, total)`` is called as work advances. With ``run_dir`` the collection
    is processed in checkpointed shards (``resume`` continues a killed run there); ``specs``
    (generator, embedder and their options, as :func:`gancheck.inputs.build_inputs` takes them)
    lets other processes rebuild both for ``config.executor == "ray"``.
    """
    config.validate()
    theta = embedder.default_theta if config.theta is None else float(config.theta)
    radius = embedder.default_radius if config.radius is None else float(config.radius)
    check_thresholds(theta, radius)
    source.allow_nan = config.on_nan == "skip"  # before the probe batch, which may hold NaN too
    retrying(lambda: source.prepare(config.seed), "the generator's probe batch", config.retries, config.timeout)
    tick = stage_ticker(progress)
    state = None
    if run_dir is not None:
        state = sh.State(run_dir, fingerprint(config, theta, radius, source, embedder, specs))
        for warning in (state.load() if resume else []):
            print(f"gancheck: {warning}", file=sys.stderr)  # always: a redone shard must not go unnoticed

    with running():  # a SIGTERM/SIGINT now stops at the next batch boundary, finished shards kept
        return _measure(source, embedder, config, theta, radius, run_dir, state, tick, specs, log)


def _measure(source, embedder, config: AuditConfig, theta: float, radius: float, run_dir, state, tick, specs, log) -> AuditResult:
    """Anchors, then the collection shard by shard (checkpointed in ``state``), then the statistics."""
    measurer = ShardMeasurer(source, embedder, None, theta, radius, config)
    a_idx = anchor_indices(source, config)
    resumed, meter = state is not None and sh.ANCHORS in state.done, RateMeter(tick("anchors", len(a_idx)))
    a_vec, a_found, a_ok = _anchors(measurer, a_idx, run_dir, state, meter)
    rate = None if resumed else meter.rate()
    usable = a_ok & (a_found | (config.no_face == "keep"))
    if usable.sum() < 2:
        raise GancheckError(f"only {int(usable.sum())} of {len(a_idx)} anchor images could be described (no face or NaN); "
                            "check --align and the generator's output, or use --no-face keep")
    measurer.anchors = a_vec[usable]
    c_idx = source.collection_indices(config.n, config.anchors)
    _limits(len(measurer.anchors), a_vec.shape[1], config, run_dir, rate, log)
    total, no_face, skipped, samples = _collection(measurer, c_idx, config, run_dir, state, tick, specs)
    a_missing = int((a_ok & ~a_found).sum())
    counts = {"no_face": {"policy": config.no_face, "count": no_face + a_missing, "rate": (no_face + a_missing) / (len(c_idx) + len(a_idx)),
                          "collection_count": no_face, "anchor_count": a_missing},
              "skipped_nan": skipped + int((~a_ok).sum()), "no_face_samples": samples}
    return _result(total, measurer.anchors, a_idx[usable], config, theta, radius, counts)


def _collection(measurer, c_idx, config: AuditConfig, run_dir, state, tick, specs):
    """The collection's merged partial sums, shard by shard in order, and what was not described:
    ``(total, no_face, skipped_nan, no_face_samples)``. Finished shards are read back, new ones
    checkpointed as they arrive."""
    parts = plan(c_idx, config.shard_size)
    checkpoints = [int(c_idx[g]) for g in convergence_grid(len(c_idx))]
    done = {j for j in state.done if j != sh.ANCHORS} if state else set()
    on_batch = tick("samples", len(c_idx), sum(len(parts[j]) for j in done))  # a resumed run starts at its shards
    computed = shard_results(config, measurer, parts, checkpoints, (j for j in range(len(parts)) if j not in done), on_batch, specs)
    total = Partial.zeros(len(measurer.anchors), config.neighbors_k, RADIAL_BINS)
    no_face, skipped, samples, pending = 0, 0, [], {}
    for j in range(len(parts)):
        if j in done:
            r = sh.read_shard(state.shard_path(j))
        else:
            while j not in pending:
                r = next(computed)
                if state is not None:
                    _checkpoint(state, run_dir, r)
                pending[r.index] = r
            r = pending.pop(j)
            release_free_memory()  # what this shard's batches freed
        total.merge(r.partial)
        no_face, skipped = no_face + r.no_face, skipped + r.skipped_nan
        samples.extend(r.no_face_samples[: NO_FACE_SAMPLES - len(samples)])
    if total.n == 0:
        raise GancheckError(f"none of the {len(c_idx)} samples could be described (no face or NaN); check --align or the generator's output")
    return total, no_face, skipped, samples


def _checkpoint(state, run_dir, r) -> None:
    try:
        state.mark(r.index, *sh.write_shard(run_dir, r))
    except OSError as exc:
        raise GancheckError(f"cannot write shard {r.index} to {run_dir} ({exc.strerror or exc}); free disk space or fix "
                            f"permissions, then rerun with --resume ({len(state.done)} finished checkpoints are kept)") from None


def _result(total: Partial, anchors: np.ndarray, anchor_index: np.ndarray, config: AuditConfig, theta: float, radius: float,
            counts: dict) -> AuditResult:
    """Eqs. 6-9 over the merged sums: m, MCCS, the distinct modes, their neighbours, convergence rows."""
    m = expected_similarity(total.sim_sum, total.n)
    scores = mccs(m, config.mccs_form)
    modes = distinct_modes(anchors, total.neighbors, scores, radius, config.top_k)
    nearest = {i: (total.nn_index[i][total.nn_index[i] >= 0], total.nn_dist[i][total.nn_index[i] >= 0]) for i in modes}
    if config.neighbors_k:
        nearest.setdefault(0, (total.display_index[total.display_index >= 0], total.display_dist[total.display_index >= 0]))
    rows = [convergence_row(n, expected_similarity(s, n), nb, config.mccs_form) for _, n, s, nb in total.snapshots if n > 0]
    return AuditResult(
        config=config, theta=theta, radius=radius, anchor_index=anchor_index, anchor_vectors=anchors,
        m=m, scores=scores, neighbors=total.neighbors, n_samples=total.n,
        modes=modes, nearest=nearest, radii=radial_grid(theta, radius, RADIAL_BINS), radial=total.radial,
        convergence=rows + [convergence_row(total.n, m, total.neighbors, config.mccs_form)], **counts)


def anchor_indices(source, config: AuditConfig) -> np.ndarray:
    """The anchors' sample indices: apart from C (Eq. 8), or C's first samples under the published
    code's protocol (so that each anchor's m counts the anchor itself, as theirs does)."""
    if config.protocol == "reference":
        return np.asarray(source.collection_indices(config.n, config.anchors)[: config.anchors], dtype=np.int64)
    return source.anchor_indices(config.anchors)


def _anchors(measurer, a_idx, run_dir, state, on_batch):
    """Anchor embeddings (vectors, found, ok), from the run's checkpoint when resuming."""
    if state is not None and sh.ANCHORS in state.done:  # State.load verified its checksum
        on_batch(len(a_idx))
        return sh.read_anchors(run_dir)
    vec, found, ok = measurer.embed_all(a_idx, on_batch)
    if state is not None:
        state.mark(sh.ANCHORS, *sh.write_anchors(run_dir, a_idx, vec, found, ok))
    return vec, found, ok


class RateMeter:
    """Passes each batch on to ``on_batch`` and measures the throughput after the first batch (which
    pays the sessions' warm-up: counted, it made the demo's estimate ten times too long)."""

    def __init__(self, on_batch):
        self.on_batch, self.first, self.done = on_batch, None, 0

    def __call__(self, k: int) -> None:
        self.on_batch(k)
        if self.first is None:
            self.first = time.perf_counter()
        else:
            self.done += k

    def rate(self) -> float | None:
        seconds = time.perf_counter() - self.first if self.first is not None else 0.0
        return self.done / seconds if self.done and seconds > 0 else None


def _limits(m: int, dim: int, config: AuditConfig, run_dir, rate: float | None, log) -> None:
    """Before the collection: refuse a run directory larger than the free space where it is written,
    and say how large it will be and, from the anchors' throughput, how long the collection takes."""
    size = run_size(m, dim, config)
    if run_dir is not None:
        free = shutil.disk_usage(run_dir).free
        if size > free:
            raise GancheckError(f"--n {config.n:,} needs a run directory of about {format_bytes(size)} but the disk of "
                                f"{Path(run_dir).parent} has {format_bytes(free)} free; lower --n (or --anchors), or give an --out on a larger disk")
    if log is None:
        return
    if run_dir is not None:
        log(f"run directory: about {size / 2**20:,.0f} MiB when finished")
    if rate:
        log(f"collection: about {format_duration(config.n / rate)} at the anchors' {rate:,.0f} images/s")


#: Copies of a batch an embedder makes on its way to the network (crop, uint8 chips, float input, its output).
EMBED_COPIES = 4


def working_memory(m: int, dim: int, image_shape: tuple[int, int], config: AuditConfig, input_side: int | None = None) -> int:
    """Upper bound of the bytes a measurement holds beyond the loaded models, whatever |C| (docs/long-runs.md):

    - image batches in flight: ``BATCHES_IN_FLIGHT x batch_size x H x W x 3 x 4`` (float32), twice
      (a source's raw output and its converted copy);
    - the embedder's batch: ``EMBED_COPIES x batch_size x S x S x 3 x 4`` for its input of side S
      (``Embedder.input_side``: a face chip, a resized image; the image itself when None), once per
      embedding stage;
    - the statistics tile: ``chunk_size x m x 48`` (float32 screen, the candidate pairs' rows,
      columns and float64 distances when every pair of the tile is within theta) and the vectors
      waiting for it, ``chunk_size x (dim + 1) x 8``;
    - the anchors and the partial sums: ``m x (dim x 12 + 8 x (2 + RADIAL_BINS) + 16 x neighbors_k)``,
      twice (the running total and the shard's);
    - the no-face images kept for the report: ``NO_FACE_SAMPLES x H x W x 3 x 4``.
    """
    h, w = image_shape
    image = h * w * 3 * 4
    batches = 2 * BATCHES_IN_FLIGHT * config.batch_size * image
    side = input_side or max(h, w)
    embedding = EMBED_COPIES * config.batch_size * side * side * 3 * 4
    tile = config.chunk_size * m * 48 + config.chunk_size * (dim + 1) * 8
    sums = 2 * m * (dim * 12 + 8 * (2 + RADIAL_BINS) + 16 * config.neighbors_k)
    return batches + embedding + tile + sums + NO_FACE_SAMPLES * image


def run_size(m: int, dim: int, config: AuditConfig) -> int:
    """Upper estimate of a finished run directory's bytes (latents are never stored: they are
    reproducible from the seed)."""
    shards = -(-config.n // config.shard_size)
    per_anchor = 8 + 8 + 8 * RADIAL_BINS + 16 * config.neighbors_k  # sums, counts, radial, nearest
    snapshots = len(convergence_grid(config.n)) * m * 16
    tables = m * (4 * dim + 8 * RADIAL_BINS + 40) * 2  # anchors.parquet and its checkpoint
    embeddings = 2 * config.n * (4 * dim + 8) if config.save_embeddings else 0  # shards + combined file
    return shards * m * per_anchor + snapshots + tables + embeddings


def fingerprint(config: AuditConfig, theta: float, radius: float, source, embedder, specs: dict | None = None) -> dict:
    """Everything a run's numbers depend on (:mod:`gancheck.run.fingerprint`); a resumed run must match it exactly."""
    specs = specs or {}
    calibrator = specs.get("calibrator")
    sha = calibrator_hash(calibrator) if calibrator and Path(calibrator).is_file() else calibrator
    generator = specs.get("generator") or source.describe().get("path") or source.describe().get("callable", "")
    return run_fingerprint(config, theta, radius, source, embedder, generator, specs.get("embedder_options"), sha)


def stage_ticker(progress: Progress | None):
    """``make(stage, total, already=0)`` -> ``on_batch(k)``: reports a stage's start (at ``already``
    done, a resumed run's finished shards) and every batch to ``progress``."""
    def make(stage: str, total: int, already: int = 0):
        done = [already]
        if progress:
            progress(stage, already, total)

        def on_batch(k: int):
            done[0] += k
            if progress:
                progress(stage, done[0], total)

        return on_batch

    return make


