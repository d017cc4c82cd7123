"""Inputs too degenerate for any verdict: an audit whose descriptor vectors span almost no
dimensions, whose images are almost all exact copies, or whose images are a few pixels across
measures nothing about identities, so its MCCS figures must not pass or fail a release gate.

The floors (documented in docs/run-directory.md) sit far below any working setup: a trained face
descriptor's anchors span tens of dimensions, centred pixels of real images hundreds, and a
generator collapsing onto one identity still varies around it (a collapse onto bit-identical images
over nearly every draw is refused earlier as a constant generator).
"""

from __future__ import annotations

import numpy as np

#: Below this effective rank (of the centred anchor vectors) the descriptor separates nothing.
EFFECTIVE_RANK_FLOOR = 3.0
#: Below this share of distinct anchor vectors (or fewer than MIN_DISTINCT) the images are copies.
DISTINCT_SHARE_FLOOR = 0.01
MIN_DISTINCT = 3
#: Images smaller than this many pixels on a side carry no identity.
IMAGE_SIDE_FLOOR = 8


def effective_rank(vectors: np.ndarray) -> float:
    """exp of the Shannon entropy of the normalised singular values of the centred rows
    (Roy & Vetterli 2007): 1 for points on a line, D for an isotropic cloud in D dimensions, 0
    when all rows are equal."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    s = np.linalg.svd(x, compute_uv=False)
    s = s[s > s.max(initial=0.0) * 1e-9] if s.size else s
    if not s.size:
        return 0.0
    p = s / s.sum()
    # Rounded: the SVD is LAPACK-threaded, equal across thread counts to ~1e-12, not bitwise.
    return round(float(np.exp(-(p * np.log(p)).sum())), 6)


def distinct_count(vectors: np.ndarray) -> int:
    """How many rows differ from every other row (exact copies count once)."""
    x = np.ascontiguousarray(vectors)
    return int(len(np.unique(x, axis=0))) if len(x) else 0


def assess(vectors: np.ndarray, image_shape: tuple[int, int] | None = None) -> dict:
    """``{"inconclusive", "reasons", "effective_rank", "distinct_share", "duplicate_share",
    "image_side", "floors"}`` for the anchors' descriptor vectors (m, D) and the images' (H, W)."""
    m = len(vectors)
    rank = effective_rank(vectors)
    distinct = distinct_count(vectors)
    share = distinct / m if m else 0.0
    side = int(min(image_shape)) if image_shape else None
    reasons = []
    if rank < EFFECTIVE_RANK_FLOOR:
        reasons.append(f"the descriptor vectors span about {rank:.2f} dimensions (floor {EFFECTIVE_RANK_FLOOR:g}): "
                       "the embedder does not tell these images apart")
    if distinct < max(MIN_DISTINCT, DISTINCT_SHARE_FLOOR * m):
        reasons.append(f"only {distinct} of {m} anchor images are distinct: the generator repeats exact copies")
    if side is not None and side < IMAGE_SIDE_FLOOR:
        reasons.append(f"the images are {image_shape[0]}x{image_shape[1]} pixels (floor {IMAGE_SIDE_FLOOR} on a side)")
    return {"inconclusive": bool(reasons), "reasons": reasons, "effective_rank": rank, "distinct_share": share,
            "duplicate_share": 1.0 - share, "image_side": side,
            "floors": {"effective_rank": EFFECTIVE_RANK_FLOOR, "distinct_share": DISTINCT_SHARE_FLOOR, "min_distinct": MIN_DISTINCT,
                       "image_side": IMAGE_SIDE_FLOOR}}
