"""`gancheck calibrate` and `gancheck sample` on a generator with a planted collapse: 15% of its
latents (z[0] > t) map onto one image. Every method must remove most of the planted excess, lower
the worst mode's MCCS and keep the rest of the distribution within 2x the Fréchet noise floor."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

import gancheck
from conftest import audited_run_in_process, run_cli
from gancheck.sources.planted import build_planted_generator, in_planted_region
from gancheck.sources.latents import LatentPrior

FRACTION = 0.15
SEED = 3
N = 20_000
# 8x8 pixel descriptor: the planted image is still found exactly, and statistics stay cheap.
RUN_OPTIONS = dict(n=N, anchors=200, seed=SEED, embedder_opts=["size=8"])


@pytest.fixture(scope="module")
def planted15(tmp_path_factory):
    return build_planted_generator(tmp_path_factory.mktemp("gen15") / "planted15.onnx", fraction=FRACTION)


@pytest.fixture(scope="module")
def planted_run(planted15, tmp_path_factory):
    return audited_run_in_process(planted15, tmp_path_factory.mktemp("run15") / "run", **RUN_OPTIONS)


@pytest.fixture(scope="module")
def calibrations(planted_run, tmp_path_factory):
    """Each method's calibrate run: (its result as calibration.json holds it, calibrator file, proof run)."""
    done = {}

    def get(method):
        if method not in done:
            d = tmp_path_factory.mktemp(f"cal-{method}")
            # "gmm-cells": Alg. 1 over K-means cells; is and gmm otherwise learn regions with a descriptor budget
            options = dict(method="gmm", region="cells") if method == "gmm-cells" else dict(method=method, budget=4000)
            result = gancheck.calibrate(planted_run, **options, out=d / "cal.safetensors", proof_dir=d / "proof")
            # the figures as calibration.json (and `calibrate --json`) hold them: JSON values, without the change summary
            done[method] = (json.loads(json.dumps({k: v for k, v in result.items() if k != "change"})), d / "cal.safetensors", d / "proof")
        return done[method]

    return get


def planted_share(latents):
    return float(in_planted_region(np.asarray(latents).reshape(len(latents), -1), FRACTION).mean())


def ordinary_share(run_dir):
    """Median neighbour fraction of the run's anchors outside the planted region: an ordinary mode's share."""
    anchors = pq.read_table(run_dir / "anchors.parquet").to_pydict()
    idx = np.asarray(anchors["sample_index"])
    outside = ~in_planted_region(LatentPrior((32,)).sample(SEED, idx), FRACTION)
    return float(np.median(np.asarray(anchors["neighbors"])[outside]) / N)


@pytest.mark.parametrize("method", ["gmm", "gmm-cells", "is", "rejection"])
def test_calibration_removes_most_of_the_planted_excess(method, planted15, planted_run, calibrations):
    from gancheck.inputs import calibrated_generator

    result, path, proof = calibrations(method)
    idx = np.arange(N if method != "rejection" else 4000)
    before = planted_share(LatentPrior((32,)).sample(SEED, idx))
    after = planted_share(calibrated_generator(str(planted15), path, seed=SEED).latents(idx))
    ordinary = ordinary_share(planted_run)
    assert before > 0.13
    assert after <= before - 0.6 * (before - ordinary), (before, after, ordinary)
    # gancheck's own measurement, through the descriptor, agrees with the latent ground truth
    assert result["after"]["dense_share"] == pytest.approx(after, abs=0.01)
    assert result["before"]["dense_share"] == pytest.approx(before, abs=0.01)
    assert result["after"]["worst_mode"]["mccs"] < result["before"]["worst_mode"]["mccs"]
    assert result["after"]["mccs"]["mean"] < result["before"]["mccs"]["mean"]
    fd = result["frechet"]
    assert 0 < fd["calibrated_vs_original"] <= 2 * fd["noise_floor"], fd
    assert fd["sizes"]["calibrated"] == fd["sizes"]["floor_draw"]
    assert result["after"]["draws_per_sample"] > 1.0 and result["before"]["draws_per_sample"] == 1.0
    assert result["improved"] is True
    # the plain draw weighted by the keep probability agrees with the re-audit
    paired = result["paired"]
    assert paired["after"] == pytest.approx(result["total"]["after"], abs=0.01)
    assert paired["low"] <= paired["excess_removed"] <= paired["high"]
    assert paired["excess_removed"] == pytest.approx(result["total"]["excess_removed"], abs=0.1)
    assert result["cost"]["descriptor_calls_per_candidate"] == (1.0 if method == "rejection" else 0.0)
    on_disk = json.loads((proof / "calibration.json").read_text())
    assert on_disk["after"] == result["after"] and on_disk["frechet"] == fd
    # the proof is a real audit run of the calibrated sampler
    manifest = json.loads((proof / "manifest.json").read_text())
    assert manifest["config"]["calibrator"] == str(path.resolve()) and manifest["config"]["n"] == N


def test_is_reports_region_precision_and_recall_on_held_out_samples(calibrations):
    result, _, _ = calibrations("is")
    (region,) = result["region"]
    assert region["held_out"] == N // 5 and region["held_out_in_mode"] > 0.1 * region["held_out"]
    assert region["precision"] > 0.9 and region["recall"] > 0.9


def test_rejection_says_it_needs_the_embedder_at_sampling_time(calibrations):
    from gancheck.calibrators import load_calibrator
    from gancheck.errors import GancheckError

    result, path, _ = calibrations("rejection")
    assert result["needs_embedder_at_sampling"] is True and result["needs_descriptor_at_sampling"] is True  # and its name before 0.2
    assert any("the embedder 'pixel'" in note for note in result["notes"])
    with pytest.raises(GancheckError, match="decides on the generated image"):
        load_calibrator(path).sample(0, [0, 1])


def test_gmm_moves_mass_only_away_from_clusters_with_dense_images(calibrations):
    from gancheck.calibrators import load_calibrator

    result, path, _ = calibrations("gmm-cells")
    cal = load_calibrator(path)
    fraction, accept = cal.t["cell_dense_fraction"], cal.t["cell_acceptance"]
    clean = fraction == fraction.min()
    assert clean.any() and np.all(accept[clean] == 1.0)
    assert np.all(accept[~clean] < 1.0)
    # more dense images, less weight
    order = np.argsort(fraction)
    assert np.all(np.diff(accept[order]) <= 0)
    assert result["params"]["limited_by"] in ("target", "max_draws")


def test_equal_gmm_weights_reproduce_the_prior(calibrations, tmp_path):
    """A gmm file whose cells all have the same weight must sample exactly the prior (per-coordinate
    KS tests and the squared norm's chi-square law), though it rejects 60% of candidates. The fitted
    file, whose weights differ, must fail the same test: the test can tell them apart."""
    from scipy import stats

    from gancheck.calibrators import load_calibrator
    from gancheck.calibrators.fileformat import write_calibrator

    _, path, _ = calibrations("gmm-cells")
    fitted = load_calibrator(path)
    header = {k: v for k, v in fitted.header.items() if k != "tensors_sha256"}
    tensors = dict(fitted.t, cell_acceptance=np.full_like(fitted.t["cell_acceptance"], 0.4))
    write_calibrator(tmp_path / "equal.safetensors", header, tensors)
    equal = load_calibrator(tmp_path / "equal.safetensors")

    def p_values(cal):
        z = cal.sample(11, np.arange(20_000)).astype(np.float64)
        per_coordinate = [stats.kstest(z[:, j], "norm").pvalue for j in range(z.shape[1])]
        norm = stats.kstest((z * z).sum(axis=1), stats.chi2(df=z.shape[1]).cdf).pvalue
        return min(per_coordinate) * z.shape[1], norm  # Bonferroni over the coordinates

    coords, norm = p_values(equal)
    assert coords > 1e-3 and norm > 1e-3, (coords, norm)
    coords_fitted, _ = p_values(fitted)
    assert coords_fitted < 1e-6
    from gancheck.calibrators.sampling import CalibratedSampler

    counting = CalibratedSampler(equal.prior, equal.acceptance)
    counting.sample(11, np.arange(5000))
    assert counting.acceptance_rate == pytest.approx(1 / 0.4, rel=0.05)


def test_tilt_has_no_division_by_zero_and_equal_fractions_give_equal_weights():
    from gancheck.calibrators.gmm import dense_share, expected_draws, solve_tilt, tilt

    mass = np.array([0.5, 0.3, 0.2, 0.0])  # the last cluster is empty
    fraction = np.array([0.0, 0.0, 0.6, 0.0])
    lam, why = solve_tilt(mass, fraction, target_share=0.01, max_draws=3.0)
    a = tilt(fraction, lam)
    assert np.all(np.isfinite(a)) and a[0] == a[1] == a[3] == 1.0 and 0 < a[2] < 1
    assert dense_share(mass, fraction, a) <= 0.01 + 1e-9 and why == "target"
    assert expected_draws(mass, a) <= 3.0
    # no dense image anywhere: the prior, unchanged
    lam0, _ = solve_tilt(mass, np.zeros(4), target_share=0.0, max_draws=3.0)
    assert lam0 == 0.0 and np.all(tilt(np.zeros(4), lam0) == 1.0)
    # equal dense fractions everywhere: weights stay equal whatever lambda
    assert np.all(tilt(np.full(4, 0.3), 50.0) == 1.0)
    # an unreachable target stops at the cost cap
    lam_c, why_c = solve_tilt(np.array([0.5, 0.5]), np.array([0.2, 0.4]), target_share=0.0, max_draws=1.5)
    assert why_c == "max_draws" and expected_draws(np.array([0.5, 0.5]), tilt(np.array([0.2, 0.4]), lam_c)) == pytest.approx(1.5, rel=1e-6)


def test_latents_depend_only_on_seed_and_index(calibrations):
    from gancheck.calibrators import load_calibrator

    _, path, _ = calibrations("is")
    cal = load_calibrator(path)
    idx = np.arange(3000)
    whole = cal.sample(5, idx)
    rng = np.random.default_rng(0)
    order = rng.permutation(idx)
    pieces = np.empty_like(whole)
    for part in np.array_split(order, 37):
        pieces[part] = cal.sample(5, part)
    assert np.array_equal(whole, pieces)
    assert np.array_equal(cal.sample(5, [2999, 7]), whole[[2999, 7]])
    assert not np.allclose(cal.sample(6, idx[:10]), whole[:10])
    anchors = cal.sample(5, (1 << 40) + np.arange(300))
    assert planted_share(anchors) < 0.02


def test_high_dimensional_region_is_learned_and_literal_hull_is_exact_in_low_dimension():
    """At 512 dimensions a learned region finds a dense half-space; in 3 dimensions the paper's exact
    hull is offered, and a hull of in-region points never claims a point outside the region."""
    from gancheck.calibrators.importance import fit_region, hull_facets, in_hull, precision_recall, split_of

    rng = np.random.default_rng(1)
    z = rng.standard_normal((20_000, 512))
    y = z[:, 0] + 0.5 * z[:, 1] > 1.2  # a dense region holding 14% of the draws
    w, q, b, figures = fit_region(z, y, split_of(np.arange(len(z))))
    assert figures["precision"] > 0.85 and figures["recall"] > 0.85, figures
    z_new = rng.standard_normal((5000, 512))
    inside = z_new @ w + q * (z_new * z_new).sum(axis=1) + b >= 0
    p, r = precision_recall(inside, z_new[:, 0] + 0.5 * z_new[:, 1] > 1.2)
    assert p > 0.85 and r > 0.85

    z3 = rng.standard_normal((4000, 3))
    y3 = np.linalg.norm(z3 - np.array([1.0, 0.0, 0.0]), axis=1) < 0.8
    facets = hull_facets(z3[y3])
    test = rng.standard_normal((4000, 3))
    truth = np.linalg.norm(test - np.array([1.0, 0.0, 0.0]), axis=1) < 0.8
    p3, r3 = precision_recall(in_hull(test, facets), truth)
    assert p3 == 1.0 and r3 > 0.7


def test_hull_region_is_refused_for_large_latents(planted_run, tmp_path):
    proc = run_cli("calibrate", planted_run, "--method", "is", "--region", "hull", "--out", tmp_path / "c.safetensors",
                   "--proof-dir", tmp_path / "p", "--quiet")
    assert proc.returncode == 2 and "--region hull" in proc.stderr and "32 dimensions" in proc.stderr
    assert not (tmp_path / "c.safetensors").exists()


def test_modes_option_takes_the_top_distinct_modes(planted_run):
    from gancheck.calibration.fitdata import load_fit_data
    from gancheck.maths import angular_distance, normalise64

    data = load_fit_data(planted_run, modes=3)
    report = json.loads((planted_run / "report.json").read_text())
    assert [m["sample_index"] for m in data.modes] == [m["sample_index"] for m in report["modes"][:3]]
    d = angular_distance(normalise64(data.mode_vectors) @ normalise64(data.mode_vectors).T)
    assert np.all(d[~np.eye(3, dtype=bool)] > data.r0)
    assert data.mode_acceptance[0] < 0.01  # the planted mode
    assert load_fit_data(planted_run).modes[0]["sample_index"] == report["worst_mode"]["sample_index"]


def test_sample_writes_a_png_grid_through_the_calibrator(planted15, calibrations, tmp_path):
    from PIL import Image

    _, path, _ = calibrations("is")
    assert gancheck.sample(str(planted15), calibrator=path, n=64, out=tmp_path / "grid.png", seed=1) == tmp_path / "grid.png"
    img = np.asarray(Image.open(tmp_path / "grid.png"))
    assert img.shape == (8 * 34 - 2, 8 * 34 - 2, 3)
    gancheck.sample(str(planted15), n=64, out=tmp_path / "plain.png", seed=1, columns=16)
    assert np.asarray(Image.open(tmp_path / "plain.png")).shape == (4 * 34 - 2, 16 * 34 - 2, 3)

    def planted_tiles(png, cols):
        a = np.asarray(Image.open(png)).astype(int)
        tiles = [a[r * 34 : r * 34 + 32, c * 34 : c * 34 + 32] for r in range(64 // cols) for c in range(cols)]
        # the planted image is the one tile that repeats
        keys = [t.tobytes() for t in tiles]
        return max(keys.count(k) for k in keys)

    assert planted_tiles(tmp_path / "plain.png", 16) >= 4
    assert planted_tiles(tmp_path / "grid.png", 8) <= 2


def test_calibrate_exits_one_when_the_dense_share_does_not_drop(tmp_path):
    model = build_planted_generator(tmp_path / "none.onnx", fraction=1e-9)  # nothing planted
    gancheck.audit(str(model), out=tmp_path / "run", n=3000, anchors=100)
    # at r0 = 0.01 no sample lies near the "worst" mode: there is no dense share to lower
    proc = run_cli("calibrate", tmp_path / "run", "--method", "gmm", "--region", "cells", "--r0", "0.01", "--out", tmp_path / "c.safetensors", "--quiet")
    assert proc.returncode == 1, proc.stderr
    assert "did not drop" in proc.stderr and "what would help" in proc.stderr
    assert (tmp_path / "run" / "calibration-gmm" / "calibration.json").is_file()


def test_calibrate_refuses_bad_input_in_one_line(planted_run, tmp_path):
    def one_line(proc, *words):
        assert proc.returncode == 2, (proc.returncode, proc.stderr)
        lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        for w in words:
            assert w in lines[0], lines[0]

    one_line(run_cli("calibrate", tmp_path / "nowhere"), "not a gancheck run directory")
    one_line(run_cli("calibrate", planted_run, "--method", "magic", "--out", tmp_path / "x"), "--method", "gmm")
    one_line(run_cli("calibrate", planted_run, "--r0", "1.5", "--out", tmp_path / "x"), "--r0")
    (tmp_path / "exists.safetensors").write_bytes(b"x")
    one_line(run_cli("calibrate", planted_run, "--out", tmp_path / "exists.safetensors"), "already exists", "--overwrite")


@pytest.mark.parametrize("kind", ["normal", "uniform", "truncnormal"])
def test_calibrated_stream_draws_each_prior_kind_from_its_own_law(kind):
    """With a constant acceptance the calibrated stream is the prior itself, for every prior kind."""
    from scipy import stats

    from gancheck.calibrators.sampling import CalibratedSampler

    prior = LatentPrior((4, 1, 1), kind, 1.5)
    sampler = CalibratedSampler(prior, lambda z: np.full(len(z), 0.5))
    z = sampler.sample(2, np.arange(8000))
    assert z.shape == (8000, 4, 1, 1) and z.dtype == np.float32
    law = {"normal": stats.norm(), "uniform": stats.uniform(-1.5, 3.0), "truncnormal": stats.truncnorm(-1.5, 1.5)}[kind]
    flat = z.reshape(8000, 4).astype(np.float64)
    for j in range(4):
        assert stats.kstest(flat[:, j], law.cdf).pvalue > 1e-3
    assert sampler.acceptance_rate == pytest.approx(2.0, rel=0.05)
    if kind != "normal":
        assert np.abs(flat).max() <= 1.5


def test_a_drop_counts_only_beyond_sampling_noise():
    from gancheck.calibration.proof import DROP_Z, share_drop_z

    assert share_drop_z(0.15, 20_000, 0.05, 20_000) > 30
    assert share_drop_z(0.026, 3000, 0.023, 3000) < DROP_Z  # within noise at this size
    assert share_drop_z(0.0, 1000, 0.0, 1000) == 0.0
    assert share_drop_z(0.02, 1000, 0.03, 1000) < 0


def test_the_weighted_plain_draw_estimate_matches_float64_brute_force():
    from gancheck.calibration.proof import weighted_excess

    rng = np.random.default_rng(3)
    near = rng.random((4000, 3)) < np.array([0.05, 0.03, 0.02])
    keep = np.where(near.any(axis=1), rng.uniform(0.05, 0.3, 4000), rng.uniform(0.8, 1.0, 4000))
    floor = 0.004
    got = weighted_excess(near, keep, floor, resamples=500)
    after = [sum(k for k, x in zip(keep, near[:, m]) if x) / sum(keep) for m in range(3)]
    before = near.mean(axis=0).sum()
    assert np.allclose(got["after_per_mode"], after, rtol=1e-12) and got["after"] == pytest.approx(sum(after), rel=1e-12)
    assert got["excess_removed"] == pytest.approx((before - sum(after)) / (before - 3 * floor), rel=1e-12)
    assert got["low"] < got["excess_removed"] < got["high"] and got["high"] - got["low"] < 0.2
    # keep 0 or 1: the share among the kept samples; keep 1 everywhere: nothing removed
    hard = (rng.random(4000) < 0.5).astype(float)
    assert weighted_excess(near, hard, floor, 100)["after"] == pytest.approx(near[hard == 1].mean(axis=0).sum(), rel=1e-12)
    assert weighted_excess(near, np.ones(4000), floor, 100)["excess_removed"] == pytest.approx(0.0, abs=1e-12)
