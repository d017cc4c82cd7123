"""Confidence intervals for the audit's figures, as pure functions on arrays.

- ``mu``/``sigma`` (Eq. 8): percentile bootstrap over the anchors (how much the figures would move
  with another anchor set of the same size), widened by the collection's own noise, which enters
  every anchor's MCCS alike (:func:`collection_sd`, delta method), and moved by the second-order
  bias of a small collection.
- The worst mode's share: a Wilson score interval on the *held-out anchors* within r
  (:func:`held_out_share`). The collection count ``N_r`` chose the worst mode, so it is the
  largest of many and biased upward; the other anchors played no part in the choice.
Coverage of all three against known truth: tests/test_validity.py, benchmarks/bench_validity.py.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from scipy import stats

#: Fewest effective samples within theta (``m n / rho``) for which an anchor's bias is corrected.
MIN_EFFECTIVE_COUNT = 5

def percentile_bootstrap(values: np.ndarray, statistic, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``statistic(values, axis=-1)`` over resamples of ``values``
    (scipy.stats.bootstrap; the same ``seed`` draws the same resamples for every statistic)."""
    result = stats.bootstrap((np.asarray(values, dtype=np.float64),), statistic, n_resamples=n_boot, confidence_level=level,
                             method="percentile", vectorized=True, batch=100, random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


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
    m_lo, m_hi = percentile_bootstrap(scores, np.mean, n_boot, level, seed)
    s_lo, s_hi = percentile_bootstrap(scores, lambda x, axis: np.std(x, axis=axis, ddof=1), n_boot, level, seed)
    return {"mean_low": m_lo, "mean_high": m_hi, "std_low": s_lo, "std_high": s_hi, "level": level, "n_boot": int(n_boot)}


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


def held_out_share(anchors: np.ndarray, index: int, radius: float, level: float = 0.95) -> dict:
    """Share of draws within ``radius`` of anchor ``index``, from the *other* anchors: a Wilson
    interval on ``k`` of ``m - 1``.

    The collection count of the worst mode (or of any listed mode) is the largest of many and so
    biased upward by the choice: on a generator with K equally likely identities the chosen one's
    collection share sits two or three standard errors above 1/K, and a plain binomial interval on
    it misses the truth. The anchors are drawn independently of the collection that chose the mode,
    so given the choice the other anchors' count is Binomial(m - 1, share): the interval is valid.
    anchors: (m, D) embeddings. Returns ``k``, ``trials``, ``share``, ``low``, ``high``.
    """
    from gancheck.maths import normalise64

    x = normalise64(anchors)
    close = x @ x[index] >= math.cos(math.pi * radius)
    k, trials = int(np.count_nonzero(close)) - 1, len(x) - 1
    low, high = wilson_interval(k, trials, level)
    return {"k": k, "trials": trials, "share": k / trials, "low": low, "high": high}


def mccs_derivatives(m: np.ndarray, form: str) -> tuple[np.ndarray, np.ndarray]:
    """First and second derivatives of Eq. (7) in ``m``, by central differences of
    :func:`gancheck.maths.mccs` (relative step 1e-3). ``m`` is floored at the smallest positive
    value: the score is not differentiable at 0. Infinite where the reference form is (m near 1)."""
    from gancheck.maths import mccs

    m = np.asarray(m, dtype=np.float64)
    floor = m[m > 0].min() if np.any(m > 0) else 1.0
    m = np.maximum(m, floor)
    h = 1e-3 * m
    up, mid, down = mccs(np.minimum(m + h, 1.0), form), mccs(m, form), mccs(m - h, form)
    with np.errstate(invalid="ignore"):
        return (up - down) / (np.minimum(m + h, 1.0) - (m - h)), (up - 2 * mid + down) / (h * h)


def own_score_variance(m: np.ndarray, var_m: np.ndarray, form: str, points: int = 9) -> np.ndarray:
    """Variance of each anchor's score ``g(m_hat)`` (Eq. 7) from its own collection noise, ``m_hat``
    normal around ``m`` with variance ``var_m`` and clipped to [0, 1] (Gauss-Hermite). Not the
    delta method: ``g'`` grows without bound as ``m`` falls to 0 while the score stays in [0, 1],
    so for anchors with a handful of neighbours the slope would overstate it many times."""
    from gancheck.maths import mccs

    t, w = np.polynomial.hermite_e.hermegauss(points)
    w = w / w.sum()
    m = np.asarray(m, dtype=np.float64)[:, None]
    values = mccs(np.clip(m + np.sqrt(np.maximum(var_m, 0.0))[:, None] * t[None, :], 0.0, 1.0), form)
    mean = values @ w
    return ((values - mean[:, None]) ** 2) @ w


def collection_sd(anchors: np.ndarray, m: np.ndarray, scores: np.ndarray, theta: float, n: int, form: str) -> dict:
    """Standard errors of ``mu`` and ``sigma`` (Eq. 8) from the *collection's* sampling noise.

    Every anchor's ``m`` (Eq. 6) is an average over the same n draws, so their errors are shared
    and do not average out over the anchors; a bootstrap over anchors misses them (on a generator
    with K equal identities the anchors' MCCS barely differ and the whole error is this one).
    Delta method: ``mu - E mu ~ (1/n) sum_i h(X_i)`` with ``h(x) = sum_a w_a s(a, x)``,
    ``w_a = g'(m_a) / |A|`` (``g`` Eq. 7); for ``sigma``, ``w_a = (g_a - mu) g'(m_a) / ((|A|-1) sigma)``.
    The anchors are themselves draws of the generator, so ``Var h(X)`` is estimated on them,
    leaving each anchor out of its own sum. anchors: (m, D); m, scores: (m,).
    ``mean_bias``: the second-order bias of ``mu``, ``mean_a g''(m_a) Var(s(a, X)) / (2n)`` with
    ``Var(s) = m (1 - m) rho``, ``rho = sum s^2 / sum s`` over anchor pairs (1 for exact copies):
    the score is concave in ``m`` for rare identities, so a small collection scores them low; only
    anchors whose effective count ``m n / rho`` reaches :data:`MIN_EFFECTIVE_COUNT` are corrected
    (``uncorrected_share``: the others).
    ``std_bias``: the upward bias of ``sigma``, ``sd - sqrt(sd^2 - mean_a Var g(m_hat_a))``, each
    anchor's own collection noise (:func:`own_score_variance`, ``Var m_hat_a = Var_X s(a, X) / n``)
    adding to the spread of the scores.
    Returns ``mean_sd``, ``std_sd``, ``mean_bias``, ``std_bias``, ``uncorrected_share`` (None where
    a score is infinite).
    """
    from gancheck.maths import angular_distance, normalise64, similarity

    scores = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(scores)) or len(scores) < 3:
        return {"mean_sd": None, "std_sd": None, "mean_bias": None, "std_bias": None, "uncorrected_share": None}
    x = normalise64(anchors)
    k = len(x)
    slope, curve = mccs_derivatives(m, form)
    slope = np.where(np.isfinite(slope), slope, 0.0)
    mu, sd = scores.mean(), scores.std(ddof=1)
    weights = np.stack([slope / k, (scores - mu) * slope / ((k - 1) * sd) if sd > 0 else np.zeros(k)], axis=1)
    h = np.zeros((k, 2))
    sums = np.zeros(2)  # sum of s and of s^2 over anchor pairs
    square = np.zeros(k)  # each anchor's sum of s^2 over the other anchors
    for start in range(0, k, 2048):
        s = similarity(angular_distance(x[start : start + 2048] @ x.T), theta)
        s[np.arange(len(s)), np.arange(start, start + len(s))] = 0.0  # not its own neighbour
        h[start : start + len(s)] = s @ weights * (k / (k - 1))
        square[start : start + len(s)] = (s * s).sum(axis=1)
        sums += s.sum(), (s * s).sum()
    m = np.asarray(m, dtype=np.float64)
    # The terms a = b of Var h(X) are each anchor's own noise, w_a^2 Var_X s(a, X) with
    # Var_X s = E s^2 - m_a^2: the bootstrap over anchors already holds them (it resamples the
    # noisy per-anchor scores), so only the noise the anchors share (a != b) may widen it. Counting
    # them twice made the mean's 95% interval cover 99.5% at K = 50 equal identities.
    own = np.maximum(square / (k - 1) - m * m, 0.0)
    var = np.maximum((h.var(axis=0, ddof=1) - (weights * weights * own[:, None]).sum(axis=0)) / n, 0.0)
    rho = sums[1] / sums[0] if sums[0] > 0 else 1.0
    # The expansion holds while an anchor's count within theta is large (its relative error small).
    # Below a few samples its curvature term grows without bound: on a planted 5% mode with
    # |C| = 1000 (pixel), correcting every anchor moved mu from 0.101 to 0.151 while |C| = 30000
    # measured 0.112; those anchors are left uncorrected and counted in ``uncorrected_share``.
    # At 10 instead of 5, half the anchors of 200 equal identities at |C| = 2000 went uncorrected
    # and mu's interval covered 84.5% instead of 95%.
    valid = (m > 0) & (m * n >= MIN_EFFECTIVE_COUNT * rho)
    bias = float(np.mean(np.where(valid, curve, 0.0) * m * (1 - m) * rho) / (2 * n))
    # Each anchor's own collection noise adds slope^2 Var_X s / n to the spread of the scores, so
    # the sample std overstates sigma (on K equal identities sigma is 0 and the std is all noise).
    spread = float(np.mean(own_score_variance(m, own / n, form)))
    std_bias = float(sd - math.sqrt(max(sd * sd - spread, 0.0)))
    return {"mean_sd": float(math.sqrt(var[0])), "std_sd": float(math.sqrt(var[1])), "mean_bias": bias, "std_bias": std_bias,
            "uncorrected_share": float(1.0 - valid.mean())}


def widen(estimate: float, low: float | None, high: float | None, sd: float | None, level: float = 0.95, bias: float = 0.0) -> tuple:
    """The bootstrap interval ``(low, high)`` widened by an independent error of ``sd`` (each
    half-width becomes ``sqrt(half^2 + (z sd)^2)``; none when ``sd`` is None) and moved by
    ``-bias``. Each half-width is measured from ``estimate``, so ``estimate - bias`` always lies
    inside, even where the percentile interval missed ``estimate``."""
    if low is None or high is None:
        return low, high
    z = NormalDist().inv_cdf(0.5 + level / 2)
    extra = 0.0 if sd is None else (z * sd) ** 2
    return (estimate - bias - math.sqrt((estimate - low) ** 2 + extra), estimate - bias + math.sqrt((high - estimate) ** 2 + extra))


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


def debias_std(low: float | None, high: float | None, std: float, bias: float | None) -> tuple:
    """The interval of ``sigma`` with each anchor's own collection noise taken out in variance, where
    noise adds: an endpoint ``x`` becomes ``sqrt(max(x^2 - v, 0))`` with ``v = std^2 - (std - bias)^2``
    (the noise variance behind :func:`collection_sd`'s ``std_bias``). Where sigma is 0 (K equally
    likely identities) the lower end reaches 0; shifting both ends by the bias missed it 12-21% of
    the time (benchmarks/bench_validity.py --only intervals)."""
    if low is None or high is None or not bias:
        return low, high
    v = std * std - (std - bias) ** 2
    return tuple(math.sqrt(max(max(x, 0.0) ** 2 - v, 0.0)) for x in (low, high))

