"""The mathematics of Wu et al., section 3 (Eqs. 3, 4, 6, 7, 8, 9), as pure functions on arrays.

The streaming engine that evaluates them over large collections lives in :mod:`gancheck.engine.accumulator`;
nothing else re-derives a formula.
"""

from __future__ import annotations

import numpy as np

from gancheck.errors import GancheckError

MCCS_FORMS = ("paper", "reference")
#: ``r / theta`` of :func:`radius_from_theta`.
RADIUS_OVER_THETA = 0.25 / 0.30


def check_thresholds(theta: float, radius: float) -> None:
    if not 0.0 < theta <= 1.0:
        raise GancheckError(f"theta must lie in (0, 1] (a normalised angular distance), got {theta}")
    if not 0.0 <= radius <= 1.0:
        raise GancheckError(f"radius must lie in [0, 1] (a normalised angular distance), got {radius}")


def normalise64(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` as float64 unit vectors."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), np.finfo(np.float64).tiny)


def angular_distance(cos: np.ndarray) -> np.ndarray:
    """Eq. (4): ``d = arccos(<a, b>) / pi`` for unit vectors, in [0, 1]."""
    return np.arccos(np.clip(cos, -1.0, 1.0)) / np.pi


def pairwise_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Eq. (4) between every row of ``a`` (k, D) and every row of ``b`` (n, D): (k, n), float64.
    Rows need not be unit vectors: they are normalised here."""
    return angular_distance(normalise64(a) @ normalise64(b).T)


def paired_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Eq. (4) between row ``i`` of ``a`` and row ``i`` of ``b`` ((N, D) each): (N,), float64."""
    return angular_distance(np.einsum("ij,ij->i", normalise64(a), normalise64(b)))


def cosine_from_euclidean(e, norm_a=1.0, norm_b=None) -> np.ndarray:
    """The cosine of the angle between vectors of norms ``norm_a``, ``norm_b`` that are ``e`` apart.

    Law of cosines, ``e^2 = a^2 + b^2 - 2 a b cos``; for unit vectors ``cos = 1 - e^2 / 2``.
    ``norm_b`` defaults to ``norm_a``.
    """
    a = np.asarray(norm_a, dtype=np.float64)
    b = a if norm_b is None else np.asarray(norm_b, dtype=np.float64)
    e = np.asarray(e, dtype=np.float64)
    return (a**2 + b**2 - e**2) / (2 * a * b)


def angular_distance_from_euclidean(e, norm_a=1.0, norm_b=None) -> np.ndarray:
    """Eq. (4) distance between descriptors ``e`` apart in Euclidean distance with the given norms."""
    return angular_distance(cosine_from_euclidean(e, norm_a, norm_b))


def radius_from_theta(theta: float) -> float:
    """A neighbour radius ``r`` for ``theta`` at the ratio ``r / theta = 0.25 / 0.3``: r = 0.25 is
    the paper's Fig. 7 radius and 0.3 one of the thetas its code uses (it also uses 0.35 and 0.4;
    which theta the tables used is not recorded), so the pairing is a convention, not the paper's."""
    return float(theta) * RADIUS_OVER_THETA


def similarity(d: np.ndarray, theta: float) -> np.ndarray:
    """Eq. (3): ``s = (exp(max(0, theta - d)) - 1) / (exp(theta) - 1)``, in [0, 1]; 0 for d >= theta."""
    return np.expm1(np.maximum(0.0, theta - np.asarray(d, dtype=np.float64))) / np.expm1(theta)


def expected_similarity(similarity_sum: np.ndarray, n: int) -> np.ndarray:
    """Eq. (6): ``m(I') = (1/n) sum_i s(I', G(z_i))`` from each anchor's running sum of Eq. (3) over
    ``n`` collection samples (0 before the first sample)."""
    similarity_sum = np.asarray(similarity_sum, dtype=np.float64)
    return similarity_sum / n if n else np.zeros_like(similarity_sum)


def mccs(m: np.ndarray, form: str = "paper") -> np.ndarray:
    """Eq. (7): Monte Carlo Collapse Score from the expected similarity ``m`` (Eq. 6).

    ``paper``: ``1 / (1 - ln m)``, in (0, 1], with its limit 0 at m = 0.
    ``reference``: the authors' published code, ``1 / (-log10 m)``, unbounded. Their script raises at
    m = 0 and m = 1; returning 0 at m = 0 and inf at m = 1 are gancheck's conventions.
    """
    m = np.asarray(m, dtype=np.float64)
    with np.errstate(divide="ignore"):
        if form == "paper":
            return np.where(m > 0, 1.0 / (1.0 - np.log(np.where(m > 0, m, 1.0))), 0.0)
        if form == "reference":
            neg_log = -np.log10(np.clip(m, np.finfo(np.float64).tiny, 1.0))
            return np.where(m > 0, np.where(neg_log > 0, 1.0 / np.where(neg_log > 0, neg_log, 1.0), np.inf), 0.0)
    raise ValueError(f"unknown MCCS form {form!r}; choose one of {MCCS_FORMS}")


def population_stats(scores: np.ndarray) -> tuple[float, float]:
    """Eq. (8): mean and sample standard deviation (divisor m - 1) of MCCS over the anchors."""
    scores = np.asarray(scores, dtype=np.float64)
    std = float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0
    return float(np.mean(scores)), std


def mode_order(neighbors: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Anchor positions from densest to sparsest: by N_r, then MCCS, then position (a total order)."""
    return np.lexsort((np.arange(len(neighbors)), -np.asarray(scores), -np.asarray(neighbors)))


def worst_mode(neighbors: np.ndarray, scores: np.ndarray) -> int:
    """Eq. (9): the anchor with the most neighbours within r (ties: higher MCCS, then first)."""
    return int(mode_order(neighbors, scores)[0])


def distinct_modes(anchors: np.ndarray, neighbors: np.ndarray, scores: np.ndarray, radius: float, k: int) -> list[int]:
    """The top ``k`` dense modes by N_r that are distinct: an anchor within ``radius`` of a mode
    already listed is the same mode seen again (the paper's Fig. 7 lists near-copies) and is skipped."""
    unit = normalise64(anchors)
    cos_r = np.cos(np.pi * radius)
    chosen: list[int] = []
    for i in mode_order(neighbors, scores):
        if len(chosen) >= k:
            break
        if not chosen or float(np.max(unit[chosen] @ unit[i])) < cos_r:
            chosen.append(int(i))
    return chosen


def brute_force(anchors: np.ndarray, collection: np.ndarray, theta: float, radius: float, form: str = "paper") -> dict:
    """Float64 reference of Eqs. 3-8 for every anchor-sample pair at once (for tests; O(|A||C|) memory)."""
    d = pairwise_distance(anchors, collection)
    m = expected_similarity(similarity(d, theta).sum(axis=1), d.shape[1])
    scores = mccs(m, form)
    mu, sigma = population_stats(scores)
    return {"m": m, "mccs": scores, "neighbors": (d <= radius).sum(axis=1), "mean": mu, "std": sigma}


def weighted_moments(x: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of rows ``x`` (N, D) in float64, each row counted ``weights``
    times (None: once each); numpy's divisor ``sum w - sum w^2 / sum w`` (N - 1 unweighted)."""
    x = np.asarray(x, dtype=np.float64)
    return np.average(x, axis=0, weights=weights), np.atleast_2d(np.cov(x, rowvar=False, aweights=weights))


def sqrt_psd(s: np.ndarray) -> np.ndarray:
    """The symmetric square root of a positive semi-definite matrix (eigendecomposition; negative
    round-off eigenvalues count as 0)."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_from_moments(mu_a: np.ndarray, s_a: np.ndarray, mu_b: np.ndarray, s_b: np.ndarray, root_a: np.ndarray | None = None) -> float:
    """Fréchet distance between two Gaussians (the FID formula):
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)``, at least 0, through symmetric
    eigendecompositions (no complex round-off). ``root_a``: ``sqrt_psd(s_a)`` when already known."""
    root_a = sqrt_psd(s_a) if root_a is None else root_a
    cross = np.clip(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0.0, None)
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2.0 * np.sum(np.sqrt(cross)))
    return max(value, 0.0)


def excess_removed(keep: np.ndarray, count: np.ndarray, floor: float, axis: int = -1) -> np.ndarray:
    """The share of the modes' excess a thinning removes, estimated on samples with known mode
    counts: ``(before - after) / (before - floor)`` with ``before`` the mean of ``count`` (modes each
    sample lies in), ``after`` its mean weighted by the keep probability ``keep``, and ``floor`` the
    modes' total share at a typical identity's density. Vectorised along ``axis`` (bootstraps)."""
    before = count.mean(axis=axis)
    return (before - (keep * count).sum(axis=axis) / keep.sum(axis=axis)) / (before - floor)
