"""One estimand per figure, and class rankings with their uncertainty (issue 28): the corrected mu is
the point its interval covers, a re-analysis does not correct twice, ranks carry intervals, and the
flagged classes are the ones that really collapse more (checked against brute force and by its
false-flag rate on identical classes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli
from gancheck.analysis.ranking import class_draws, flag_classes, mean_difference, normal_difference, rank_intervals


def test_rank_intervals_are_the_draws_rank_percentiles_and_hold_the_observed_rank():
    rng = np.random.default_rng(0)
    points = np.array([0.30, 0.20, 0.21, 0.10])
    draws = points + rng.normal(0, [0.005, 0.02, 0.02, 0.005], (4000, 4))
    got = rank_intervals(points, draws)
    # brute force: each draw's ranks by counting the classes above, the 2.5% and 97.5% order
    # statistics, and the observed rank (1, 3, 2, 4) inside
    ranks = 1 + (draws[:, None, :] > draws[:, :, None]).sum(axis=2)
    observed = [1, 3, 2, 4]
    for c, (lo, hi) in enumerate(got):
        r = np.sort(ranks[:, c])
        assert lo == min(r[int(np.floor(0.025 * (len(r) - 1)))], observed[c])
        assert hi == max(r[int(np.ceil(0.975 * (len(r) - 1)))], observed[c])
    assert got[0] == [1, 1] and got[3] == [4, 4]  # clearly apart
    assert got[1] == [2, 3] and got[2] == [2, 3]  # 0.20 and 0.21 cannot be told apart


def test_class_draws_are_reproducible_and_centred_on_the_corrected_mean():
    scores = [np.linspace(0.1, 0.3, 50), np.linspace(0.2, 0.4, 80)]
    a = class_draws(scores, [-0.02, None], [0.01, None], n_draws=3000, seed=5)
    assert np.array_equal(a, class_draws(scores, [-0.02, None], [0.01, None], n_draws=3000, seed=5))
    assert a.mean(axis=0) == pytest.approx([0.2 + 0.02, 0.3], abs=3e-3)
    # the spread is the bootstrap's (sd / sqrt(n)) and the collection's together
    boot = np.std(scores[0]) / np.sqrt(50)
    assert a[:, 0].std() == pytest.approx(np.hypot(boot, 0.01), rel=0.08)


def test_a_class_far_above_the_others_is_flagged_and_the_rest_are_not():
    rng = np.random.default_rng(1)
    scores = [rng.normal(0.2, 0.05, 200) for _ in range(6)]
    scores[4] = scores[4] + 0.05
    draws = class_draws(scores, [0.0] * 6, [0.002] * 6, seed=1)
    points = np.array([s.mean() for s in scores])
    flagged = flag_classes([str(i) for i in range(6)], points, draws)
    assert [f["label"] for f in flagged] == ["4"]
    f = flagged[0]
    others = np.delete(points, 4)
    assert f["difference"] == pytest.approx(points[4] - np.median(others))
    assert f["ci_low"] < f["difference"] < f["ci_high"] and f["q_value"] < 0.05


def test_identical_classes_are_flagged_at_most_at_the_nominal_rate():
    """Eight classes drawn from one distribution, 200 times: runs that flag any class <= 5% (+ noise)."""
    rng = np.random.default_rng(2)
    flagged_runs = 0
    for rep in range(200):
        scores = [rng.gamma(2.0, 0.05, 60) for _ in range(8)]
        points = np.array([s.mean() for s in scores])
        draws = class_draws(scores, [0.0] * 8, [0.003] * 8, n_draws=400, seed=rep)
        noisy = points + rng.normal(0, 0.003, 8)  # each class's own collection noise
        flagged_runs += bool(flag_classes([str(i) for i in range(8)], noisy, draws + (noisy - points)))
    assert flagged_runs / 200 <= 0.08, flagged_runs


def test_mean_difference_reads_each_runs_error_off_its_interval():
    a = {"mean": 0.20, "mean_ci_low": 0.19, "mean_ci_high": 0.21}
    b = {"mean": 0.25, "mean_ci_low": 0.23, "mean_ci_high": 0.27}
    d = mean_difference(a, b)
    se = np.hypot(0.01, 0.02) / 1.959963984540054
    assert d["difference"] == pytest.approx(0.05) and d["ci_high"] - d["ci_low"] == pytest.approx(2 * 1.959963984540054 * se)
    assert d["b_worse"] and d["p_value"] < 1e-4
    assert not mean_difference(b, a)["b_worse"]
    assert mean_difference(a, dict(b, mean_ci_low=None)) is None
    assert normal_difference(0.0, 0.0)["p_value"] == 1.0


@pytest.fixture(scope="module")
def small_run(planted_onnx, tmp_path_factory):
    """An audit at a |C| small enough for the collection bias to matter."""
    out = tmp_path_factory.mktemp("small") / "run"
    r = run_cli("audit", planted_onnx, "--n", "300", "--anchors", "120", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    return out


def test_the_corrected_mean_is_the_headline_and_the_raw_one_keeps_its_own_name(small_run):
    mc = json.loads((small_run / "report.json").read_text())["mccs"]
    assert mc["mean"] == pytest.approx(mc["mean_raw"] - mc["collection_bias_mean"], rel=1e-12)
    # most anchors see too few samples within theta to be corrected, and the note says so
    assert mc["uncorrected_share"] > 0.05 and "too few to correct" in mc["ci_note"]
    assert mc["mean_ci_low"] <= mc["mean"] <= mc["mean_ci_high"]
    assert mc["std_ci_low"] <= mc["std"] <= mc["std_ci_high"] and mc["std"] <= mc["std_raw"]
    assert "too few to correct" in (small_run / "report.html").read_text()


def test_a_reanalysed_report_is_not_corrected_twice(small_run):
    from gancheck.analysis.report import analyse, load_run

    written = json.loads((small_run / "report.json").read_text())["mccs"]
    again = analyse(load_run(small_run)).report["mccs"]  # what `gancheck report` and `compare` draw
    assert {k: again[k] for k in written} == written
