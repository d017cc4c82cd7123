"""The discriminator's view of the training data (Lee et al., "Self-Diagnosing GAN", NeurIPS 2021).

For each training image x and each discriminator checkpoint t in T, the log density ratio
``LDR_t(x) = log(D_t(x) / (1 - D_t(x)))`` (the logit, for a model that outputs it) estimates
``log p_data(x) / p_g(x)``. Over the checkpoints:

    LDRM(x) = (1/|T|) sum_t LDR_t(x)                         high: a mode the generator misses
    LDRV(x) = (1/(|T|-1)) sum_t (LDR_t(x) - LDRM(x))^2        high: a minor feature
    s(x)    = LDRM(x) + k sqrt(LDRV(x))                        the discrepancy score

Phase 2 of the paper samples training minibatches with probability proportional to ``s(x)``:
:func:`sampling_weights`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gancheck.defaults import BATCH_SIZE
from gancheck.errors import GancheckError

#: The paper's default weight of sqrt(LDRV) in the discrepancy score.
DEFAULT_K = 1.0


def ldr_statistics(ldr: np.ndarray, k: float = DEFAULT_K) -> dict[str, np.ndarray]:
    """LDRM, LDRV and the discrepancy score of a (T, N) matrix of log density ratios. With a single
    checkpoint LDRV is 0 (no spread can be measured)."""
    ldr = np.asarray(ldr, dtype=np.float64)
    if ldr.ndim != 2 or ldr.shape[0] < 1:
        raise GancheckError("the log density ratio needs at least one discriminator checkpoint")
    ldrm = ldr.mean(axis=0)
    ldrv = ldr.var(axis=0, ddof=1) if ldr.shape[0] > 1 else np.zeros_like(ldrm)
    return {"ldrm": ldrm, "ldrv": ldrv, "score": ldrm + float(k) * np.sqrt(ldrv)}


def sampling_weights(score: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-image minibatch sampling probabilities proportional to the discrepancy score (phase 2),
    summing to 1, and the floor used: a score at or below zero (an image the generator already
    over-produces) is raised to 1% of the largest score, so every image keeps some chance."""
    s = np.asarray(score, dtype=np.float64)
    top = float(s.max()) if len(s) else 0.0
    if top <= 0:
        return np.full(len(s), 1.0 / max(len(s), 1)), 0.0
    floor = 0.01 * top
    w = np.maximum(s, floor)
    return w / w.sum(), floor


def load_discriminators(paths: list[str | Path], input_range: str = "-1,1", output: str = "auto", device: str = "auto",
                        threads: int | None = None) -> list:
    """The checkpoints as :class:`embedders.scorer.ImageScorer`; all must take the same input."""
    from embedders.scorer import ImageScorer

    if not paths:
        raise GancheckError("give at least one discriminator checkpoint (--discriminator D_1.onnx ... D_T.onnx)")
    scorers = [ImageScorer(p, input_range=input_range, output=output, device=device, threads=threads) for p in paths]
    first = scorers[0]
    for s in scorers[1:]:
        if s.input_shape != first.input_shape:
            raise GancheckError(f"discriminators take different inputs: {first.path} takes {_shape(first)}, {s.path} takes {_shape(s)}; "
                                "give checkpoints of one discriminator")
    return scorers


def _shape(s) -> str:
    size = f"{s.size}x{s.size}" if s.size else "any size"
    return f"{s.channels}-channel {size} images ({s.layout})"


def ldr_matrix(scorers: list, load, count: int, batch_size: int = BATCH_SIZE, progress=None) -> np.ndarray:
    """(T, count) log density ratios of images ``load(indices)``, 0..count-1, in batches (each image
    is read once and scored by every checkpoint)."""
    out = np.empty((len(scorers), count))
    for start in range(0, count, batch_size):
        idx = np.arange(start, min(start + batch_size, count), dtype=np.int64)
        images = load(idx)
        for t, scorer in enumerate(scorers):
            out[t, idx] = scorer.logits(images)
        if progress is not None:
            progress("images", int(idx[-1]) + 1, count)
    return out


def diagnose(paths: list[str | Path], data_dir: str | Path, k: float = DEFAULT_K, input_range: str = "-1,1", output: str = "auto",
             device: str = "auto", threads: int | None = None, batch_size: int = BATCH_SIZE, progress=None) -> dict:
    """Score every image of ``data_dir`` under every checkpoint: ``{files, ldr (T, N), ldrm, ldrv,
    score, discriminators}``."""
    from gancheck.analysis.coverage import load_reference

    if not np.isfinite(k) or k < 0:
        raise GancheckError(f"-k must be a finite number at least 0, got {k}")
    scorers = load_discriminators(paths, input_range, output, device, threads)
    data = load_reference(data_dir, "--data")
    ldr = ldr_matrix(scorers, data.images, len(data.files), batch_size, progress)
    files = [str(f.relative_to(data.path)) for f in data.files]
    return dict(ldr_statistics(ldr, k), files=files, ldr=ldr, k=float(k), discriminators=[s.describe() for s in scorers])
