"""Confidence intervals for the audit's figures, as pure functions on arrays.

- ``mu``/``sigma`` (Eq. 8): percentile bootstrap over the anchors. The anchors are an i.i.d.
  sample of the generator, so resampling them shows how much the figures would move with another
  anchor set of the same size (the collection's own noise, which enters every anchor's MCCS
  alike, is not included; see the convergence curves for that).
- The worst mode's neighbour fraction ``N_r / |C|``: a Wilson score interval. The anchors are
  drawn independently of the collection, so given the chosen anchor its ``N_r`` is a
  Binomial(|C|, p) count and the interval is valid even though the anchor was picked as the
  densest.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

#: Bootstrap resamples drawn per block (memory: block x |A| indices).
_BLOCK = 100


def bootstrap_mean_std(scores: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Percentile-bootstrap intervals of the mean and sample std (divisor m - 1) of ``scores`` (m,).

    Returns ``mean_low, mean_high, std_low, std_high`` (None where a score is infinite, as the
    reference MCCS form is at m = 1) and ``level``, ``n_boot``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) < 2:
        raise ValueError("bootstrap intervals need at least two scores")
    if not np.all(np.isfinite(scores)):
        return {"mean_low": None, "mean_high": None, "std_low": None, "std_high": None, "level": level, "n_boot": n_boot}
    rng = np.random.default_rng(seed)
    means, stds = [], []
    for start in range(0, n_boot, _BLOCK):
        sample = scores[rng.integers(0, len(scores), size=(min(_BLOCK, n_boot - start), len(scores)))]
        means.append(sample.mean(axis=1))
        stds.append(sample.std(axis=1, ddof=1))
    tail = 100 * (1 - level) / 2
    m_lo, m_hi = np.percentile(np.concatenate(means), [tail, 100 - tail])
    s_lo, s_hi = np.percentile(np.concatenate(stds), [tail, 100 - tail])
    return {"mean_low": float(m_lo), "mean_high": float(m_hi), "std_low": float(s_lo), "std_high": float(s_hi),
            "level": level, "n_boot": int(n_boot)}


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion with ``k`` successes in ``n`` trials."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # At k = 0 or k = n the exact bound is 0 or 1; rounding must not push it past.
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def anchor_subsample_curve(scores: np.ndarray, sizes: np.ndarray, reps: int = 200, seed: int = 0, level: float = 0.95) -> dict:
    """``(mu, sigma)`` (Eq. 8) over random subsets of the anchors, for the paper's Fig. 3 against
    ``log10 |A|``: anchors are i.i.d., so a random subset of size s is an audit with |A| = s.

    scores: (m,); sizes: (S,) subset sizes in [2, m]. Returns arrays of length S: ``size``,
    ``mean_mid`` / ``mean_low`` / ``mean_high`` (median and ``level`` band of mu over ``reps``
    subsets), and the same for ``std``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    tail = 100 * (1 - level) / 2
    out = {k: [] for k in ("size", "mean_mid", "mean_low", "mean_high", "std_mid", "std_low", "std_high")}
    for s in np.asarray(sizes, dtype=int):
        if not 2 <= s <= len(scores):
            raise ValueError(f"subset size {s} is outside [2, {len(scores)}]")
        # Subsets without replacement: argsort of random keys, one row per repetition.
        pick = np.argsort(rng.random((reps, len(scores))), axis=1)[:, :s]
        sub = scores[pick]
        mu, sd = sub.mean(axis=1), sub.std(axis=1, ddof=1)
        out["size"].append(int(s))
        for name, v in (("mean", mu), ("std", sd)):
            lo, mid, hi = np.percentile(v, [tail, 50, 100 - tail])
            out[f"{name}_low"].append(float(lo))
            out[f"{name}_mid"].append(float(mid))
            out[f"{name}_high"].append(float(hi))
    return {k: np.asarray(v) for k, v in out.items()}


def log_sizes(low: int, high: int, count: int = 12) -> np.ndarray:
    """About ``count`` distinct integers log-spaced from ``low`` to ``high`` (both included)."""
    if high <= low:
        return np.array([high])
    return np.unique(np.rint(np.logspace(math.log10(low), math.log10(high), count)).astype(int))
