"""The embedder budget: extra samples, generated and described, where each dense mode's boundary lies.

A mode holding 1% of a run of 10^4 has about 100 latents: too few to learn a region in a latent
space of 100 or more dimensions. ``--budget N`` describes N more samples, spent in two halves:

- **local**: perturbations of the run's training latents that fall in a targeted mode,
  ``z = sqrt(1 - s^2) z_parent + s eps`` with ``eps`` a prior draw and ``s`` one of ``SCALES``
  (for a normal prior this keeps the prior's marginal law); sample index ``LOCAL_OFFSET + j``, whose
  mode (``j mod M``), parent, scale and ``eps`` come from ``Generator(PCG64([seed, j, BUDGET_TAG]))``.
- **guided**: plain prior draws (sample index ``GUIDED_OFFSET + j``, latent ``prior.sample(seed,
  index)``) that a small MLP classifier fitted on the labelled samples so far scores as most
  likely in each mode: the prior's own samples near the current region estimate.

Each is labelled by its descriptor's distance to the mode anchors (within r0 or not). Every extra
latent is reproducible from ``(seed, index)`` and the run. They are stored by chunk under
``RUN_DIR/calibration-budget-KEY/`` (Parquet: sample_index, latent, embedding), so a killed
calibrate resumes without describing a sample twice; KEY names the seed, modes, r0 and embedder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from gancheck.calibration.fitdata import FitData, embed_samples
from gancheck.run.measure import stage_ticker
from gancheck.calibrators.regions import fit_family, split_of
from gancheck.errors import GancheckError
from gancheck.files import atomic_write, write_json
from gancheck.maths import pairwise_distance

LOCAL_OFFSET = 1 << 42
GUIDED_OFFSET = 1 << 43
SCALES = (0.1, 0.2, 0.35, 0.5, 0.7)
BUDGET_TAG = 0xB0D6
CHUNK = 512
#: prior candidates scored per guided sample described
CANDIDATES_PER_GUIDED = 20
MAX_CANDIDATES = 200_000
#: the region model family that picks the guided draws (flexible and quick to fit)
GUIDE = "mlp"


class BudgetSampler:
    """``sample(seed, indices)`` like a prior, for the budget's sample indices (local and guided)."""

    def __init__(self, prior, parents: list[np.ndarray], shape: tuple[int, ...]):
        self.prior, self.parents, self.shape = prior, parents, tuple(shape)

    def local(self, seed: int, j: int) -> np.ndarray:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(j), BUDGET_TAG])))
        parents = self.parents[j % len(self.parents)]
        parent = parents[rng.integers(len(parents))]
        s = SCALES[rng.integers(len(SCALES))]
        z = np.sqrt(1.0 - s * s) * parent + s * self.prior.draw(rng, 1)[0]
        return z if self.prior.kind == "normal" else np.clip(z, -self.prior.bound, self.prior.bound)

    def sample(self, seed: int, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), self.prior.dim), np.float32)
        guided = idx >= GUIDED_OFFSET
        if guided.any():
            out[guided] = self.prior.sample(seed, idx[guided]).reshape(int(guided.sum()), -1)
        for i in np.flatnonzero(~guided):
            out[i] = self.local(seed, int(idx[i] - LOCAL_OFFSET))
        return out.reshape((len(idx), *self.shape))


def budget_dir(data: FitData) -> Path:
    """Where this run's budget for these modes, r0 and embedder is stored."""
    key = {"seed": data.seed, "modes": [int(m["sample_index"]) for m in data.modes], "r0": data.r0, "scales": SCALES,
           "embedder": data.config["embedder"], "options": data.config.get("embedder_options") or {}, "version": 1}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return Path(data.run_dir) / f"calibration-budget-{digest}"


def parents_of(data: FitData) -> list[np.ndarray]:
    """Per mode, the run's training-split latents within r0 of it (the local perturbations' parents)."""
    train = split_of(data.indices) == 0
    parents = [data.latents[train & data.near[:, m]] for m in range(len(data.modes))]
    empty = [m + 1 for m, p in enumerate(parents) if len(p) == 0]
    if empty:
        raise GancheckError(f"mode {empty[0]} has no training sample of the run within r0, so the budget has nothing to perturb; "
                            "audit with a larger --n or raise --r0")
    return parents


def chunk_path(folder: Path, stage: str, start: int, size: int) -> Path:
    return folder / f"{stage}-{start:09d}-{size:04d}.parquet"


def describe_chunks(data: FitData, sampler: BudgetSampler, indices: np.ndarray, folder: Path, stage: str, progress, tag: str = "") -> list[Path]:
    """Describe ``indices`` chunk by chunk into ``folder`` (files named after ``stage + tag``);
    chunks already there are not described again. Returns every chunk's file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    chunks = [indices[s : s + CHUNK] for s in range(0, len(indices), CHUNK)]
    paths = [chunk_path(folder, stage + tag, i * CHUNK, len(idx)) for i, idx in enumerate(chunks)]
    todo = [(idx, path) for idx, path in zip(chunks, paths) if not path.is_file()]
    if not todo:
        return paths
    plain = data.source.sampler
    data.source.sampler = sampler
    on_batch = stage_ticker(progress)(f"budget ({stage})", sum(len(idx) for idx, _ in todo))
    try:
        for idx, path in todo:
            got, vectors = embed_samples(data.source, data.embedder, idx, data.config, on_batch=on_batch)
            latents = sampler.sample(data.seed, got).reshape(len(got), -1)
            table = pa.table({"sample_index": got, "latent": list(latents), "embedding": list(np.asarray(vectors, np.float32))})
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            atomic_write(path, sink.getvalue().to_pybytes())
    finally:
        data.source.sampler = plain
    return paths


def load_described(data: FitData, parts: list[Path]) -> None:
    """Set ``data.extra_*`` from the chunk files ``parts`` (labels: within r0 of each mode anchor)."""
    import pyarrow.parquet as pq

    if not parts:
        return
    tables = [pq.read_table(p).to_pydict() for p in parts]
    data.extra_indices = np.concatenate([np.asarray(t["sample_index"], np.int64) for t in tables])
    data.extra_latents = np.concatenate([np.asarray(t["latent"], np.float32).reshape(len(t["latent"]), -1) for t in tables])
    data.extra_vectors = np.concatenate([np.asarray(t["embedding"], np.float32).reshape(len(t["embedding"]), -1) for t in tables])
    data.extra_near = pairwise_distance(data.extra_vectors, data.mode_vectors) <= data.r0
    data.extra_from_prior = data.extra_indices >= GUIDED_OFFSET


def guided_indices(data: FitData, count: int, folder: Path) -> np.ndarray:
    """The ``count`` prior draws most likely in the modes by an MLP per mode fitted on the labelled
    set so far (the mode against every other latent: modes can overlap), an equal share per mode
    (kept in a JSON file, so a resumed run describes the same ones)."""
    record = folder / f"guided-{GUIDE}-per-mode-{count}-{len(data.extra_latents)}.json"
    if record.is_file():
        return np.asarray(json.loads(record.read_text())["indices"], np.int64)
    train = split_of(data.indices) == 0
    x = np.concatenate([data.latents[train], data.extra_latents])
    near = np.concatenate([data.near[train], data.extra_near])
    cand = GUIDED_OFFSET + np.arange(min(MAX_CANDIDATES, count * CANDIDATES_PER_GUIDED), dtype=np.int64)
    z = data.prior.sample(data.seed, cand).reshape(len(cand), -1).astype(np.float32)
    chosen: list[int] = []
    M = len(data.modes)
    for m in range(M):
        score = fit_family(GUIDE, x, near[:, m].astype(np.int64), data.seed).predict_proba(z)[:, -1] if near[:, m].any() else np.zeros(len(cand))
        taken = set(chosen)
        order = [int(i) for i in np.argsort(-score, kind="stable") if int(cand[i]) not in taken]
        chosen += [int(cand[i]) for i in order[: count // M + (m < count % M)]]
    indices = np.sort(np.asarray(chosen, np.int64))
    write_json(record, {"indices": indices.tolist(), "candidates": int(len(cand)), "rule": f"{GUIDE} per mode on run training split + local budget"})
    return indices


def spend_budget(data: FitData, budget: int, progress=None) -> dict:
    """Describe ``budget`` extra samples (half local, half guided) into ``data.extra_*``; returns
    what was spent and where it is stored."""
    if budget < 0:
        raise GancheckError(f"--budget must be at least 0, got {budget}")
    if budget == 0:
        return {"budget": 0, "described": 0}
    folder = budget_dir(data)
    folder.mkdir(parents=True, exist_ok=True)
    sampler = BudgetSampler(data.prior, parents_of(data), data.source.latent_prior.shape)
    n_local = budget // 2
    local = describe_chunks(data, sampler, LOCAL_OFFSET + np.arange(n_local, dtype=np.int64), folder, "local", progress)
    load_described(data, local)
    chosen = guided_indices(data, budget - n_local, folder)
    # chunk files are named after the list they cut, so another list never reuses them
    guided = describe_chunks(data, sampler, chosen, folder, "guided", progress, tag=hashlib.sha256(chosen.tobytes()).hexdigest()[:8])
    load_described(data, local + guided)
    kinds = np.where(data.extra_from_prior, "guided", "local")
    return {"budget": int(budget), "local": int(n_local), "guided": int(budget - n_local), "described": int(len(data.extra_indices)),
            "in_mode": {k: [int(v) for v in data.extra_near[kinds == k].sum(axis=0)] for k in ("local", "guided")},
            "store": str(folder), "scales": list(SCALES)}
