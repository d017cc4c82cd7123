"""Ripley's K function around dense modes, with a Monte Carlo envelope and test.

In descriptor space, the (local) K function of a point ``x`` is the fraction of the generator's
output within distance ``r`` of it: ``K_x(r) = P_{I ~ G}(d(x, I) <= r)``, estimated by counting
samples (Eq. 4 distances). Averaged over random anchors it is the generator's pair-collision
function ``Kbar(r) = P(d(I1, I2) <= r)`` for two independent draws: Ripley's K of the generator
with itself, the reference a "typical" identity gets.

The test. H0: "the worst mode is no denser than a random anchor", i.e. ``K_w(r) <= Kbar(r)`` at
every radius. The worst mode is chosen as the anchor with the most *collection* neighbours, so
its collection counts are biased upward by the choice. The test therefore counts its neighbours
among the *other anchors* instead: the anchors are an i.i.d. sample drawn independently of the
collection, so given the chosen point each other anchor lands within ``r`` of it with
probability ``K_w(r)``. Under H0 those counts are (at most) Multinomial over the annuli with
probabilities from ``Kbar``. That null is simulated (the Monte Carlo envelope) and the observed
curve is ranked among the simulations by the global extreme-rank statistic (Myllymäki et al.
2017), a one-sided test across all radii at once with no multiple-testing correction needed.
When the anchors come in identity clumps the collection picks a whole identity, not one of its
anchors, and the held-out count follows another law (:func:`identity_pvalue`).
"""

from __future__ import annotations

import numpy as np

from gancheck.maths import angular_distance, normalise64

_TILE = 2048


def neighbour_fractions(centres: np.ndarray, points: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Local K functions: fraction of ``points`` within each radius of each centre.

    centres: (k, D), points: (n, D) embeddings; radii: (R,) ascending normalised angular
    distances. Returns (k, R) in [0, 1]. Exclude a centre from ``points`` yourself when it is one.
    """
    c, p = normalise64(centres), normalise64(points)
    radii = np.asarray(radii, dtype=np.float64)
    out = np.zeros((len(c), len(radii)))
    for start in range(0, len(p), _TILE):
        d = angular_distance(c @ p[start : start + _TILE].T)  # (k, tile)
        out += (d[:, :, None] <= radii[None, None, :]).sum(axis=1)
    return out / max(len(p), 1)


def mean_k(counts: np.ndarray, n: int) -> np.ndarray:
    """``Kbar(r)`` from per-anchor neighbour counts (m, R) among ``n`` collection samples,
    with half a count added (a Jeffreys-style floor) so a radius where no pair was seen
    still gets a small positive probability rather than an impossible one."""
    counts = np.asarray(counts, dtype=np.float64)
    pairs = counts.shape[0] * float(n)
    return (counts.sum(axis=0) + 0.5) / (pairs + 1.0)


def simulate_null(k_bar: np.ndarray, trials: int, sims: int, seed: int = 0) -> np.ndarray:
    """Monte Carlo K functions of a point whose ``trials`` independent neighbours fall within
    each radius with probability ``k_bar`` (R,) (nondecreasing). Returns (sims, R) fractions."""
    k_bar = np.maximum.accumulate(np.clip(np.asarray(k_bar, dtype=np.float64), 0.0, 1.0))
    shells = np.diff(np.concatenate([[0.0], k_bar, [1.0]]))  # annuli, then everything farther
    counts = np.random.default_rng(seed).multinomial(trials, shells, size=sims)[:, :-1]
    return np.cumsum(counts, axis=1) / max(trials, 1)


def extreme_rank_pvalue(observed: np.ndarray, simulated: np.ndarray, rng: np.random.Generator | None = None) -> float:
    """One-sided global extreme-rank test of ``observed`` (R,) being *above* the simulations
    (s, R). Each curve's rank at a radius is the share of all s + 1 curves at least as high;
    its global rank is the smallest over radii; p = share of curves whose global rank is as
    extreme as the observed one.

    Ties: without ``rng`` they count against rejection (conservative). With ``rng`` the observed
    curve takes a uniformly random place among the curves tied with it, so that under H0 its rank
    is uniform on 1..s+1 and ``p`` uniform on {1/(s+1), ..., 1}: neighbour counts are small
    integers, and a conservative tie rule would pile the p-values at 1 (no longer uniform) and cost
    power. A curve above every simulation still gets exactly 1/(s+1)."""
    pool = np.vstack([np.asarray(observed, dtype=np.float64)[None, :], np.asarray(simulated, dtype=np.float64)])
    # share of curves >= each curve, per radius: rank from the top with ties counted in
    order = np.sort(pool, axis=0)
    at_least = len(pool) - np.stack([np.searchsorted(order[:, j], pool[:, j], side="left") for j in range(pool.shape[1])], axis=1)
    global_rank = at_least.min(axis=1)
    if rng is None:
        return float(np.mean(global_rank <= global_rank[0]))
    above = int(np.sum(global_rank[1:] < global_rank[0]))
    tied = int(np.sum(global_rank[1:] == global_rank[0]))
    return float((above + 1 + rng.integers(0, tied + 1)) / len(pool))


def envelope(curves: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise ``level`` band of curves (s, R): the lower and upper quantiles at each radius."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(np.asarray(curves, dtype=np.float64), [tail, 100 - tail], axis=0)
    return low, high


def clumped(anchors: np.ndarray, neighbors: np.ndarray, radius: float) -> bool:
    """Whether the anchors come in identity clumps: for most anchors with another anchor within
    ``radius``, every such neighbour ties with it in its collection count ``N_r`` (near copies of
    one identity share their collection neighbours). anchors: (m, D); neighbors: (m,) N_r."""
    x = normalise64(anchors)
    counts = np.asarray(neighbors)
    tied, seen = 0, 0
    for start in range(0, len(x), _TILE):
        near = angular_distance(x[start : start + _TILE] @ x.T) <= radius
        near[np.arange(len(near)), np.arange(start, start + len(near))] = False
        has = near.any(axis=1)
        same = np.all(~near | (counts[None, :] == counts[start : start + len(near), None]), axis=1)
        seen += int(has.sum())
        tied += int((has & same).sum())
    return seen > 0 and tied >= 0.5 * seen


def identity_pvalue(held_out: int, anchors: int, rate: float, rng: np.random.Generator) -> tuple[float, float]:
    """p-value of a worst mode that is a whole identity, from its held-out count at the test radius.

    The argmax of Eq. 9 (collection counts) picks an identity, and the tie-break one of its ``a``
    anchors: the identity is not size-biased as a random anchor's is. Under H0 (its share is the
    random-anchor pair rate ``rate``) ``a ~ Binomial(anchors, rate)`` given ``a >= 1`` and the
    held-out count is ``a - 1``; the size-biased Binomial(anchors - 1, rate) of
    :func:`simulate_null` runs one higher, which piled the p-values towards 1 on K = 50 equal
    identities. Returns (randomised p, uniform under H0; conservative p)."""
    from scipy import stats

    rate = min(max(float(rate), 1e-300), 1.0)
    seen = stats.binom.sf(0, anchors, rate)  # P(a >= 1)
    above = stats.binom.sf(held_out + 1, anchors, rate) / seen  # P(a - 1 > held_out)
    at = stats.binom.pmf(held_out + 1, anchors, rate) / seen
    return float(min(above + rng.uniform() * at, 1.0)), float(min(above + at, 1.0))


def ripley_test(anchors: np.ndarray, worst: int, radii: np.ndarray, k_bar: np.ndarray, test_radius: float | None = None,
                sims: int = 999, seed: int = 0, neighbors: np.ndarray | None = None) -> dict:
    """Test H0 "anchor ``worst`` is no denser than a random anchor" (module docstring).

    anchors: (m, D) embeddings of all anchors, ``worst`` the position of the worst mode among
    them; radii: (R,) ascending; k_bar: (R,) the random-anchor mean K at those radii (from the
    collection, see :func:`mean_k`). The p-value uses the radii up to ``test_radius`` (the
    dense-mode radius r of Eq. 9: a mode is about neighbours within r; at larger radii any
    generator whose density varies at all has anchors above average). Returns the observed
    held-out K curve, the simulated envelope (pointwise 95% and 99%) at every radius, and
    ``p_value``. With ``neighbors`` (m,), the anchors' N_r: when the anchors come in identity
    clumps (:func:`clumped`) the worst mode is a whole identity and ``p_value`` is
    :func:`identity_pvalue` of its held-out count at ``test_radius`` (``null`` says which).
    """
    anchors = np.asarray(anchors)
    others = np.delete(np.arange(len(anchors)), worst)
    if len(others) < 1:
        raise ValueError("the Ripley test needs at least two anchors")
    observed = neighbour_fractions(anchors[worst : worst + 1], anchors[others], radii)[0]
    simulated = simulate_null(k_bar, len(others), sims, seed)
    low95, high95 = envelope(simulated, 0.95)
    low99, high99 = envelope(simulated, 0.99)
    radii_arr = np.asarray(radii, dtype=np.float64)
    r_test = radii_arr[-1] if test_radius is None else test_radius
    whole = neighbors is not None and clumped(anchors, neighbors, r_test)
    # A grid radius may exceed r by rounding only (linspace): allow 1e-9.
    use = radii_arr <= (radii_arr[-1] if test_radius is None else test_radius) + 1e-9
    if not use.any():
        use = radii_arr <= radii_arr[0]
    if whole:
        last = int(np.flatnonzero(use)[-1])
        p, p_cons = identity_pvalue(int(round(observed[last] * len(others))), len(anchors), float(k_bar[last]), np.random.default_rng([seed, 1]))
    else:
        p = extreme_rank_pvalue(observed[use], simulated[:, use], np.random.default_rng([seed, 1]))
        p_cons = extreme_rank_pvalue(observed[use], simulated[:, use])
    return {"radii": np.asarray(radii, dtype=np.float64), "observed": observed, "k_bar": np.asarray(k_bar, dtype=np.float64),
            "envelope95": (low95, high95), "envelope99": (low99, high99), "p_value": p, "p_value_conservative": p_cons,
            "test_radii": np.asarray(radii, dtype=np.float64)[use], "sims": int(sims), "held_out": int(len(others)),
            "null": "identity" if whole else "anchor"}
