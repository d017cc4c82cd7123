"""`calibrate --method cascade`: a latent screen in front of rejection in descriptor space. Its two
ends are the latent method (describe nothing) and rejection (describe everything); on a planted
collapse that a latent cut finds exactly, it removes the excess while describing the share it was
given; its price list and its deployment sampler agree with gancheck's own decisions."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import gancheck
from conftest import ROOT, audited_run_in_process, one_line_error, run_cli
from gancheck.calibrators import load_calibrator
from gancheck.calibrators.cascade import cascade_keep, describe_thresholds, price_point
from gancheck.calibrators.fileformat import read_calibrator, write_calibrator
from gancheck.sources.planted import build_planted_generator, in_planted_region
from gancheck.sources.latents import LatentPrior

FRACTION = 0.1
SEED = 5
N = 6000
RUN_OPTIONS = dict(n=N, anchors=150, seed=SEED, embedder_opts=["size=8"])
BUDGET = 1500


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return build_planted_generator(tmp_path_factory.mktemp("gen") / "planted10.onnx", fraction=FRACTION)


@pytest.fixture(scope="module")
def run(planted, tmp_path_factory):
    return audited_run_in_process(planted, tmp_path_factory.mktemp("run") / "run", **RUN_OPTIONS)


@pytest.fixture(scope="module")
def fitted(run, tmp_path_factory):
    """Calibrator files of is, rejection and cascade at shares 1 and 0.2, fitted on the same data
    and budget (no proofs): method -> path."""
    from gancheck.calibration.budget import spend_budget
    from gancheck.calibration.build import build_calibrator
    from gancheck.calibration.fitdata import load_fit_data

    d = tmp_path_factory.mktemp("fitted")
    data = load_fit_data(run)
    spend_budget(data, BUDGET)
    paths = {}
    for name, method, options in (("is", "is", {}), ("rejection", "rejection", {}), ("cascade-1", "cascade", {"describe_share": 1.0}),
                                  ("cascade-0.2", "cascade", {"describe_share": 0.2})):
        paths[name] = d / f"{name}.safetensors"
        build_calibrator(data, method, paths[name], **options)
    return data, paths


@pytest.fixture(scope="module")
def proved(run, tmp_path_factory):
    """The cascade calibrated and proved through the command line, describing 20% of candidates."""
    d = tmp_path_factory.mktemp("proved")
    proc = run_cli("calibrate", run, "--method", "cascade", "--describe-share", "0.2", "--budget", BUDGET, "--out", d / "cal.safetensors",
                   "--proof-dir", d / "proof", "--export-onnx", d / "screen.onnx", "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), d


def test_describe_thresholds_hold_back_the_share_asked_for_and_the_ends():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5000, 3)) + np.array([0.0, 1.0, -1.0])
    for share in (0.05, 0.2, 0.5):
        u = describe_thresholds(scores, share)
        assert (scores >= u).any(axis=1).mean() == pytest.approx(share, abs=0.002)
        # every mode holds back the same top share of its own scores
        own = [(scores[:, m] >= u[m]).mean() for m in range(3)]
        assert max(own) - min(own) <= 2 / len(scores)
    assert np.all(describe_thresholds(scores, 0.0) == np.inf) and np.all(describe_thresholds(scores, 1.0) == -np.inf)


def test_cascade_keep_is_the_latent_decision_or_the_image_decision_at_its_ends():
    rng = np.random.default_rng(1)
    scores, p = rng.random((400, 2)), np.array([0.2, 0.5])
    t = np.array([0.7, 0.8])
    image = rng.choice([0.2, 0.5, 1.0], size=400)
    latent = np.where(scores >= t, p, 1.0).min(axis=1)
    keep, doubt = cascade_keep(scores, t, np.full(2, np.inf), p, image)
    assert np.array_equal(keep, latent) and not doubt.any()
    keep, doubt = cascade_keep(scores, t, np.full(2, -np.inf), p, image)
    assert np.array_equal(keep, image) and doubt.all()


def test_price_point_matches_float64_brute_force():
    rng = np.random.default_rng(2)
    near = rng.random((300, 2)) < 0.2
    keep, doubt = rng.random(300), rng.random(300) < 0.3
    floor = 0.01
    got = price_point(keep, doubt, near, floor)
    before = sum(near[i].sum() for i in range(300)) / 300
    after = sum(keep[i] * near[i].sum() for i in range(300)) / sum(keep)
    assert got["excess_removed"] == pytest.approx((before - after) / (before - 2 * floor), rel=1e-12)
    assert got["draws_per_kept_sample"] == pytest.approx(300 / keep.sum(), rel=1e-12)
    assert got["descriptor_calls_per_kept_sample"] == pytest.approx(doubt.sum() / keep.sum(), rel=1e-12)


def fresh_latents(k=2000):
    return LatentPrior((32,)).sample(SEED + 99, np.arange(k)).reshape(k, -1).astype(np.float64)


def test_describing_nothing_is_the_latent_method_and_everything_is_rejection(planted, fitted):
    """The cascade's screen is is's own fit: with describe thresholds at +inf its decisions are is's;
    at share 1 every candidate is described and its decisions are rejection's, on real images."""
    from gancheck.inputs import calibrated_generator

    data, paths = fitted
    z = fresh_latents()
    is_cal, cascade = load_calibrator(paths["is"]), load_calibrator(paths["cascade-1"])
    keep, scores, doubt = cascade.screen(z)
    assert doubt.all()
    assert np.array_equal(keep, is_cal.acceptance(z))  # the latent part is is's decision
    latent_only, _ = cascade_keep(scores, cascade.t["region_thresholds"], np.full(scores.shape[1], np.inf), cascade.mode_acceptance,
                                  np.zeros(len(z)))
    assert np.array_equal(latent_only, is_cal.acceptance(z))
    source = calibrated_generator(str(planted), None, seed=SEED)
    on_images = cascade.bind(source).acceptance(z[:300])
    rejection = load_calibrator(paths["rejection"]).bind(source).acceptance(z[:300])
    assert np.array_equal(on_images, rejection)


def test_a_share_describes_that_share_of_fresh_candidates(planted, fitted):
    data, paths = fitted
    cascade = load_calibrator(paths["cascade-0.2"])
    z = fresh_latents(4000)
    assert cascade.descriptor_calls_per_candidate(z) == pytest.approx(0.2, abs=0.03)
    # the planted region (10% of latents) is what the screen doubts first: all of it is described
    inside = in_planted_region(z, FRACTION)
    assert cascade.screen(z)[2][inside].mean() > 0.97


def test_the_planted_excess_is_removed_describing_a_fifth_of_the_candidates(planted, proved):
    result, d = proved
    from gancheck.inputs import calibrated_generator

    idx = np.arange(3000)
    before = float(in_planted_region(LatentPrior((32,)).sample(SEED, idx).reshape(len(idx), -1), FRACTION).mean())
    after = float(in_planted_region(calibrated_generator(str(planted), d / "cal.safetensors", seed=SEED).latents(idx).reshape(len(idx), -1),
                                    FRACTION).mean())
    assert before > 0.08 and after < 0.3 * before, (before, after)
    assert result["method"] == "cascade" and result["improved"] is True
    cost = result["cost"]
    assert cost["describe_share"] == 0.2 and cost["descriptor_calls_per_candidate"] == pytest.approx(0.2, abs=0.03)
    assert cost["descriptor_calls_per_kept_sample"] == pytest.approx(cost["descriptor_calls_per_candidate"] * cost["draws_per_kept_sample"])
    assert result["total"]["excess_removed"] > 0.8
    assert result["frechet"]["ratio"] < 1.5
    # the price list, measured on the fresh plain draw: its share-1 end is rejection, its 0 end the latent method
    prices = {p["describe_share"]: p for p in result["price_list"]}
    assert prices[1.0]["descriptor_calls_per_candidate"] == 1.0 and prices[0.0]["descriptor_calls_per_candidate"] == 0.0
    assert prices[0.2]["low"] <= prices[0.2]["excess_removed"] <= prices[0.2]["high"]
    assert prices[0.2]["excess_removed"] == pytest.approx(result["paired"]["excess_removed"], abs=1e-12)
    # the re-audit agrees with the predicted point within its interval (and some sampling noise of its own)
    assert prices[0.2]["low"] - 0.1 <= result["total"]["excess_removed"] <= prices[0.2]["high"] + 0.1
    assert "price-list" in (d / "proof" / "report.html").read_text()


def test_the_ten_line_deployment_sampler_decides_as_gancheck_does(planted, proved):
    """examples/cascade_sampler.py with onnxruntime, the exported screen, the generator and the
    run's embedder: the same keep decisions as the calibrator bound to the generator."""
    import onnxruntime as ort

    from embedders import load_embedder
    from gancheck.inputs import calibrated_generator

    spec = importlib.util.spec_from_file_location("cascade_sampler", ROOT / "examples" / "cascade_sampler.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result, d = proved
    assert result["exported_onnx"] == str(d / "screen.onnx") and result["exported_embedder_onnx"] is None
    source = calibrated_generator(str(planted), None, seed=SEED)
    cal = load_calibrator(d / "cal.safetensors")
    embedder = load_embedder("pixel", size=8)
    screen = ort.InferenceSession(str(d / "screen.onnx"), providers=["CPUExecutionProvider"])
    z = fresh_latents(600).astype(np.float32)
    u = np.random.default_rng(3).random(len(z))
    generate = lambda x: source.format.convert(source.generate(x))  # noqa: E731  (the generator's images as the audit saw them)
    mine = example.cascade_keep(z, u, screen, generate, embedder.embed, *example.cascade_constants(d / "cal.safetensors"))
    assert np.array_equal(mine, u < cal.bind(source).acceptance(z))
    assert 0 < (~mine).sum()


def test_bad_cascade_options_are_refused_in_one_line_before_anything_is_written(run, tmp_path):
    out = tmp_path / "cal.safetensors"
    for args, words in ((["--describe-share", "0"], ["--describe-share", "(0, 1]"]), (["--describe-share", "1.5"], ["--describe-share"]),
                        (["--describe-share", "0.2", "--max-descriptor-calls", "0.3"], ["not both"]),
                        (["--max-descriptor-calls", "-1"], ["--max-descriptor-calls"]), (["--screen", "drs"], ["--screen"]),
                        (["--max-descriptor-calls", "0.001", "--budget", str(BUDGET)], ["--max-descriptor-calls", "none of the candidates"])):
        one_line_error(run_cli("calibrate", run, "--method", "cascade", *args, "--out", out, "--proof-dir", tmp_path / "proof", "--quiet"), *words)
        assert not out.exists() and not (tmp_path / "proof").exists()
    one_line_error(run_cli("calibrate", run, "--method", "is", "--describe-share", "0.2", "--out", out), "--describe-share", "does not apply")


def rewritten(path, tmp_path, change):
    header, tensors = read_calibrator(path, {"cascade": ()})
    change(header)
    out = tmp_path / "changed.safetensors"
    write_calibrator(out, header, tensors)
    return out


def test_a_cascade_without_its_embedder_or_with_another_is_refused(planted, fitted, tmp_path):
    _, paths = fitted
    other = rewritten(paths["cascade-0.2"], tmp_path, lambda h: h["embedder"]["describe"].update(size=16))
    one_line_error(run_cli("audit", planted, "--calibrator", other, "--n", "200", "--anchors", "20", "--embedder", "pixel", "--out", tmp_path / "a"),
             "size", "fitted with")
    missing = rewritten(paths["cascade-0.2"], tmp_path, lambda h: h["embedder"].update(spec="nosuchembedder"))
    one_line_error(run_cli("audit", planted, "--calibrator", missing, "--n", "200", "--anchors", "20", "--embedder", "pixel", "--out", tmp_path / "b"),
             "needs the embedder", "nosuchembedder")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
