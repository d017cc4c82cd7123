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
from gancheck.engine.pipeline import ShardMeasurer
from gancheck.errors import GancheckError
from gancheck.maths import pairwise_distance
from gancheck.run.measure import stage_ticker
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
    typical_count: float = 0.0  # median N_r0 over those anchors: a typical identity (the proof's floor)
    mode_acceptance: np.ndarray = field(init=False)  # (M,) p_m
    # the embedder budget's extra samples (gancheck.calibration.budget): training data only
    extra_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    extra_latents: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (e, dim)
    extra_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    extra_near: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))  # (e, M)
    extra_from_prior: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (e,) a plain prior draw, not a perturbation

    def __post_init__(self):
        counts = self.mode_counts
        # Alg. 2: p = N_r0(I_r) / N_r0(I_m), with N_r0(I_r) averaged over ordinary anchors instead of
        # one random image; p = 1 where the "dense" mode is no denser than an ordinary one.
        self.mode_acceptance = np.where(counts > 0, np.minimum(1.0, self.reference_count / np.maximum(counts, 1)), 1.0)
        self.extra_latents = np.zeros((0, self.prior.dim), np.float32)
        self.extra_near = np.zeros((0, len(self.modes)), bool)

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
        raise GancheckError(f"{run_dir} audits a folder of images; calibration needs a latent generator (.onnx, .pt2, TorchScript or a Python callable)")
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
                   reference_count=float(counts.mean()), ordinary_anchors=int(ordinary.sum()), typical_count=float(np.median(counts)))


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
        raise GancheckError(f"the embedder described none of the {n} samples of {run_dir}; nothing to calibrate")
    return indices, vectors


def embed_samples(source, embedder, indices: np.ndarray, cfg: dict, progress=None, stage: str = "samples",
                  on_batch=None) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, vectors)`` of the samples an audit with settings ``cfg`` would use (described, or
    kept as the no-face point; not NaN), generated and embedded by the audit's own pipeline.
    ``on_batch(k)``: told of every batch instead of a progress stage of its own (one stage over
    several calls)."""
    from dataclasses import fields

    config = AuditConfig(**{f.name: cfg[f.name] for f in fields(AuditConfig) if f.name in cfg})
    worker = ShardMeasurer(source, embedder, None, 0.0, 0.0, config)  # theta and radius serve only its statistics
    keep = config.no_face == "keep"
    on_batch = on_batch or stage_ticker(progress)(stage, len(indices))
    kept_idx, kept_vec = [], []
    for idx, vec, found, ok, _ in worker.stream(indices):
        use = ok & (found | keep)
        kept_idx.append(idx[use])
        kept_vec.append(vec[use])
        on_batch(len(idx))
    if not kept_idx:
        return np.zeros(0, np.int64), np.zeros((0, 1), np.float32)
    return np.concatenate(kept_idx), np.concatenate(kept_vec)


#: Share of the run's samples the ``is`` method trains its latent region on (sample index mod 5 in
#: {0, 1, 2}; :mod:`gancheck.calibrators.importance`).
TRAIN_SHARE = 3 / 5


def fit_outlook(method: str, region: str, counts: list[int], n: int, latent_dim: int) -> str | None:
    """A warning when a ``method`` fit is unlikely to help, predicted from what the run already counted
    (``counts``: each calibrated mode's samples within r0 among the run's ``n``), else None.

    The ``is`` method's linear region (``--region linear``) has ``latent_dim + 2`` parameters (one weight per latent value,
    one for the squared norm, an intercept), fitted on the training split. A mode with fewer training
    latents than parameters can be separated by chance, so the region tends to recall few of the
    mode's other latents (how few depends on the mode's shape in latent space: a half-space is found
    from fewer samples than a curved region). The other methods have no such floor (rejection works on
    the descriptor, gmm on K-means cells of the whole prior); the learned region families generate
    extra samples around each mode, so only a mode without any sample within r0 is hopeless there."""
    if method != "is" or not counts or n <= 0:
        return None
    if region != "linear":  # learned families add samples around the modes (--budget): only an empty mode is hopeless
        empty = [i + 1 for i, c in enumerate(counts) if c == 0]
        return (f"no sample of the run lies within r0 of mode {empty[0]}: the is method has nothing to learn its region from. "
                f"What would work: an audit with a larger --n, a larger --r0, or --method rejection") if empty else None
    params = latent_dim + 2
    need = int(np.ceil(params / TRAIN_SHARE))
    weakest = int(np.argmin(counts))
    count = int(counts[weakest])
    if count >= need:
        return None
    train = int(round(count * TRAIN_SHARE))
    larger = f"an audit with --n {_round_up(n * need / max(count, 1)):,} or more (about {need} samples near the mode)" if count else "a larger audit"
    return (f"the is method would learn mode {weakest + 1}'s latent region from about {train} training latents ({TRAIN_SHARE:.0%} of the "
            f"{count} within r0 of it) in a {latent_dim}-dimensional latent space, fewer than the region's {params} parameters: "
            f"the region is unlikely to generalise, and fitting and proving it takes minutes. What works at this size: --method rejection "
            f"(thins images near the mode with the embedder; any latent size), or {larger}, or a larger --r0 (Ctrl-C now to change course)")


def _round_up(x: float) -> int:
    """``x`` rounded up to two significant digits (a size to type on a command line)."""
    x = max(int(np.ceil(x)), 1)
    step = 10 ** max(len(str(x)) - 2, 0)
    return int(-(-x // step) * step)


def predict_outlook(run_dir: str | Path, method: str, modes: int = 1, r0: float | None = None, region: str = "linear") -> str | None:
    """:func:`fit_outlook` for an audit run, from its report and manifest alone (seconds, before any
    sample is regenerated); None when it cannot tell (another r0 than the run's radius)."""
    import json

    run_dir = Path(run_dir)
    try:
        report = load_report(run_dir)
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError, GancheckError):
        return None  # load_fit_data reports what is wrong with the run
    if r0 is not None and float(r0) != float(report["radius"]):
        return None
    shape = ((manifest.get("generator") or {}).get("latent_prior") or {}).get("shape")
    listed = report.get("modes") or [report["worst_mode"]]
    if not shape or modes < 1:
        return None
    counts = [int(m["neighbors"]) for m in listed[:modes]]
    return fit_outlook(method, region, counts, int(report["n_samples"]), int(np.prod(shape)))
