"""What an audit can and cannot see: the collapse rule and the detection limit, as pure functions.

The collapse rule: the verdict says "collapse" when the Ripley test of the worst mode (see
:mod:`gancheck.analysis.spatial`) rejects at ``COLLAPSE_ALPHA``. The test already accounts for
picking the worst of many anchors (it counts the worst mode's neighbours among the *held-out*
anchors), so no further multiple-comparison correction is needed; its false-alarm rate on
collapse-free generators is measured in tests/test_validity.py and benchmarks/bench_validity.py.

The detection limit: the smallest share ``f`` of draws that a mode (a set of images within r of
each other) may hold and still be found by this rule with probability ``POWER``, given the run's
|C| = n, |A| = m and its background neighbour rate. The binomial model, for a mode of share f:

1. ``a ~ Binomial(m, f)`` anchors land in the mode; it can only be seen if ``a >= 1``.
2. It is chosen as the worst mode when its collection count ``Binomial(n, f)`` exceeds the
   strongest competing anchor's count ``competitor`` (the densest anchor outside the mode).
3. The test rejects when the held-out count ``a - 1 + B`` reaches the critical count ``c`` of the
   null ``Binomial(m - 1, q + f^2)`` at level alpha (and at ``c - 1`` with the probability that
   makes the randomised test's level alpha exactly, as the Ripley test's random tie-breaking does),
   where ``B ~ Binomial(m - a, q)`` are the background anchors within r and ``q`` the background
   pair rate at r. When the run's anchors come in identity clumps the test's null is the
   identity one (the held-out count is ``a' - 1``, ``a' ~ Binomial(m, q + f^2)`` given ``a' >= 1``)
   and ``c`` is its critical count.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

#: The verdict calls collapse when the Ripley p-value is below this.
COLLAPSE_ALPHA = 0.01
#: The detection limit is the share found with this probability.
POWER = 0.95


def collapse_detected(report: dict, alpha: float = COLLAPSE_ALPHA) -> bool:
    """The verdict's collapse rule: the Ripley test of the worst mode rejects at ``alpha``."""
    p = (report.get("spatial") or {}).get("p_value")
    return p is not None and p < alpha


def _null_tail(c, trials: int, rate: float, identity: bool) -> tuple:
    """``P(T >= c)`` and ``P(T = c - 1)`` of the held-out count T under the test's null: Binomial(trials,
    rate) for a random anchor, or ``a - 1`` with ``a ~ Binomial(trials + 1, rate)`` given ``a >= 1``
    when the worst mode is a whole identity (:func:`gancheck.analysis.spatial.identity_pvalue`)."""
    if not identity:
        return stats.binom.sf(c - 1, trials, rate), stats.binom.pmf(c - 1, trials, rate)
    seen = max(stats.binom.sf(0, trials + 1, rate), 1e-300)
    return stats.binom.sf(c, trials + 1, rate) / seen, stats.binom.pmf(c, trials + 1, rate) / seen


def critical_count(trials: int, rate: float, alpha: float = COLLAPSE_ALPHA, identity: bool = False) -> tuple[int, float]:
    """The randomised level-``alpha`` test of the held-out count (:func:`_null_tail`): reject at ``c``
    or more, and with probability ``gamma`` at ``c - 1`` (the Ripley test breaks ties at random, so
    its level is alpha exactly, not the conservative ``P(X >= c)``). Returns ``(c, gamma)``."""
    rate = min(max(rate, 1e-300), 1.0)
    c = int(stats.binom.isf(alpha, trials, rate)) + 1
    while c > 0 and _null_tail(c - 1, trials, rate, identity)[0] <= alpha:  # isf rounds: step down while still valid
        c -= 1
    while _null_tail(c, trials, rate, identity)[0] > alpha:
        c += 1
    tail, at = _null_tail(c, trials, rate, identity)
    gamma = (alpha - tail) / at if at > 0 else 0.0
    return c, float(min(max(gamma, 0.0), 1.0))


def detection_probability(share: float, n: int, m: int, background: float, competitor: int = 0,
                          alpha: float = COLLAPSE_ALPHA, identity: bool = False) -> float:
    """Probability that a mode holding ``share`` of draws is found (module docstring's model).

    n: |C|; m: |A|; background: pair rate q within r outside the mode; competitor: the collection
    count N_r the mode must exceed to be chosen as the worst mode; identity: the test's null is
    the identity-clump one (the run's anchors come in clumps, spatial.clumped).
    """
    f = float(share)
    a = np.arange(1, m + 1)
    p_a = stats.binom.pmf(a, m, f)
    chosen = stats.binom.sf(competitor, n, f)
    c, gamma = critical_count(m - 1, background + f * f, alpha, identity)
    # held-out count a - 1 + B >= c  <=>  B >= c - a + 1; and at c - 1 with probability gamma
    reject = stats.binom.sf(c - a, m - a, background) + gamma * stats.binom.pmf(c - a, m - a, background)
    return float(np.sum(p_a * reject) * chosen)


def detection_limit(n: int, m: int, background: float, competitor: int = 0, alpha: float = COLLAPSE_ALPHA,
                    power: float = POWER, identity: bool = False) -> float | None:
    """Smallest mode share found with probability ``power`` (bisection on log share to 0.1%);
    None when even a mode holding every draw would not be (too few anchors)."""
    def found(f: float) -> bool:
        return detection_probability(f, n, m, background, competitor, alpha, identity) >= power

    hi = 0.5
    if not found(hi):
        return None
    lo = 1e-7
    if found(lo):
        return lo
    while math.log(hi / lo) > 1e-3:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if found(mid) else (mid, hi)
    return hi


def detection_inputs(embeddings: np.ndarray, neighbors: np.ndarray, worst: int, n: int, radius: float) -> dict:
    """The run's background pair rate within r and competitor count, from the anchors outside the
    worst mode's ball (so a real mode does not count as background).

    embeddings: (m, D) unit anchors; neighbors: (m,) N_r among the n collection samples.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    outside = x @ x[worst] < math.cos(math.pi * radius)
    if not outside.any():
        outside = np.ones(len(x), dtype=bool)
    counts = np.asarray(neighbors, dtype=np.float64)[outside]
    return {"background": float((counts.sum() + 0.5) / (len(counts) * n + 1.0)), "competitor": int(counts.max())}


def detection_summary(n: int, m: int, radius: float, background: float, competitor: int, collapse: bool,
                      identity: bool = False) -> dict:
    """report['detection']: the limit, its inputs, and the verdict's sentence about it."""
    from gancheck.formatting import format_share

    limit = detection_limit(n, m, background, competitor, identity=identity)
    if limit is None:
        sentence = f"with {m:,} anchors not even a mode holding half of all samples would be found with {POWER:.0%} probability; add anchors (--anchors)"
    else:
        seen = "collapse found" if collapse else "no collapse found"
        sentence = (f"{seen}; a mode holding {format_share(limit)} or more of samples (within r = {radius:.3g}) "
                    f"would have been found with {POWER:.0%} probability")
    return {"limit": limit, "power": POWER, "alpha": COLLAPSE_ALPHA, "background_rate": background, "competitor": competitor,
            "sentence": sentence,
            "meaning": ("the smallest share of draws a single mode may hold and still be found by this audit "
                        f"(Ripley p < {COLLAPSE_ALPHA}) with {POWER:.0%} probability, from the binomial model of anchors "
                        "landing in the mode and of its neighbour counts; a larger --anchors lowers it"),
            "method": "binomial model (gancheck.analysis.detection)"}
