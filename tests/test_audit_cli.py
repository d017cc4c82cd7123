"""`gancheck audit` end to end through the CLI on ONNX generators built by the tests."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import PLANTED_FRACTION, run_cli
from gancheck.sources.planted import build_planted_generator, in_planted_region
from gancheck.sources.latents import LatentPrior

SMALL = ["--n", "3000", "--anchors", "300", "--quiet"]


def audit_json(model, out, *extra):
    proc = run_cli("audit", model, "--out", out, "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_planted_collapse_is_found(planted_onnx, tmp_path):
    out = tmp_path / "run"
    report = audit_json(planted_onnx, out, "--n", "2e4", "--anchors", "1000", "--seed", "11")
    worst = report["worst_mode"]
    z = LatentPrior((32,)).sample(11, [worst["sample_index"]])
    assert in_planted_region(z, PLANTED_FRACTION)[0], "the worst-case mode's latent must lie in the planted region"
    assert abs(worst["neighbor_fraction"] - PLANTED_FRACTION) < 0.02
    assert worst["mccs"] > report["mccs"]["mean"] + 3 * report["mccs"]["std"]
    # distinct modes: the planted identity is listed once, first
    planted = [m for m in report["modes"] if in_planted_region(LatentPrior((32,)).sample(11, [m["sample_index"]]), PLANTED_FRACTION)[0]]
    assert len(planted) == 1 and report["modes"][0]["sample_index"] == worst["sample_index"]
    for key in ("n_samples", "n_anchors", "theta", "radius", "mccs_form"):
        assert key in report
    assert report["n_samples"] == 20000 and report["n_anchors"] == 1000 and report["mccs_form"] == "paper"
    # the run directory
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["worst_mode"] == worst
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["generator"]["sha256"]) == 64
    assert manifest["theta"] == report["theta"] and manifest["mccs_form"] == "paper" and manifest["seed"] == 11
    anchors = pq.read_table(out / "anchors.parquet").to_pydict()
    assert len(anchors["mccs"]) == 1000 and max(anchors["neighbors"]) == worst["neighbors"]
    modes = pq.read_table(out / "modes.parquet").to_pydict()
    assert modes["sample_index"][0] == worst["sample_index"]
    nn = pq.read_table(out / "neighbors.parquet").to_pydict()
    worst_nn = [s for a, s in zip(nn["anchor_index"], nn["sample_index"]) if a == worst["sample_index"]]
    assert len(worst_nn) == 80
    assert in_planted_region(LatentPrior((32,)).sample(11, worst_nn), PLANTED_FRACTION).all()


def comparable(report):
    """Everything but run-specific paths."""
    report = dict(report)
    report.pop("generator", None)
    report.pop("config", None)
    return report


def test_report_does_not_depend_on_batch_chunk_size_or_threads(planted_onnx, tmp_path):
    runs = [("256", "4096", "2"), ("1", "4096", "2"), ("7", "333", "1"), ("256", "1000", "1")]
    reports = [audit_json(planted_onnx, tmp_path / f"b{b}c{c}t{t}", *SMALL, "--batch-size", b, "--chunk-size", c, "--threads", t)
               for b, c, t in runs]
    assert reports[0]["modes"][0]["neighbors"] > 50  # a real collapse is being measured
    base = comparable(reports[0])
    for other in map(comparable, reports[1:]):
        # The Vendi score's eigenvalues come from multithreaded LAPACK: equal to ~1e-15, not bitwise.
        diversity = other.pop("diversity")
        assert diversity.keys() == base["diversity"].keys()
        for key, value in base["diversity"].items():
            assert diversity[key] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value)
        assert other == {k: v for k, v in base.items() if k != "diversity"}  # bitwise: every float and index


def test_same_seed_same_report_other_seed_other_samples(planted_onnx, tmp_path):
    a = audit_json(planted_onnx, tmp_path / "a", *SMALL, "--seed", "5")
    b = audit_json(planted_onnx, tmp_path / "b", *SMALL, "--seed", "5")
    c = audit_json(planted_onnx, tmp_path / "c", *SMALL, "--seed", "6")
    assert comparable(a) == comparable(b)
    assert a["mccs"]["mean"] != c["mccs"]["mean"]
    za, zc = LatentPrior((32,)).sample(5, np.arange(10)), LatentPrior((32,)).sample(6, np.arange(10))
    assert not np.allclose(za, zc)


def test_gates_exit_one_with_message_and_zero_when_they_hold(planted_onnx, tmp_path):
    fail = run_cli("audit", planted_onnx, "--out", tmp_path / "f", *SMALL, "--fail-if", "worst_mode.neighbor_fraction>0.01", "--fail-if", "mccs.mean>0.99")
    assert fail.returncode == 1, fail.stderr
    assert "worst_mode.neighbor_fraction" in fail.stderr and "FAILED" in fail.stderr and "margin +" in fail.stderr
    assert "mccs.mean" not in fail.stderr.replace("worst_mode", "")  # only the crossed gate is reported when quiet
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    assert [g["failed"] for g in report["gates"]] == [True, False]
    ok = run_cli("audit", planted_onnx, "--out", tmp_path / "o", *SMALL, "--fail-if", "mccs.mean>0.99")
    assert ok.returncode == 0, ok.stderr


def test_refuses_to_overwrite_a_run_unless_asked(planted_onnx, tmp_path):
    assert run_cli("audit", planted_onnx, "--out", tmp_path / "r", *SMALL).returncode == 0
    before = (tmp_path / "r" / "report.json").read_text()
    again = run_cli("audit", planted_onnx, "--out", tmp_path / "r", *SMALL, "--seed", "3")
    assert again.returncode == 2 and "already holds a run" in again.stderr
    assert (tmp_path / "r" / "report.json").read_text() == before
    assert run_cli("audit", planted_onnx, "--out", tmp_path / "r", *SMALL, "--overwrite").returncode == 0


def one_line_error(proc, *words):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_missing_file(tmp_path):
    one_line_error(run_cli("audit", tmp_path / "nope.onnx", "--out", tmp_path / "r"), "not found", "nope.onnx")


def test_file_that_is_not_onnx(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_text("this is not a model")
    one_line_error(run_cli("audit", bad, "--out", tmp_path / "r"), "not a loadable ONNX", "model.onnx")


def test_onnx_model_with_wrong_input_rank(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["z"], ["y"])], "rank1",
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "rank1.onnx")
    one_line_error(run_cli("audit", tmp_path / "rank1.onnx", "--out", tmp_path / "r"), "latent input", "shape")


def test_nan_output(tmp_path):
    model = build_planted_generator(tmp_path / "nan.onnx", nan=True)
    one_line_error(run_cli("audit", model, "--out", tmp_path / "r", *SMALL), "NaN")


def test_callable_that_does_not_import(tmp_path):
    one_line_error(run_cli("audit", "no_such_pkg.gen:make", "--out", tmp_path / "r"), "cannot import", "no_such_pkg")


def test_bad_gate_syntax_and_bad_numbers(planted_onnx, tmp_path):
    one_line_error(run_cli("audit", planted_onnx, "--out", tmp_path / "r", "--fail-if", "mccs.mean ~ 3"), "gate")
    one_line_error(run_cli("audit", planted_onnx, "--out", tmp_path / "r", "--n", "lots"), "--n")
    one_line_error(run_cli("audit", planted_onnx, "--out", tmp_path / "r", *SMALL, "--theta", "1.5"), "theta")


def test_help_explains_every_option():
    proc = run_cli("audit", "--help", env={"COLUMNS": "200"})
    assert proc.returncode == 0
    for flag in ("--n", "--anchors", "--seed", "--embedder", "--theta", "--radius", "--mccs-form", "--out", "--json",
                 "--quiet", "--batch-size", "--device", "--threads", "--fail-if"):
        assert flag in proc.stdout
