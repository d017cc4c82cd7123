"""Two binomial proportions compared: intervals, the two-proportion test, and the false-discovery
rate over many such tests. Pure functions on count arrays (one entry per bin or attribute)."""

from __future__ import annotations

import numpy as np

#: False-discovery rate below which a bin or attribute counts as different.
ALPHA = 0.05


def wilson_interval(count: np.ndarray, n: int, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of binomial proportions ``count / n`` (vectorised)."""
    from scipy.stats import norm

    z = norm.ppf(0.5 + level / 2)
    p = np.asarray(count, dtype=np.float64) / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def two_proportion_test(count_a: np.ndarray, n_a: int, count_b: np.ndarray, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    """(z, two-sided p) of the pooled two-proportion z-test of ``count_b/n_b`` against ``count_a/n_a``
    per bin (NDB's test); z < 0 when B's share is lower."""
    from scipy.stats import norm

    a, b = np.asarray(count_a, np.float64), np.asarray(count_b, np.float64)
    pooled = (a + b) / (n_a + n_b)
    se = np.sqrt(pooled * (1 - pooled) * (1.0 / n_a + 1.0 / n_b))
    diff = b / n_b - a / n_a
    z = np.divide(diff, se, out=np.zeros_like(diff), where=se > 0)
    return z, 2 * norm.sf(np.abs(z))


def newcombe_difference(count_g: np.ndarray, n_g: int, count_r: np.ndarray, n_r: int, level: float = 0.95) -> tuple:
    """(difference, low, high): generated minus reference frequency, Newcombe's hybrid score interval."""
    pg, pr = np.asarray(count_g) / n_g, np.asarray(count_r) / n_r
    lg, ug = wilson_interval(count_g, n_g, level)
    lr, ur = wilson_interval(count_r, n_r, level)
    diff = pg - pr
    return diff, diff - np.sqrt((pg - lg) ** 2 + (ur - pr) ** 2), diff + np.sqrt((ug - pg) ** 2 + (pr - lr) ** 2)


def bh_q_values(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of independent tests (scipy)."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p, dtype=np.float64)
    return false_discovery_control(p, method="bh") if len(p) else p
