"""Black-box diversity figures computed from descriptor embeddings, as pure functions on arrays.

- Vendi score (Friedman & Dieng 2023): the effective number of distinct samples; the report uses
  :func:`identity_vendi`, the Vendi score with the descriptor's own same-identity kernel (from
  theta), which recovers the number of identities with any descriptor geometry.
  :func:`vendi_score` (cosine kernel) is kept for comparison: it depends on where the descriptor
  puts unrelated images, not on identities.
- Birthday-paradox support size (Arora & Zhang 2017): ``1 / P(two draws share an identity)``.
- Precision, recall, density and coverage (Naeem et al. 2020) against real images.
- Fréchet distance between Gaussian fits of two embedding sets.

Every distance here is the normalised angular distance of Eq. (4) of Wu et al., the descriptor's
own metric; for unit vectors it orders pairs exactly as the Euclidean distance does, so the
nearest-neighbour figures equal those computed with Euclidean distances on the same vectors.
"""

from __future__ import annotations

import math

import numpy as np

from gancheck.maths import angular_distance, frechet_from_moments, normalise64, weighted_moments
from gancheck.analysis.intervals import percentile_bootstrap

#: Rows per tile of the pairwise-distance loops: a tile of 2048 x 10^4 float64 is 160 MB.
_TILE = 2048


def vendi_score(embeddings: np.ndarray) -> float:
    """Vendi score with the cosine kernel: ``exp(H)``, ``H`` the Shannon entropy of the
    eigenvalues of ``K / n`` where ``K_ij = <x_i, x_j>`` for the unit rows of ``embeddings``.

    embeddings: (n, D). Returns a number in [1, min(n, D)]: 1 when all rows are one vector, n for
    n orthogonal rows. ``K / n = X X^T / n`` has the same nonzero eigenvalues as the D x D matrix
    ``X^T X / n``, which is what is decomposed, so memory and time are O(n D^2), not O(n^2).
    """
    x = normalise64(embeddings)
    n = len(x)
    if n == 0:
        raise ValueError("the Vendi score needs at least one embedding")
    gram = x.T @ x / n if x.shape[1] <= n else x @ x.T / n
    eig = np.clip(np.linalg.eigvalsh(gram), 0.0, None)
    eig = eig[eig > 0] / eig.sum()  # trace is 1 up to rounding
    return float(np.exp(-np.sum(eig * np.log(eig))))


def identity_vendi(counts: np.ndarray, n: int, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Vendi score with the descriptor's same-identity kernel ``k(x, y) = 1[d(x, y) <= theta]``.

    When the generator's images fall into identities (the balls of radius theta), that kernel
    matrix is block-diagonal and its Vendi score is ``exp(H)``, ``H`` the Shannon entropy of the
    identities' shares: K for K equally likely identities, whatever the descriptor's geometry (the
    cosine kernel instead sees every pair in a narrow cone such as dlib's as alike). ``exp(H)``
    is also the order-1 similarity-sensitive diversity of Leinster & Cobbold, defined for any
    kernel, and is estimated from the anchors: ``H = E_a[-ln P(d(a, X) <= theta)]`` with the
    probability read off each anchor's count among the n collection samples (the anchors are not
    in the collection). ``+ 0.5`` in the count removes the first-order bias of the logarithm of a
    Poisson count (estimates stay within a few percent while identities hold >= 10 draws each,
    K <= n/10; beyond, they fall short of K).

    counts: (m,) per-anchor counts within theta. Returns ``estimate`` and a percentile-bootstrap
    ``low``/``high`` over the anchors.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if len(counts) < 2 or n < 1:
        raise ValueError("the identity Vendi score needs at least two anchors and one collection sample")
    surprise = -np.log(np.minimum((counts + 0.5) / n, 1.0))
    low, high = np.exp(percentile_bootstrap(surprise, np.mean, n_boot, level, seed))
    return {"estimate": float(np.exp(surprise.mean())), "low": float(low), "high": float(high)}


def count_close_pairs(embeddings: np.ndarray, threshold: float) -> int:
    """Unordered pairs ``i < j`` of rows with angular distance (Eq. 4) at most ``threshold``.

    embeddings: (n, D). Tiled, so memory is O(tile x n).
    """
    x = normalise64(embeddings)
    total = 0
    for start in range(0, len(x), _TILE):
        rows = x[start : start + _TILE]
        d = _pairwise_distance(rows, x[start:])  # columns from `start` on: the upper triangle
        # Only j > i: each pair once, never a row with itself.
        upper = np.arange(d.shape[1])[None, :] > np.arange(len(rows))[:, None]
        total += int(np.count_nonzero((d <= threshold) & upper))
    return total


def poisson_upper(k: int, level: float = 0.95) -> float:
    """One-sided upper confidence bound on a Poisson mean after observing ``k`` events:
    the ``lam`` with ``P(X <= k; lam) = 1 - level``. Exact (bisection on the CDF) up to
    ``k = 10^4``; beyond, the Wilson-Hilferty approximation, whose relative error there is
    below 1e-5."""
    from statistics import NormalDist

    k = int(k)
    alpha = 1.0 - level
    if k > 10_000:
        z = NormalDist().inv_cdf(level)
        return (k + 1) * (1 - 1 / (9 * (k + 1)) + z / (3 * math.sqrt(k + 1))) ** 3
    i = np.arange(k + 1)
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, k + 1)))])

    def cdf(lam: float) -> float:
        terms = i * math.log(lam) - lam - log_factorial
        top = terms.max()
        return float(math.exp(top) * np.exp(terms - top).sum())

    lo, hi = 0.0, 10.0 + 2.0 * k + 10.0 * math.sqrt(k + 1)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cdf(mid) > alpha else (lo, mid)
    return hi


def support_size(collisions: int, pairs: int, level: float = 0.95) -> dict:
    """Birthday-paradox estimate of the number of distinct identities a generator produces.

    ``pairs`` independent draws-pairs were compared and ``collisions`` of them fell within the
    descriptor's same-identity threshold. For a generator spread uniformly over ``S`` identities a
    pair collides with probability ``1/S``; in general ``1 / P(collision)`` is the *effective*
    support size (the inverse Simpson index of the identity distribution), which a collapse
    shrinks. Returns ``estimate`` (``pairs / collisions``, None when nothing collided: no finite
    estimate) and ``lower``, a one-sided ``level`` lower bound from the Poisson approximation of
    the collision count (pairs sharing a sample are not independent, so it is approximate).
    """
    if pairs <= 0:
        raise ValueError("support_size needs at least one compared pair")
    estimate = pairs / collisions if collisions > 0 else None
    return {"estimate": estimate, "lower": pairs / poisson_upper(int(collisions), level), "collisions": int(collisions),
            "pairs": int(pairs), "level": level}


def _pairwise_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Eq. (4) distances between unit rows: (len(a), len(b))."""
    return angular_distance(a @ b.T)


def kth_neighbour_distance(embeddings: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row to its k-th nearest *other* row (n,): the radius of the row's
    k-NN ball in Naeem et al. (the row itself is excluded)."""
    x = normalise64(embeddings)
    if len(x) <= k:
        raise ValueError(f"k-NN radii need more than k={k} embeddings, got {len(x)}")
    out = np.empty(len(x))
    for start in range(0, len(x), _TILE):
        d = _pairwise_distance(x[start : start + _TILE], x)
        d[np.arange(len(d)), np.arange(start, start + len(d))] = np.inf  # not its own neighbour
        out[start : start + len(d)] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return out


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict:
    """Precision, recall, density and coverage (Naeem et al. 2020, Eqs. 1-4 there).

    real: (N, D) embeddings of real images X; fake: (M, D) of generated images Y. ``B(x, r)``
    is the open ball (strict ``<``, as in the authors' reference code) and ``NND_k`` the k-th
    nearest-neighbour distance within the same set:

    - precision = (1/M) sum_j 1[exists i: Y_j in B(X_i, NND_k(X_i))]
    - recall    = (1/N) sum_i 1[exists j: X_i in B(Y_j, NND_k(Y_j))]
    - density   = (1/(kM)) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))]
    - coverage  = (1/N) sum_i 1[exists j: Y_j in B(X_i, NND_k(X_i))]
    """
    x, y = normalise64(real), normalise64(fake)
    r_real = kth_neighbour_distance(x, k)
    r_fake = kth_neighbour_distance(y, k)
    inside = np.zeros(len(y), dtype=np.int64)  # for each fake: how many real balls hold it
    covered = np.zeros(len(x), dtype=bool)
    recalled = np.zeros(len(x), dtype=bool)
    for start in range(0, len(x), _TILE):
        d = _pairwise_distance(x[start : start + _TILE], y)  # (tile of real, M)
        in_real_ball = d < r_real[start : start + len(d), None]
        inside += in_real_ball.sum(axis=0)
        covered[start : start + len(d)] = in_real_ball.any(axis=1)
        recalled[start : start + len(d)] = (d < r_fake[None, :]).any(axis=1)
    return {"precision": float(np.mean(inside > 0)), "recall": float(np.mean(recalled)),
            "density": float(inside.sum() / (k * len(y))), "coverage": float(np.mean(covered)), "k": int(k)}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two embedding sets (the FID formula):
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)``.

    a: (N, D), b: (M, D), each with at least 2 rows; covariances use divisor N - 1. The
    matrix square root goes through symmetric eigendecompositions (no complex round-off).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Fréchet distance needs at least two embeddings in each set")
    return frechet_from_moments(*weighted_moments(a), *weighted_moments(b))
