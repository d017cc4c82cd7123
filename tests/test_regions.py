"""Learned latent regions (gancheck.calibrators.regions) on a planted NON-linear collapse: every
latent inside a disk of two latent coordinates, ``z0^2 + z1^2 < rho^2``, yields the same image. A
linear cut cannot isolate a disk centred on the prior's mean (any half-space holding most of the
disk holds about half of the prior), so the model families must be selected by held-out
performance, not assumed; the descriptor budget, the ONNX export and bad input are checked here too."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import average_precision_score

from conftest import audited_run, run_cli
from gancheck.formatting import format_share
from gancheck.sources.latents import LatentPrior

DISK_SHARE = 0.12
RHO2 = -2.0 * np.log(1.0 - DISK_SHARE)  # P(z0^2 + z1^2 < rho^2) = 1 - exp(-rho^2 / 2) for standard normal z
SEED = 5
N = 4000
RUN_ARGS = ["--n", str(N), "--anchors", "200", "--seed", str(SEED), "--embedder-opt", "size=8", "--quiet"]


def in_disk(z):
    z = np.asarray(z).reshape(len(z), -1)
    return z[:, 0] ** 2 + z[:, 1] ** 2 < RHO2


def build_disk_generator(path):
    """The planted generator (gancheck.sources.planted) with its collapse switch ``z0 > t`` replaced
    by the disk ``z0^2 + z1^2 < rho^2``; the texture ignores z0 and z1."""
    import onnx
    from onnx import helper, numpy_helper

    from gancheck.sources.planted import build_planted_generator

    build_planted_generator(path, fraction=DISK_SHARE)
    model = onnx.load(str(path))
    g = model.graph
    for init in g.initializer:
        if init.name == "mix":
            mix = numpy_helper.to_array(init).copy()
            mix[:2] = 0.0
            init.CopyFrom(numpy_helper.from_array(mix, "mix"))
    g.initializer.extend([numpy_helper.from_array(np.array([2], np.int64), "two"), numpy_helper.from_array(np.array([np.float32(RHO2)]), "rho2")])
    nodes = [n for n in g.node if n.output[0] not in ("z0", "collapsed")]
    new = [helper.make_node("Slice", ["z", "zero", "two", "one"], ["z01"]), helper.make_node("Mul", ["z01", "z01"], ["sq"]),
           helper.make_node("ReduceSum", ["sq", "one"], ["r2"], keepdims=1), helper.make_node("Less", ["r2", "rho2"], ["collapsed"])]
    del g.node[:]
    g.node.extend(new + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def disk_model(tmp_path_factory):
    return build_disk_generator(tmp_path_factory.mktemp("disk") / "disk.onnx")


@pytest.fixture(scope="module")
def disk_run(disk_model, tmp_path_factory):
    return audited_run(disk_model, tmp_path_factory.mktemp("diskrun") / "run", *RUN_ARGS)


@pytest.fixture(scope="module")
def fitted(disk_run, tmp_path_factory):
    """calibrate runs on the disk generator, by (method, region): (calibration.json, file, folder)."""
    done = {}

    def get(method, region=None):
        key = (method, region)
        if key not in done:
            d = tmp_path_factory.mktemp(f"fit-{method}-{region}")
            args = ["--region", region] if region else []
            proc = run_cli("calibrate", disk_run, "--method", method, *args, "--budget", "2000", "--out", d / "cal.safetensors",
                           "--proof-dir", d / "proof", "--export-onnx", d / "sampler.onnx", "--json", "--quiet")
            assert proc.returncode in (0, 1), proc.stderr
            done[key] = (json.loads(proc.stdout), d / "cal.safetensors", d, proc.returncode)
        return done[key]

    return get


def test_the_generator_collapses_exactly_on_the_disk(disk_model):
    import onnxruntime as ort

    z = LatentPrior((32,)).sample(0, np.arange(2000)).astype(np.float32)
    images = ort.InferenceSession(str(disk_model)).run(None, {"z": z})[0].reshape(2000, -1)
    planted = images[in_disk(z)]
    assert np.allclose(planted, planted[0]) and abs(in_disk(z).mean() - DISK_SHARE) < 0.03
    assert not np.isclose(images[~in_disk(z)], planted[0]).all(axis=1).any()


def test_a_linear_cut_fails_on_the_disk_and_the_selected_family_succeeds():
    """On latents labelled by the disk: logistic regression (a linear cut) has a held-out average
    precision near the base rate, the selected family above 0.9; each family's ONNX graph (what the
    calibrator file stores) reproduces scikit-learn's probabilities on 10,000 latents."""
    import onnxruntime as ort

    from gancheck.calibrators.regions import (ENSEMBLE, FAMILIES, Ensemble, fit_family, mean_average_precision, mode_probabilities,
                                              region_onnx, sklearn_onnx)

    prior = LatentPrior((32,))
    z_train, z_test = prior.sample(1, np.arange(4000)), prior.sample(2, np.arange(10_000))
    y_train, near_test = in_disk(z_train).astype(int), in_disk(z_test)[:, None]
    ap = {}
    for family in FAMILIES:
        model = fit_family(family, z_train, y_train, seed=0)
        proba = mode_probabilities(model, z_test, 1)
        ap[family] = mean_average_precision(proba, near_test)
        graph = ort.InferenceSession(sklearn_onnx(model, 32).SerializeToString())
        onnx_proba = graph.run(["probabilities"], {"z": z_test.astype(np.float32)})[0][:, 1]
        assert np.abs(onnx_proba - proba[:, 0]).max() < 1e-4, family
    assert ap["logistic"] < 0.3, ap  # the base rate is 0.12
    assert max(ap.values()) > 0.9, ap
    # the ensemble candidate (product of logistic, MLP and boosting): one ONNX graph, same scores
    ensemble = Ensemble([fit_family(f, z_train, y_train, seed=0) for f in ENSEMBLE])
    proba = mode_probabilities(ensemble, z_test, 1)
    graph = ort.InferenceSession(region_onnx(ensemble, 32).SerializeToString())
    assert np.abs(graph.run(["probabilities"], {"z": z_test.astype(np.float32)})[0][:, 1] - proba[:, 0]).max() < 1e-3  # float32 logs
    assert mean_average_precision(proba, near_test) > 0.8


def test_is_selects_a_non_linear_region_and_removes_the_planted_excess(disk_model, fitted):
    from gancheck.inputs import calibrated_generator

    result, path, _, rc = fitted("is")
    assert rc == 0 and result["improved"] is True
    assert result["params"]["region"] != "logistic"
    aps = result["params"]["validation_average_precision"]
    assert aps["logistic"] < 0.5 and aps[result["params"]["region"]] > 0.9
    (region,) = result["region"]
    assert region["precision"] > 0.85 and region["recall"] > 0.85 and 0 <= region["brier"] < 0.1
    idx = np.arange(N)
    before = in_disk(LatentPrior((32,)).sample(SEED, idx)).mean()
    after = in_disk(calibrated_generator(str(disk_model), path, seed=SEED).latents(idx)).mean()
    assert after < 0.2 * before, (before, after)
    (mode,) = result["modes"]
    assert mode["excess_removed"] > 0.8 and mode["before"]["low"] <= mode["before"]["share"] <= mode["before"]["high"]
    assert result["frechet"]["ratio"] < 2.0
    assert result["cost"]["draws_per_kept_sample"] <= 1.5 + 0.05
    assert result["cost"]["embedder_calls"]["budget"] == 2000


def test_gmm_mixtures_localise_the_disk_instead_of_falling_back_to_the_prior(fitted):
    result, _, _, rc = fitted("gmm")
    assert rc == 0 and result["params"]["kind"] == "mixture"
    (mode,) = result["modes"]
    assert mode["excess_removed"] > 0.6, mode
    assert result["frechet"]["ratio"] < 2.0 and result["cost"]["draws_per_kept_sample"] <= 1.55


def test_a_linear_region_cannot_remove_most_of_the_disk(fitted):
    result, _, _, _ = fitted("is", "logistic")
    (mode,) = result["modes"]
    assert mode["excess_removed"] is None or mode["excess_removed"] < 0.5, mode


@pytest.mark.parametrize("method", ["is", "gmm"])
def test_exported_onnx_sampler_matches_the_calibrator_file_on_10000_latents(method, fitted):
    import onnxruntime as ort

    from gancheck.calibrators import load_calibrator

    _, path, folder, _ = fitted(method)
    z = LatentPrior((32,)).sample(99, np.arange(10_000))
    session = ort.InferenceSession(str(folder / "sampler.onnx"))
    (keep,) = session.run(["keep_probability"], {"z": z.astype(np.float32)})
    cal = load_calibrator(path)
    expected = cal.acceptance(z.astype(np.float32).astype(np.float64))
    assert keep.shape == (10_000,) and set(np.unique(expected)) <= set(np.unique(np.append(cal.mode_acceptance, 1.0)))
    assert np.array_equal(keep, expected)
    assert 0.05 < (keep < 1).mean() < 0.3  # it does thin: about the disk's share


def test_budget_latents_depend_only_on_seed_and_index_and_a_resumed_budget_is_not_paid_twice(disk_run, fitted):
    from gancheck.calibration.budget import LOCAL_OFFSET, BudgetSampler, spend_budget
    from gancheck.calibration.fitdata import load_fit_data

    result, _, _, _ = fitted("is")
    store = next(disk_run.glob("calibration-budget-*"))
    chunks = sorted(store.glob("*.parquet"))
    assert result["budget"]["described"] == 2000 and len(chunks) >= 4
    data = load_fit_data(disk_run)
    sampler = BudgetSampler(data.prior, [data.latents[data.near[:, 0]][:50]], (32,))
    idx = LOCAL_OFFSET + np.arange(300)
    whole = sampler.sample(7, idx)
    assert np.array_equal(np.concatenate([sampler.sample(7, idx[i : i + 7]) for i in range(0, 300, 7)]), whole)
    assert not np.array_equal(sampler.sample(8, idx), whole)
    # both halves of the budget are spent near the mode: far more of them land in the disk than the prior's 12%
    for stage in ("local", "guided"):
        stored = pq.read_table(next(c for c in chunks if c.name.startswith(stage))).to_pydict()
        assert in_disk(np.asarray(stored["latent"])).mean() > 0.3, stage
    # a killed calibrate: one chunk lost; spending again describes only that chunk, to the same bytes
    lost = chunks[-1]
    before = pq.read_table(lost).to_pydict()
    mtimes = {c: c.stat().st_mtime_ns for c in chunks if c != lost}
    lost.unlink()
    spend_budget(data, 2000)
    assert all(c.stat().st_mtime_ns == t for c, t in mtimes.items())
    again = pq.read_table(lost).to_pydict()
    assert again["sample_index"] == before["sample_index"] and np.array_equal(np.asarray(again["embedding"]), np.asarray(before["embedding"]))


def test_several_modes_report_each_share_before_and_after(disk_run, tmp_path):
    proc = run_cli("calibrate", disk_run, "--method", "gmm", "--modes", "3", "--budget", "600", "--out", tmp_path / "c.safetensors",
                   "--proof-dir", tmp_path / "proof", "--json", "--quiet")
    assert proc.returncode in (0, 1), proc.stderr
    result = json.loads(proc.stdout)
    assert len(result["modes"]) == 3 and len(result["region"]) == 3
    for m in result["modes"]:
        assert m["before"]["low"] <= m["before"]["share"] <= m["before"]["high"] and m["after"]["of"] == N
    assert result["total"]["before"] == pytest.approx(sum(m["before"]["share"] for m in result["modes"]))
    assert result["modes"][0]["excess_removed"] > 0.6
    # the report leads with the modes' summed share, not the first mode's
    total = f"the 3 targeted modes together fell from {format_share(result['total']['before'])} to {format_share(result['total']['after'])}"
    page = (tmp_path / "proof" / "report.html").read_text()
    assert total in page and f"gives {format_share(result['paired']['excess_removed'])}" in page


def test_bad_input_is_refused_in_one_line_and_nothing_is_written(disk_run, tmp_path):
    def refused(*args, words):
        proc = run_cli("calibrate", disk_run, *args, "--out", tmp_path / "x.safetensors", "--proof-dir", tmp_path / "p")
        assert proc.returncode == 2, proc.stderr
        # one error line (a warning about the fit's outlook may precede it)
        lines = [line for line in proc.stderr.strip().splitlines() if "error" in line]
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert all(w in lines[0] for w in words), lines[0]
        assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "p").exists()

    refused("--budget", "0", words=["--budget", "at least 1"])
    refused("--modes", "999", words=["--modes"])
    refused("--method", "rejection", "--export-onnx", str(tmp_path / "s.onnx"), words=["--export-onnx"])
    refused("--method", "is", "--region", "forest", words=["--region", "knn"])


def fit_set(near_train: np.ndarray, extra_near: np.ndarray, extra_from_prior: np.ndarray, dim: int = 4):
    """A stand-in FitData: run samples 0..n-1 (index mod 5 < 3 train), and budget samples."""
    from types import SimpleNamespace

    n = len(near_train)
    rng = np.random.default_rng(0)
    return SimpleNamespace(indices=np.arange(n), latents=rng.normal(size=(n, dim)).astype(np.float32), near=near_train[:, None],
                           extra_latents=rng.normal(size=(len(extra_near), dim)).astype(np.float32), extra_near=extra_near[:, None],
                           extra_from_prior=extra_from_prior, modes=[{"sample_index": 17}])


def test_gmm_fits_its_densities_on_prior_draws_only_and_the_budget_perturbations_are_left_out():
    from gancheck.calibrators.regions import labelled_sets

    data = fit_set(np.arange(50) % 7 == 0, np.arange(20) % 2 == 0, np.arange(20) >= 12)
    x_all, near_all, _, _ = labelled_sets(data)
    x, near, val, test = labelled_sets(data, prior_draws_only=True)
    train = np.arange(50) % 5 < 3
    assert len(x_all) == train.sum() + 20 and len(x) == train.sum() + 8
    assert np.array_equal(x, np.concatenate([data.latents[train], data.extra_latents[12:]]))
    assert np.array_equal(near[:, 0], np.concatenate([data.near[train, 0], data.extra_near[12:, 0]]))
    assert val.sum() == 10 and test.sum() == 10


def test_gmm_fits_a_mode_with_few_prior_draws_on_its_perturbations_too_and_refuses_one_with_none():
    from gancheck.calibrators.gmm import mixture_training_sets
    from gancheck.errors import GancheckError

    # 12 prior draws in the mode (run training split 2, guided 10): those alone; perturbations left out
    near = np.zeros(50, bool)
    near[[0, 5]] = True
    data = fit_set(near, np.ones(40, bool), np.arange(40) >= 30)
    (points,), off = mixture_training_sets(data)
    assert len(points) == 12 and np.array_equal(points[2:], data.extra_latents[30:])
    assert len(off) == 30 - 2
    # 2 prior draws only: the mode's mixture uses its 40 perturbations too
    data = fit_set(near, np.ones(40, bool), np.zeros(40, bool))
    (points,), _ = mixture_training_sets(data)
    assert len(points) == 42
    # no training latent in the mode at all: one line that names the fix
    data = fit_set(np.zeros(50, bool), np.zeros(40, bool), np.zeros(40, bool))
    with pytest.raises(GancheckError, match="fewer than 2 training latents.*--budget"):
        mixture_training_sets(data)


def test_overlapping_modes_each_get_their_own_binary_model_and_one_onnx_graph():
    """Two overlapping disks: a joint label gives the shared samples to the first mode only, so the
    second mode's joint probability misses them; one binary model per mode does not. The per-mode
    graph (an ensemble for one mode, a family for the other) reproduces scikit-learn's scores."""
    import onnxruntime as ort

    from gancheck.calibrators.regions import ENSEMBLE, Ensemble, PerMode, fit_family, mode_probabilities, region_onnx

    def near(z):
        z = np.asarray(z).reshape(len(z), -1)
        return np.stack([z[:, 0] ** 2 + z[:, 1] ** 2 < RHO2, (z[:, 0] - 0.4) ** 2 + z[:, 1] ** 2 < RHO2], axis=1)

    prior = LatentPrior((32,))
    z_train, z_test = prior.sample(1, np.arange(4000)), prior.sample(2, np.arange(10_000))
    y_train, y_test = near(z_train), near(z_test)
    assert (y_test.all(axis=1)).mean() > 0.05  # the disks share samples
    joint = fit_family("boosting", z_train, np.where(y_train.any(axis=1), 1 + np.argmax(y_train, axis=1), 0), seed=0)  # first mode wins
    per_mode = PerMode([fit_family("boosting", z_train, y_train[:, m].astype(int), seed=0) for m in range(2)])
    ap = {name: [average_precision_score(y_test[:, m], mode_probabilities(model, z_test, 2)[:, m]) for m in range(2)]
          for name, model in (("joint", joint), ("per mode", per_mode))}
    assert ap["per mode"][1] > ap["joint"][1] + 0.1, ap
    mixed = PerMode([Ensemble([fit_family(f, z_train, y_train[:, 0].astype(int), seed=0) for f in ENSEMBLE]), per_mode.models[1]])
    graph = ort.InferenceSession(region_onnx(mixed, 32).SerializeToString())
    (scores,) = graph.run(["scores"], {"z": z_test.astype(np.float32)})
    assert scores.shape == (10_000, 2) and np.abs(scores - mode_probabilities(mixed, z_test, 2)).max() < 1e-3
