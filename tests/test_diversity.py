"""Diversity figures and confidence intervals against hand-computed values and references."""

import math

import numpy as np
import pytest

from gancheck.analysis import diversity, intervals


def circle(degrees):
    """Unit vectors in the plane at the given angles: their Eq. 4 distance is |angle difference| / 180."""
    a = np.radians(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def test_vendi_is_one_for_identical_samples_and_n_for_orthogonal_ones():
    assert diversity.vendi_score(np.tile([[0.6, 0.8, 0.0]], (7, 1))) == pytest.approx(1.0, abs=1e-9)
    assert diversity.vendi_score(np.eye(5)) == pytest.approx(5.0, abs=1e-9)


def test_vendi_of_two_vectors_at_cosine_half_equals_hand_value():
    # K / n = [[1, .5], [.5, 1]] / 2 has eigenvalues .75 and .25:
    # exp(-(.75 ln .75 + .25 ln .25)) = exp(0.562335) = 1.75477
    assert diversity.vendi_score(circle([0, 60])) == pytest.approx(1.75477, abs=1e-5)


@pytest.mark.parametrize("n, dim", [(300, 16), (40, 128)])
def test_vendi_from_the_small_gram_equals_the_n_by_n_kernel(n, dim):
    x = np.random.default_rng(n).normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    eig = np.clip(np.linalg.eigvalsh(x @ x.T / n), 0, None)
    eig = eig[eig > 1e-15]
    reference = math.exp(-np.sum(eig * np.log(eig)))
    assert diversity.vendi_score(x) == pytest.approx(reference, rel=1e-8)
    assert diversity.vendi_score(x[::-1] * 3.0) == pytest.approx(reference, rel=1e-8)  # order and scale free


def test_prdc_equal_hand_computed_values():
    # Real at 0, 10, 20, 40 degrees: k=1 radii 10, 10, 10, 20. Fake at 5, 8, 55, 92: radii 3, 3, 37, 37.
    # precision: 5, 8 (in the ball of 0), 55 (ball of 40) -> 3/4; 92 is in none.
    # recall: 10 (ball of 8), 20 (ball of 55: 35 < 37), 40 (ball of 55) -> 3/4; 0 is in none.
    # density: 5 in balls of 0 and 10, 8 in balls of 0 and 10, 55 in ball of 40 -> 5 / (1 * 4).
    # coverage: 0, 10 hold fakes 5/8; 40 holds 55; 20's ball (radius 10) holds none -> 3/4.
    out = diversity.prdc(circle([0, 10, 20, 40]), circle([5, 8, 55, 92]), k=1)
    assert out == {"precision": 0.75, "recall": 0.75, "density": 1.25, "coverage": 0.75, "k": 1}


def _prdc_reference(real, fake, k):
    """Naeem et al.'s reference formulas with full Euclidean distance matrices."""
    def dist(a, b):
        return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0))

    r_real = np.sort(dist(real, real), axis=1)[:, k]  # column 0 is the point itself
    r_fake = np.sort(dist(fake, fake), axis=1)[:, k]
    d = dist(real, fake)
    return {"precision": (d < r_real[:, None]).any(axis=0).mean(), "recall": (d < r_fake[None, :]).any(axis=1).mean(),
            "density": (d < r_real[:, None]).sum(axis=0).mean() / k, "coverage": (d.min(axis=1) < r_real).mean()}


def test_prdc_matches_euclidean_reference_on_unit_vectors():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(120, 8))
    fake = rng.normal(size=(90, 8)) + 0.4
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    fake /= np.linalg.norm(fake, axis=1, keepdims=True)
    out = diversity.prdc(real, fake, k=3)
    ref = _prdc_reference(real, fake, 3)
    for key in ref:
        assert out[key] == pytest.approx(ref[key], abs=1e-12), key
    assert 0 < out["precision"] < 1 and 0 < out["coverage"] < 1  # the data exercise both outcomes


def test_frechet_distance_equals_closed_form_for_diagonal_gaussians():
    # The four +-1 sign patterns have mean 0 and covariance (divisor n - 1) 4/3 * I; scaling the
    # columns gives samples with exactly known diagonal covariances.
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=np.float64)
    a = signs * [1.5, math.sqrt(0.75)]  # covariance diag(3, 1)
    b = signs * [3.0, math.sqrt(3.0)] + [1.0, 2.0]  # covariance diag(12, 4), mean (1, 2)
    assert np.allclose(np.cov(a, rowvar=False), np.diag([3.0, 1.0]))
    assert np.allclose(np.cov(b, rowvar=False), np.diag([12.0, 4.0]))
    # |mu_a - mu_b|^2 + sum (sqrt(s_a) - sqrt(s_b))^2 = (1 + 4) + (sqrt 3 - sqrt 12)^2 + (1 - 2)^2 = 9
    assert diversity.frechet_distance(a, b) == pytest.approx(9.0, abs=1e-9)
    assert diversity.frechet_distance(a, a + [1.0, 2.0]) == pytest.approx(5.0, abs=1e-9)
    assert diversity.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_matches_scipy_sqrtm_reference():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(5)
    a = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6)) + 0.3
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(sa + sb - 2 * np.real(scipy_linalg.sqrtm(sa @ sb)))
    assert diversity.frechet_distance(a, b) == pytest.approx(ref, rel=1e-7)


def test_count_close_pairs_matches_brute_force():
    x = circle([0, 1, 2, 50, 51, 120, 300])
    d = np.abs(np.subtract.outer([0, 1, 2, 50, 51, 120, 300], [0, 1, 2, 50, 51, 120, 300]))
    d = np.minimum(d, 360 - d) / 180
    iu = np.triu_indices(7, 1)
    for threshold in (0.0, 0.007, 0.3, 1.0):
        assert diversity.count_close_pairs(x, threshold) == int((d[iu] <= threshold + 1e-12).sum())


def test_birthday_support_size_recovers_the_number_of_identities():
    rng = np.random.default_rng(0)
    identities = rng.normal(size=(40, 64))
    identities /= np.linalg.norm(identities, axis=1, keepdims=True)  # pairwise ~0.5 apart, far beyond 0.1
    draws = identities[rng.integers(0, 40, size=1500)] + rng.normal(0, 1e-3, size=(1500, 64))
    pairs = 1500 * 1499 // 2
    out = diversity.support_size(diversity.count_close_pairs(draws, 0.1), pairs)
    assert out["estimate"] == pytest.approx(40, rel=0.1)
    assert out["lower"] < out["estimate"]


def test_support_size_without_collisions_gives_only_a_lower_bound():
    out = diversity.support_size(0, 1000)
    assert out["estimate"] is None
    # P(0 events) = 0.05 at lam = -ln 0.05 = 2.9957
    assert out["lower"] == pytest.approx(1000 / 2.995732, rel=1e-4)
    # one collision: lam with P(X <= 1) = 0.05 is chi2(0.95, 4 dof) / 2 = 4.743865
    assert diversity.poisson_upper(1) == pytest.approx(4.743865, rel=1e-5)


def test_wilson_interval_equals_hand_values():
    # z = 1.959964, z^2 = 3.8415: centre (0.5 + 0.19207) / 1.38415 = 0.5,
    # half = 1.959964 * sqrt(0.025 + 0.0096037) / 1.38415 = 0.26341
    lo, hi = intervals.wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.23659, abs=1e-4), pytest.approx(0.76341, abs=1e-4))
    lo, hi = intervals.wilson_interval(0, 20)
    assert lo == 0.0 and hi == pytest.approx(3.8415 / (20 + 3.8415), abs=1e-4)  # z^2 / (n + z^2) at k = 0


def test_bootstrap_interval_covers_the_mean_with_the_normal_theory_width():
    scores = np.random.default_rng(1).normal(0.4, 0.05, size=2000)
    ci = intervals.bootstrap_mean_std(scores, n_boot=2000, seed=0)
    half = 1.96 * scores.std(ddof=1) / math.sqrt(len(scores))
    assert ci["mean_low"] < scores.mean() < ci["mean_high"]
    assert (ci["mean_high"] - ci["mean_low"]) / 2 == pytest.approx(half, rel=0.15)
    assert ci["std_low"] < scores.std(ddof=1) < ci["std_high"]
    assert intervals.bootstrap_mean_std(np.array([0.1, np.inf]))["mean_high"] is None


def test_anchor_subsample_curve_narrows_with_more_anchors():
    scores = np.random.default_rng(2).normal(0.3, 0.05, size=1000)
    curve = intervals.anchor_subsample_curve(scores, np.array([10, 100, 1000]), reps=100)
    width = curve["mean_high"] - curve["mean_low"]
    assert width[0] > width[1] > width[2] >= 0
    assert curve["mean_mid"][-1] == pytest.approx(scores.mean())
