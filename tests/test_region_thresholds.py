"""The thresholds of learned latent regions: how far their thinning may move the off-mode samples
(a predicted Fréchet shift against the proof's noise floor) and what it may cost."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from gancheck.analysis.diversity import frechet_distance
from gancheck.calibrators.regions import choose_thresholds, cut_at, frechet_shift, proof_noise_floor
from gancheck.maths import frechet_from_moments, weighted_moments


def reference_frechet(mu_a, s_a, mu_b, s_b) -> float:
    """The FID formula with scipy's general matrix square root."""
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * np.real(linalg.sqrtm(s_a @ s_b))))


def test_weighted_moments_and_frechet_match_numpy_and_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 6)), rng.normal(0.3, 1.5, size=(200, 6))
    w = rng.random(300)
    mean, cov = weighted_moments(a, w)
    assert np.allclose(mean, np.average(a, axis=0, weights=w)) and np.allclose(cov, np.cov(a.T, aweights=w))
    ma, sa = weighted_moments(a)
    mb, sb = weighted_moments(b)
    assert frechet_from_moments(ma, sa, mb, sb) == pytest.approx(reference_frechet(ma, sa, mb, sb), rel=1e-9)
    assert frechet_from_moments(ma, sa, mb, sb) == pytest.approx(frechet_distance(a, b), rel=1e-12)


def gaussian_cloud(n: int, seed: int, d: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) * np.linspace(0.5, 2.0, d)


def test_random_thinning_adds_no_shift_and_thinning_a_side_adds_the_population_shift():
    x = gaussian_cloud(4000, 1)
    keep = np.where(np.random.default_rng(2).random(len(x)) < 0.3, 0.1, 1.0)
    floor = proof_noise_floor(x, np.arange(len(x)))
    # thinning unrelated to the vectors: within sampling noise of zero
    assert abs(frechet_shift(x, keep, seed=0)) < 0.2 * floor
    # thinning one side of the widest axis: the population shift, computed on a far larger sample
    side = lambda v: np.where(v[:, -1] > 1.0, 0.1, 1.0)  # noqa: E731
    big = gaussian_cloud(400_000, 3)
    truth = frechet_from_moments(*weighted_moments(big, side(big)), *weighted_moments(big))
    assert truth > 5 * floor
    assert frechet_shift(x, side(x), seed=0) == pytest.approx(truth, rel=0.25)


def test_the_noise_floor_predicts_two_independent_draws_of_the_same_size():
    n = 3000
    predicted = proof_noise_floor(gaussian_cloud(n, 4), np.arange(n))
    measured = np.mean([frechet_distance(gaussian_cloud(n, 10 + s), gaussian_cloud(n, 100 + s)) for s in range(8)])
    assert predicted == pytest.approx(measured, rel=0.25)


def test_cut_keeps_ties_together_and_sits_between_samples():
    s = np.array([0.9, 0.8, 0.8, 0.8, 0.1, 0.0])
    t = cut_at(s, 2 / 6)  # the second-highest score is tied with two more: all three go in
    assert (s >= t).sum() == 4 and t == pytest.approx(0.45)
    assert (s >= cut_at(s, 1.0)).all()


def planted(n: int, seed: int):
    """Scores that rank a mode (5%) above the rest imperfectly; off-mode vectors that move with the score."""
    rng = np.random.default_rng(seed)
    near = rng.random(n) < 0.05
    score = rng.normal(size=n) + 2.0 * near
    vectors = gaussian_cloud(n, seed + 1) + 0.8 * score[:, None] * (np.arange(16) == 0)
    return score[:, None], near[:, None], vectors


@pytest.mark.parametrize("max_frechet", [0.1, 0.5, 2.0])
def test_thresholds_respect_the_fréchet_and_cost_limits(max_frechet):
    score, near, vectors = planted(4000, 5)
    off = ~near[:, 0]
    floor = proof_noise_floor(vectors[off], np.arange(off.sum()))
    p = np.array([0.1])
    t, fig = choose_thresholds(score, near, score[off], vectors[off], p, 1.5, floor, seed=0, max_frechet=max_frechet)
    assert fig["frechet_shift"] <= max_frechet and fig["draws"] <= 1.5
    keep_off = np.where(score[off] >= t, p, 1.0).min(axis=1)
    assert frechet_shift(vectors[off], keep_off, seed=0) / floor == pytest.approx(fig["frechet_shift"])
    assert fig["limited_by"] in ("frechet", "max_draws")


def test_a_looser_fréchet_limit_thins_more_and_removes_more():
    score, near, vectors = planted(4000, 6)
    off = ~near[:, 0]
    floor = proof_noise_floor(vectors[off], np.arange(off.sum()))
    figs = [choose_thresholds(score, near, score[off], vectors[off], np.array([0.1]), 3.0, floor, 0, m)[1] for m in (0.05, 0.5, 5.0)]
    thinning = [f["off_mode_thinning"] for f in figs]
    cut = [f["validation_excess_cut"][0] for f in figs]
    assert thinning == sorted(thinning) and thinning[0] < thinning[-1]
    assert cut == sorted(cut) and cut[0] < cut[-1]


@pytest.mark.parametrize("kind", ["normal", "uniform", "truncnormal"])
def test_the_prior_as_a_mixture_has_the_prior_density(kind):
    from scipy import stats

    from gancheck.calibrators.regions import mixture_log_density, prior_mixture
    from gancheck.sources.latents import LatentPrior

    prior = LatentPrior((4,), kind=kind, bound=1.5)
    z = prior.draw(np.random.default_rng(0), 50)
    law = {"normal": stats.norm(), "uniform": stats.uniform(-1.5, 3.0), "truncnormal": stats.truncnorm(-1.5, 1.5)}[kind]
    assert np.allclose(mixture_log_density(z, prior_mixture(prior)), law.logpdf(z).sum(axis=1), atol=1e-12)


def test_regions_predicted_to_cut_little_of_the_modes_excess_are_said_before_the_proof():
    from gancheck.calibration import fit_forecast

    def forecast(cut, held):
        return fit_forecast({"thresholds": {"validation_excess_cut": cut, "limited_by": "frechet"}}, np.array(held))

    assert forecast([0.6, 0.3], [40, 40]) is None
    assert fit_forecast({"regions": []}, np.array([80])) is None  # a method without learned thresholds
    # one weak mode among strong ones: the modes together still drop, so no warning
    assert forecast([0.6, 0.12, 0.5], [40, 40, 40]) is None
    line = forecast([0.3, 0.12], [20, 60])  # together (0.3 * 20 + 0.12 * 60) / 80 = 16.5%
    assert "16.5%" in line and "mode 2 least: 12.0%" in line and "Fréchet" in line and "--budget" in line and "\n" not in line
    single = forecast([0.1], [37])
    assert "the fitted region is predicted to remove only 10.0% of its excess" in single and "on 37 validation samples" in single


def test_a_full_ledoit_wolf_gaussian_has_scipys_density_and_its_onnx_graph_the_same_scores():
    import onnxruntime as ort
    from scipy import stats
    from sklearn.covariance import LedoitWolf

    from gancheck.calibrators.regions import fit_mixture, mixture_onnx, mixture_scores, prior_mixture
    from gancheck.sources.latents import LatentPrior

    rng = np.random.default_rng(1)
    tilt = np.linalg.qr(rng.normal(size=(6, 6)))[0] * np.array([0.2, 0.5, 1.0, 1.0, 1.5, 2.0])
    x = rng.normal(size=(300, 6)) @ tilt + 0.7
    full = fit_mixture(x, 1, 0, "full")
    assert full["precisions"].shape == (1, 6, 6)
    lw = LedoitWolf().fit(x)
    z = rng.normal(size=(500, 6))
    law = stats.multivariate_normal(lw.location_, lw.covariance_)
    assert np.allclose(mixture_scores(z, [full], prior_mixture(LatentPrior((6,)))), (law.logpdf(z) - stats.norm.logpdf(z).sum(axis=1))[:, None],
                       atol=1e-9)
    # a full mode against a diagonal off-mode mixture, as one graph
    inside, outside = [full, fit_mixture(x[:100], 1, 0)], fit_mixture(rng.normal(size=(400, 6)), 2, 0)
    session = ort.InferenceSession(mixture_onnx(inside, outside, 6).SerializeToString(), providers=["CPUExecutionProvider"])
    z32 = z.astype(np.float32)
    graph = session.run(["scores"], {"z": z32})[0]
    assert np.allclose(graph, mixture_scores(z32.astype(np.float64), inside, outside), atol=1e-9)
