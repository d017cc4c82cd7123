"""Ripley's K test: separates a planted dense mode from random anchors, and only then."""

import numpy as np
import pytest
from scipy import stats

from gancheck.analysis import spatial

SIZES = dict(n=1000, anchors=200)


def test_extreme_rank_pvalue_is_smallest_for_a_curve_above_every_simulation():
    sims = np.random.default_rng(0).uniform(0, 1, size=(99, 5))
    assert spatial.extreme_rank_pvalue(np.full(5, 2.0), sims) == pytest.approx(1 / 100)
    # A curve tied with all simulations at every radius is not evidence of anything.
    assert spatial.extreme_rank_pvalue(np.zeros(3), np.zeros((99, 3))) == 1.0
    # One radius far above the rest ranks the curve first; the only curves as extreme are the
    # simulations that are highest at some other radius (ties count against rejection).
    obs = np.median(sims, axis=0)
    obs[2] = 5.0
    tops = {int(np.argmax(sims[:, j])) for j in (0, 1, 3, 4)}
    assert spatial.extreme_rank_pvalue(obs, sims) == pytest.approx((1 + len(tops)) / 100)


def test_null_simulations_have_the_random_anchor_mean():
    k_bar = np.array([0.001, 0.01, 0.05, 0.2])
    sims = spatial.simulate_null(k_bar, trials=500, sims=4000, seed=1)
    assert sims.shape == (4000, 4)
    assert np.all(np.diff(sims, axis=1) >= 0)  # a K function never decreases with the radius
    assert np.allclose(sims.mean(axis=0), k_bar, rtol=0.05)


def test_neighbour_fractions_count_points_within_each_radius():
    a = np.radians([0, 9, 18, 90])
    pts = np.stack([np.cos(a), np.sin(a)], axis=1)  # distances from the first: 0, .05, .1, .5
    k = spatial.neighbour_fractions(pts[:1], pts, np.array([0.01, 0.06, 0.2, 1.0]))
    assert np.allclose(k, [[1 / 4, 2 / 4, 3 / 4, 1.0]])


def _worst_mode_p(run_dir):
    from gancheck.analysis.report import load_run, ripley

    return ripley(load_run(run_dir))["p_value"]


def test_ripley_separates_a_planted_dense_mode(planted_onnx, tmp_path):
    from gancheck import api

    report = api.audit(str(planted_onnx), seed=3, out=tmp_path / "run", **SIZES)
    assert report["worst_mode"]["neighbor_fraction"] > 0.03  # the planted 5% mode was found
    assert _worst_mode_p(tmp_path / "run") < 0.01


def test_ripley_does_not_fire_without_a_dense_mode(tmp_path):
    from gancheck import api
    from gancheck.sources.planted import build_planted_generator

    # fraction 1e-9: the collapsed branch is never drawn in these runs.
    model = build_planted_generator(tmp_path / "none.onnx", fraction=1e-9)
    pvalues = []
    for seed in range(20):
        report = api.audit(str(model), seed=seed, out=tmp_path / f"run{seed}", **SIZES)
        assert report["worst_mode"]["neighbor_fraction"] < 0.01  # no planted mode
        pvalues.append(_worst_mode_p(tmp_path / f"run{seed}"))
    assert sum(p > 0.05 for p in pvalues) >= 16, pvalues


def _identity_clump_run(rng, k=50, n=2000, m=500):
    """One audit's anchors on K equal identities drawn as exact copies (one-hot descriptors):
    embeddings, N_r (the anchor's identity count in the collection) and the worst mode (Eq. 9)."""
    counts = rng.multinomial(n, np.full(k, 1 / k))
    ids = rng.integers(0, k, m)
    neighbors = counts[ids]
    worst = int(np.argmax(neighbors))  # ties: the first anchor of the identity, as maths.worst_mode
    k_bar = np.full(4, np.sum(np.bincount(ids, minlength=k) / m * counts / n))
    return np.eye(k)[ids], neighbors, worst, k_bar


def test_a_worst_mode_chosen_as_a_whole_identity_gets_uniform_p_values():
    # K = 50 equal identities, 500 anchors: each identity holds ~10 anchors and the collection picks
    # the identity; the random-anchor null (size-biased) made the test conservative there.
    rng = np.random.default_rng(0)
    radii = np.array([0.05, 0.1, 0.15, 0.2])
    exact, anchor_null = [], []
    for _ in range(300):
        emb, neighbors, worst, k_bar = _identity_clump_run(rng)
        assert spatial.clumped(emb, neighbors, 0.2)
        out = spatial.ripley_test(emb, worst, radii, k_bar, test_radius=0.2, sims=199, seed=int(rng.integers(1 << 30)), neighbors=neighbors)
        assert out["null"] == "identity"
        exact.append(out["p_value"])
        anchor_null.append(spatial.ripley_test(emb, worst, radii, k_bar, test_radius=0.2, sims=199)["p_value"])
    assert stats.kstest(exact, "uniform").pvalue > 0.001
    assert np.mean(np.array(exact) <= 0.05) <= stats.binom.ppf(0.999, 300, 0.05) / 300
    # the cause: without the identity null the p-values run high (one held-out count too few)
    assert np.mean(anchor_null) > 0.55 and stats.kstest(anchor_null, "uniform").pvalue < 0.001


def test_identity_pvalue_is_exact_and_smallest_for_a_crowded_identity():
    rng = np.random.default_rng(1)
    a = rng.binomial(500, 0.02, size=20_000)
    a = a[a >= 1]
    p = np.array([spatial.identity_pvalue(int(x) - 1, 500, 0.02, rng)[0] for x in a[:4000]])
    assert stats.kstest(p, "uniform").pvalue > 0.001
    assert spatial.identity_pvalue(40, 500, 0.02, rng)[1] < 1e-6  # 41 of 500 anchors in one 2% identity
    assert spatial.identity_pvalue(0, 500, 0.02, rng)[0] > 0.9


def test_anchors_without_identity_clumps_keep_the_random_anchor_null():
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(300, 8))
    neighbors = rng.integers(0, 50, 300)  # distinct collection counts near each anchor: no clumps
    assert not spatial.clumped(emb, neighbors, 0.3)
