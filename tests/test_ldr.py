"""`gancheck ldr` (LDRM, LDRV, discrepancy score, sampling weights) and `calibrate --method drs`, on
the digits test bed: the discriminator checkpoints saw every real digit, the generator never makes 0."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import gancheck  # noqa: E402
from conftest import run_cli  # noqa: E402
from digits_testbed import build_testbed  # noqa: E402

from gancheck.analysis.ldr import ldr_statistics, sampling_weights  # noqa: E402


@pytest.fixture(scope="session")
def testbed(tmp_path_factory):
    return build_testbed(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def audited(testbed, tmp_path_factory):
    """An audit run of the test bed's generator (the run drs calibrates)."""
    run = tmp_path_factory.mktemp("drs") / "run"
    gancheck.audit(str(testbed["generator"]), n=2000, anchors=200, embedder_opts=["size=8"], out=run)
    return run


def test_ldrm_ranks_the_dropped_class_highest(testbed, tmp_path):
    import pyarrow.parquet as pq
    from sklearn.metrics import roc_auc_score

    out, weights = tmp_path / "ldr.parquet", tmp_path / "weights.csv"
    summary = gancheck.ldr(list(testbed["discriminators"]), testbed["reference"], out=out, weights_out=weights, top=20)
    assert summary["checkpoints"] == len(testbed["discriminators"]) >= 2 and summary["images"] == 1797
    assert sum(t["file"].startswith("0_") for t in summary["top"]) >= 18
    table = pq.read_table(out).to_pydict()
    is_zero = np.array([f.startswith("0_") for f in table["file"]])
    assert roc_auc_score(is_zero, table["ldrm"]) > 0.95
    assert roc_auc_score(is_zero, table["score"]) > 0.95
    ldr = np.array([table[f"ldr_{t + 1:02d}"] for t in range(summary["checkpoints"])])
    assert np.allclose(table["ldrm"], ldr.mean(0)) and np.allclose(table["ldrv"], ldr.var(0, ddof=1))
    import pyarrow.csv as pcsv

    w = pcsv.read_csv(weights).to_pydict()
    assert w["file"] == table["file"] and sum(w["weight"]) == pytest.approx(1.0)
    top = int(np.argmax(table["score"]))
    assert int(np.argmax(w["weight"])) == top


def test_discrepancy_score_formula_and_weights():
    ldr = np.array([[1.0, -2.0, 0.5], [3.0, -2.0, 0.5], [2.0, -1.0, 2.0]])
    s = ldr_statistics(ldr, k=2.0)
    assert s["ldrm"] == pytest.approx([2.0, -5 / 3, 1.0])
    assert s["ldrv"] == pytest.approx(np.var(ldr, axis=0, ddof=1))
    assert s["score"] == pytest.approx(s["ldrm"] + 2.0 * np.sqrt(s["ldrv"]))
    w, floor = sampling_weights(np.array([4.0, 2.0, -1.0]))
    assert floor == pytest.approx(0.04) and w == pytest.approx(np.array([4.0, 2.0, 0.04]) / 6.04)


def _export(model, path, size=8):
    import torch

    torch.onnx.export(model, torch.zeros(2, 1, size, size), str(path), input_names=["image"], output_names=["out"],
                      dynamic_axes={"image": {0: "b"}, "out": {0: "b"}}, opset_version=17, dynamo=False)
    return path


@pytest.mark.filterwarnings("ignore")
def test_probability_output_gives_the_same_ratio(tmp_path):
    import torch

    from embedders.scorer import ImageScorer
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 1))
    logit = ImageScorer(_export(net, tmp_path / "logit.onnx"))
    prob = ImageScorer(_export(torch.nn.Sequential(net, torch.nn.Sigmoid()), tmp_path / "prob.onnx"))
    reshaped = ImageScorer(_export(torch.nn.Sequential(net, torch.nn.Sigmoid(), torch.nn.Flatten(0)), tmp_path / "flat.onnx"))
    assert (logit.output, prob.output, reshaped.output) == ("logit", "probability", "probability")
    images = np.random.default_rng(0).random((32, 8, 8, 3)).astype(np.float32)
    assert prob.logits(images) == pytest.approx(logit.logits(images), abs=1e-4)
    assert reshaped.logits(images) == pytest.approx(logit.logits(images), abs=1e-4)


@pytest.mark.filterwarnings("ignore")
def test_bad_checkpoints_and_data_are_one_line_errors(testbed, tmp_path):
    import torch

    wide = _export(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 1)), tmp_path / "wide.onnx", size=16)
    out = tmp_path / "ldr.parquet"
    r = run_cli("ldr", "--discriminator", testbed["discriminators"][0], wide, "--data", testbed["reference"], "--out", out)
    assert r.returncode == 2 and "different inputs" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    data = tmp_path / "data"
    data.mkdir()
    for f in sorted(Path(testbed["reference"]).iterdir())[:5]:
        (data / f.name).write_bytes(f.read_bytes())
    (data / "truncated.png").write_bytes(b"\x89PNG\r\n")
    r = run_cli("ldr", "--discriminator", testbed["discriminators"][0], "--data", data, "--out", out)
    assert r.returncode == 2 and "truncated.png" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def _class_histogram(testbed, images):
    from embedders.scorer import ImageScorer

    probs = ImageScorer(testbed["classifier"], what="classifier").scores(images)
    return np.bincount(probs.argmax(1), minlength=10) / len(images)


@pytest.mark.filterwarnings("ignore")
def test_drs_moves_the_class_histogram_toward_the_real_one(testbed, audited):
    import gancheck.api as api

    run = audited
    # result["improved"] may be False (the CLI's exit 1): the dense-mode share is not what drs aims at
    result = gancheck.calibrate(run, method="drs", discriminator=testbed["discriminators"][-1])
    assert result["method"] == "drs" and result["after"]["draws_per_sample"] > 1.0
    assert any("discriminator" in note and "disc_" in note for note in result["notes"]), result["notes"]
    real = np.full(10, 0.1)
    plain = _class_histogram(testbed, api.sample_images(str(testbed["generator"]), n=3000, seed=1))
    calibrated = _class_histogram(testbed, api.sample_images(str(testbed["generator"]), n=3000, seed=1,
                                                             calibrator=run / "calibrator-drs.safetensors"))
    tv_plain, tv_drs = 0.5 * np.abs(plain - real).sum(), 0.5 * np.abs(calibrated - real).sum()
    assert tv_drs < tv_plain - 0.02, (plain, calibrated)
    # coverage audits the calibrated sampler as it draws: its images are the calibrated ones
    cov = api.coverage(str(testbed["generator"]), testbed["reference"], n=2000, seed=1, embedder_options={"size": 8}, bins=10,
                       calibrator=run / "calibrator-drs.safetensors", attributes=f"onnx:{testbed['classifier']}",
                       attribute_names=[str(d) for d in range(10)])
    assert cov["calibrator"].endswith("calibrator-drs.safetensors") and cov["generated_described"] == 2000
    shares = np.array([a["generated"] for a in cov["attributes"]["attributes"]])
    assert 0.5 * np.abs(shares - real).sum() < tv_plain - 0.02


def test_drs_without_a_discriminator_is_a_one_line_error(audited, tmp_path):
    out = tmp_path / "drs.safetensors"
    r = run_cli("calibrate", audited, "--method", "drs", "--out", out, "--proof-dir", tmp_path / "proof", "-q")
    assert r.returncode == 2 and "--discriminator" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "proof").exists()
