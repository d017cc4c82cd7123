"""Every figure against known truth, at a scale CI affords (benchmarks/bench_validity.py runs the
same experiments at full scale): generators with K identities of known shares, built as ONNX
models, audited through the real pipeline with the pixel and random-projection descriptors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from gancheck.analysis import detection, diversity
from gancheck.sources import simulated

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_validity", ROOT / "benchmarks" / "bench_validity.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("validity")


def test_simulated_generator_draws_each_identity_with_its_share(tmp):
    import onnxruntime as ort

    w = simulated.zipf_weights(20)
    path = simulated.build_identity_generator(tmp / "zipf20.onnx", w, latent_dim=bench.LATENT_DIM)
    z = np.random.default_rng(0).normal(size=(20_000, bench.LATENT_DIM)).astype(np.float32)
    images = ort.InferenceSession(str(path)).run(None, {"z": z})[0]
    ids = simulated.identity_of(z, w)
    counts = np.bincount(ids, minlength=20)
    assert stats.chisquare(counts, w * len(z)).pvalue > 1e-3
    # draws of one identity are near copies; the identity sets the image
    same = images[ids == 3]
    within = np.sqrt(np.mean((same - same.mean(axis=0)) ** 2))
    between = np.sqrt(np.mean((images[ids == 4].mean(axis=0) - same.mean(axis=0)) ** 2))
    assert within < 0.1 and between > 0.5, (within, between)


def test_collapse_free_generator_raises_false_alarms_at_the_nominal_rate_and_uniform_p_values(tmp):
    # K = 3000 equal identities for 300 anchors: the worst mode's identity is picked like a random
    # anchor's, so the Ripley test's null holds exactly and its p-values are uniform.
    seeds = 30
    null = bench.null_runs(tmp, seeds, n=1000, m=300, k=3000)
    # binomial tolerance at 99.9%: with 30 seeds, 5% nominal allows at most 6 rejections
    assert null["reject5_rate"] <= stats.binom.ppf(0.999, seeds, 0.05) / seeds
    assert null["collapse_rate"] <= stats.binom.ppf(0.999, seeds, detection.COLLAPSE_ALPHA) / seeds
    assert null["ks_p"] > 0.001, null["p_values"]


def test_few_large_identities_get_the_identity_null_and_uniform_p_values(tmp):
    # K = 30 identities for 300 anchors (about 10 each): the collection picks a whole identity
    null = bench.null_runs(tmp, 24, n=1000, m=300, k=30)
    assert null["identity_rate"] == 1.0
    assert null["reject5_rate"] <= stats.binom.ppf(0.999, 24, 0.05) / 24
    assert null["ks_p"] > 0.001, null["p_values"]


def test_intervals_cover_the_true_mean_std_and_worst_mode_share(tmp):
    seeds = 20
    cov = bench.zipf_coverage(tmp, seeds, n=2000, m=300, k=20)
    low = stats.binom.ppf(0.001, seeds, 0.95) / seeds  # 99.9% binomial tolerance below 95%
    assert min(cov["mean_coverage"], cov["std_coverage"], cov["share_coverage"]) >= low, cov


def test_detection_limit_is_in_the_report_and_a_gate_can_require_it(tmp):
    from gancheck import api

    w = np.full(200, 1 / 200)
    gen = bench.generator(tmp, "equal200", w)
    rep = api.audit(str(gen), n=2000, anchors=400, seed=1, out=tmp / "gate", html=False, gates=["detection_limit>0.005"])
    limit = rep["detection_limit"]
    assert limit == rep["detection"]["limit"] and 0.005 < limit < 0.05
    assert rep["gates"][0]["failed"]  # 400 anchors cannot see a 0.5% mode
    assert f"{100 * limit:.2f}%" in rep["detection"]["sentence"] or f"{100 * limit:.3g}" in rep["detection"]["sentence"]
    assert json.loads((tmp / "gate" / "report.json").read_text())["detection_limit"] == limit
    # more anchors lower the limit; the model's probability rises with the mode's share
    assert detection.detection_limit(2000, 4000, 0.005, 20) < detection.detection_limit(2000, 400, 0.005, 20)
    probs = [detection.detection_probability(f, 2000, 400, 0.005, 20) for f in (0.002, 0.01, 0.05)]
    assert probs == sorted(probs) and probs[0] < 0.5 < 0.95 < probs[2]


def test_planted_mode_at_the_predicted_limit_is_found_about_95_percent_of_the_time(tmp):
    curve = bench.detection_curve(tmp, seeds=12, n=2000, m=300, factors=(0.6, 1.25), k=2000)
    # below the limit the mode is often missed; 1.25 x the limit is found nearly always
    assert curve["found"][1.25] >= 10 / 12, curve
    assert curve["found"][0.6] < curve["found"][1.25], curve


@pytest.mark.parametrize("kind", ["pixel", "cone"])
def test_vendi_and_support_size_recover_the_number_of_identities(tmp, kind):
    rows = bench.diversity_recovery(tmp, (10, 200), (kind,), n=4000, m=500)
    for row in rows:
        assert row["vendi"] == pytest.approx(row["vendi_truth"], rel=0.2), row
        assert row["support"] == pytest.approx(row["support_truth"], rel=0.2), row


def test_cosine_vendi_fails_in_a_narrow_cone_where_the_identity_kernel_does_not(tmp):
    from gancheck.analysis.report import load_run

    bench.diversity_recovery(tmp, (50,), ("cone",), n=2000, m=400)
    run = load_run(tmp / "div-cone")
    assert diversity.vendi_score(run.embeddings) < 25  # the cosine kernel sees one cone, not 50 identities
    assert run.report["diversity"]["vendi"] == pytest.approx(50, rel=0.2)


def test_zipf_identities_give_the_entropy_and_simpson_truths(tmp):
    (row,) = bench.diversity_recovery(tmp, (50,), ("projection",), n=4000, m=500, zipf=True)
    assert row["vendi"] == pytest.approx(row["vendi_truth"], rel=0.2)
    assert row["support"] == pytest.approx(row["support_truth"], rel=0.2)
    assert row["support"] < row["vendi"]  # order 2 < order 1 when shares are unequal


def test_planted_modes_are_each_listed_once_in_order_with_their_share_in_its_interval(tmp):
    out = bench.modes_found(tmp, [0.08, 0.04, 0.02], n=4000, m=1000)
    assert out["once"] and out["in_order"], out
    assert all(out["share_in_interval"]), out


def _mean_interval_hits(k, zipf, seeds, n=2000, m=500):
    """Coverage of the mean's 95% interval (bootstrap over anchors widened by the shared collection
    noise) on K exact-copy identities drawn directly (one-hot descriptors, theta 0.3)."""
    from gancheck.analysis import intervals
    from gancheck.maths import mccs

    w = simulated.zipf_weights(k) if zipf else np.full(k, 1 / k)
    mu, _ = bench.truth_mccs(w)
    hits, errors, predicted = [], [], []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        ids = rng.choice(k, m, p=w)
        m_hat = rng.multinomial(n, w)[ids] / n
        scores = mccs(m_hat)
        ci = intervals.bootstrap_mean_std(scores, n_boot=400, seed=seed)
        sd = intervals.collection_sd(np.eye(k)[ids], m_hat, scores, 0.3, n, "paper")
        lo, hi = intervals.widen(scores.mean(), ci["mean_low"], ci["mean_high"], sd["mean_sd"], 0.95, sd["mean_bias"])
        hits.append(lo <= mu <= hi)
        errors.append(scores.mean() - mu)
        predicted.append((hi - lo) / 3.92)
    return np.mean(hits), np.std(errors), np.mean(predicted)


@pytest.mark.parametrize("k,zipf", [(50, False), (20, True)])
def test_mean_interval_counts_each_anchors_own_collection_noise_once(k, zipf):
    # K = 50 equal identities: every anchor's MCCS is the same up to collection noise, which the
    # bootstrap over anchors already sees; adding it again as shared noise covered 99.5%.
    seeds = 200
    coverage, spread, width = _mean_interval_hits(k, zipf, seeds)
    assert stats.binom.ppf(0.001, seeds, 0.95) / seeds <= coverage <= stats.binom.ppf(0.999, seeds, 0.95) / seeds, coverage
    assert width == pytest.approx(spread, rel=0.2)


@pytest.mark.parametrize("k,zipf,geometry", [(50, False, "orth"), (50, True, "orth"), (50, False, "cone")])
def test_std_interval_takes_the_collection_noise_out_in_variance(k, zipf, geometry):
    # sigma = 0 for K equal orthogonal identities (the sample std is all collection noise): the
    # interval must reach 0; shifting both ends by the bias covered 79% there. Elsewhere: the
    # nominal 95% within the binomial band of 120 seeds.
    seeds = 120
    cov = bench.simulated_interval_coverage(k, zipf, geometry, 2000, 500, seeds)
    low, high = stats.binom.ppf(0.001, seeds, 0.95) / seeds, stats.binom.ppf(0.999, seeds, 0.95) / seeds
    assert (cov["std"] >= low) if cov["sigma"] == 0 else (low <= cov["std"] <= high), cov
