"""What every calibrator is fitted on: an audit run's latents, their descriptor vectors, and the
dense modes with their acceptance probabilities (Alg. 2's ``p``).

The fit set is the run's collection C (sample indices ``0..n-1`` under the run's seed): its latents
are redrawn from the prior, its vectors are read from the run's ``embeddings.parquet`` when the audit
saved them, else regenerated and embedded exactly as the audit did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gancheck.engine.accumulator import CollapseAccumulator
from gancheck.engine.pipeline import Worker
from gancheck.errors import GancheckError
from gancheck.maths import pairwise_distance
from gancheck.run.audit import _ticker
from gancheck.run.config import AuditConfig
from gancheck.run.directory import load_report, open_run
from gancheck.sources.latents import LatentPrior


@dataclass
class FitData:
    """A run, ready to fit a calibrator on. Shapes: n fit samples, M dense modes, D descriptor dims."""

    run_dir: Path
    manifest: dict
    report: dict
    source: object  # the run's generator (plain prior), prepared with the run's seed
    embedder: object
    prior: LatentPrior
    seed: int
    r0: float
    indices: np.ndarray  # (n,) sample indices of the fit set
    latents: np.ndarray  # (n, dim) float32, as the generator saw them
    vectors: np.ndarray  # (n, D) descriptor vectors as the audit used them
    modes: list[dict]  # the dense modes' report entries
    mode_vectors: np.ndarray  # (M, D) float32
    near: np.ndarray  # (n, M) bool: sample within r0 of mode m
    reference_count: float  # expected N_r0 of an ordinary identity (mean over anchors outside the modes)
    ordinary_anchors: int
    mode_acceptance: np.ndarray = field(init=False)  # (M,) p_m

    def __post_init__(self):
        counts = self.mode_counts
        # Alg. 2: p = N_r0(I_r) / N_r0(I_m), with N_r0(I_r) averaged over ordinary anchors instead of
        # one random image; p = 1 where the "dense" mode is no denser than an ordinary one.
        self.mode_acceptance = np.where(counts > 0, np.minimum(1.0, self.reference_count / np.maximum(counts, 1)), 1.0)

    @property
    def n(self) -> int:
        return len(self.indices)

    @property
    def mode_counts(self) -> np.ndarray:
        """N_r0 of each dense mode in the fit set."""
        return self.near.sum(axis=0)

    @property
    def dense(self) -> np.ndarray:
        """(n,) bool: sample lies within r0 of any dense mode."""
        return self.near.any(axis=1)

    @property
    def config(self) -> dict:
        return self.manifest["config"]

    @property
    def no_face(self) -> str:
        return self.config.get("no_face", "exclude")


def load_fit_data(run_dir: str | Path, modes: int = 1, r0: float | None = None, device: str = "auto", progress=None) -> FitData:
    """Read an audit run and build its :class:`FitData`; ``modes`` top distinct modes are calibrated."""
    import pyarrow.parquet as pq

    run_dir = Path(run_dir)
    manifest, source, embedder = open_run(run_dir, device=device)
    report = load_report(run_dir)
    cfg = manifest["config"]
    if manifest.get("status") != "complete":
        raise GancheckError(f"the audit in {run_dir} did not finish (status {manifest.get('status')!r}); re-run it before calibrating")
    if cfg.get("calibrator"):
        raise GancheckError(f"{run_dir} audits an already calibrated sampler; calibrate a run of the plain generator (gancheck audit without --calibrator)")
    prior = getattr(source, "latent_prior", None)
    if prior is None:
        raise GancheckError(f"{run_dir} audits a folder of images; calibration needs a latent generator (.onnx, TorchScript or a Python callable)")
    recorded, current = manifest.get("generator", {}).get("sha256"), source.describe().get("sha256")
    if recorded and current and recorded != current:
        raise GancheckError(f"the generator file {cfg['generator']} changed since the audit in {run_dir}; re-run the audit, then calibrate")
    if modes < 1:
        raise GancheckError(f"--modes must be at least 1, got {modes}")
    listed = report.get("modes") or [dict(report["worst_mode"], rank=1)]
    if modes > len(listed):
        raise GancheckError(f"--modes {modes}: the run lists only {len(listed)} distinct dense modes; ask for at most {len(listed)} (or audit with a larger --top-k)")
    chosen = listed[:modes]
    r0 = float(report["radius"] if r0 is None else r0)
    if not 0.0 < r0 < 1.0:
        raise GancheckError(f"--r0 must lie in (0, 1) (a normalised angular distance), got {r0}")

    anchors = pq.read_table(run_dir / "anchors.parquet").to_pydict()
    position = {int(s): i for i, s in enumerate(anchors["sample_index"])}
    missing = [m["sample_index"] for m in chosen if int(m["sample_index"]) not in position]
    if missing:
        raise GancheckError(f"{run_dir}/anchors.parquet lacks the mode anchors {missing}; the run is damaged, re-run the audit")
    anchor_vectors = np.asarray(anchors["embedding"], dtype=np.float32)
    mode_vectors = anchor_vectors[[position[int(m["sample_index"])] for m in chosen]]

    seed, n = int(cfg["seed"]), int(report["n_samples"])
    indices, vectors = _fit_vectors(run_dir, source, embedder, cfg, progress)
    near = pairwise_distance(vectors, mode_vectors) <= r0
    latents = prior.sample(seed, indices).reshape(len(indices), -1)

    # An ordinary identity: an anchor farther than r0 from every dense mode. Its N_r0 is the run's
    # own count when r0 is the run's radius (same collection), else recounted here.
    ordinary = ~(pairwise_distance(anchor_vectors, mode_vectors) <= r0).any(axis=1)
    if not ordinary.any():
        raise GancheckError(f"every anchor of {run_dir} lies within r0 = {r0} of the dense modes; lower --r0 or calibrate fewer --modes")
    if r0 == float(report["radius"]) and len(indices) == n:
        counts = np.asarray(anchors["neighbors"], dtype=np.float64)[ordinary]
    else:
        acc = CollapseAccumulator(anchor_vectors[ordinary], float(report["theta"]), r0, tile=int(cfg.get("chunk_size", 4096)), keep_neighbors=0)
        acc.update(vectors, indices)
        counts = acc.result()["neighbors"].astype(np.float64)
    return FitData(run_dir=run_dir, manifest=manifest, report=report, source=source, embedder=embedder, prior=prior, seed=seed,
                   r0=r0, indices=indices, latents=latents, vectors=vectors, modes=chosen, mode_vectors=mode_vectors, near=near,
                   reference_count=float(counts.mean()), ordinary_anchors=int(ordinary.sum()))


def _fit_vectors(run_dir: Path, source, embedder, cfg: dict, progress) -> tuple[np.ndarray, np.ndarray]:
    """The collection's (indices, vectors): saved by the audit, or regenerated the same way."""
    import pyarrow.parquet as pq

    n = int(cfg["n"])
    saved = run_dir / "embeddings.parquet"
    if saved.is_file():
        table = pq.read_table(saved).to_pydict()
        indices = np.asarray(table["sample_index"], dtype=np.int64)
        if len(indices) and indices.max() < n:
            return indices, np.asarray(table["embedding"], dtype=np.float32)
    indices, vectors = embed_samples(source, embedder, np.arange(n, dtype=np.int64), cfg, progress, "fit")
    if len(indices) == 0:
        raise GancheckError(f"the descriptor described none of the {n} samples of {run_dir}; nothing to calibrate")
    return indices, vectors


def embed_samples(source, embedder, indices: np.ndarray, cfg: dict, progress=None, stage: str = "samples") -> tuple[np.ndarray, np.ndarray]:
    """``(indices, vectors)`` of the samples an audit with settings ``cfg`` would use (described, or
    kept as the no-face point; not NaN), generated and embedded by the audit's own pipeline."""
    from dataclasses import fields

    config = AuditConfig(**{f.name: cfg[f.name] for f in fields(AuditConfig) if f.name in cfg})
    worker = Worker(source, embedder, None, 0.0, 0.0, config)  # theta and radius serve only its statistics
    keep = config.no_face == "keep"
    on_batch = _ticker(progress)(stage, len(indices))
    kept_idx, kept_vec = [], []
    for idx, vec, found, ok, _ in worker.stream(indices):
        use = ok & (found | keep)
        kept_idx.append(idx[use])
        kept_vec.append(vec[use])
        on_batch(len(idx))
    if not kept_idx:
        return np.zeros(0, np.int64), np.zeros((0, 1), np.float32)
    return np.concatenate(kept_idx), np.concatenate(kept_vec)
