"""Auditing a generator shipped as a program (a real subprocess speaking length-prefixed .npy over
its standard input and output): the same numbers as the ONNX file it runs, and one-line errors
for a program that exits, writes garbage or hangs, with the finished part kept for --resume."""

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import gancheck
from conftest import run_cli
from gancheck.errors import GancheckError

PROGRAM = Path(__file__).parent / "fixtures" / "npy_generator.py"


def _cmd(model) -> str:
    return f"cmd:{sys.executable} {PROGRAM} {model}"


def _fault(what: str) -> dict:
    return {"NPY_GENERATOR_FAULT": what}


def _m(run: Path) -> np.ndarray:
    return pq.read_table(run / "anchors.parquet").column("m").to_numpy()


def test_program_audit_equals_the_onnx_file_bitwise(planted_onnx, tmp_path):
    gancheck.audit(_cmd(planted_onnx), latent_shape="32", n=1000, anchors=48, out=tmp_path / "cmd")
    gancheck.audit(str(planted_onnx), n=1000, anchors=48, out=tmp_path / "onnx")
    assert np.array_equal(_m(tmp_path / "cmd"), _m(tmp_path / "onnx"))
    a, b = (json.loads((tmp_path / x / "report.json").read_text()) for x in ("cmd", "onnx"))
    assert a["mccs"]["mean"] == b["mccs"]["mean"] and a["worst_mode"] == b["worst_mode"]


def test_program_that_exits_stops_with_one_line_and_resumes(planted_onnx, tmp_path):
    args = ["--latent-shape", "32", "--n", "2000", "--anchors", "48", "--out", tmp_path / "run", "--shard-size", "500", "--quiet"]
    r = run_cli("audit", _cmd(planted_onnx), *args, env=_fault("exit-after:12"))  # 1 probe + 1 anchor + 10 collection batches
    assert r.returncode == 2 and "exited with status 3" in r.stderr and "out of licences" in r.stderr
    assert [line for line in r.stderr.splitlines() if "error" in line].__len__() == 1 and "Traceback" not in r.stderr
    kept = json.loads((tmp_path / ".run.partial" / "state.json").read_text())["shards"]
    assert len(kept) >= 2  # the anchors and at least one collection shard survived
    gancheck.audit(_cmd(planted_onnx), latent_shape="32", n=2000, anchors=48, out=tmp_path / "run", shard_size=500, resume=True)
    gancheck.audit(str(planted_onnx), n=2000, anchors=48, out=tmp_path / "onnx", shard_size=500)
    assert np.array_equal(_m(tmp_path / "run"), _m(tmp_path / "onnx"))


def test_program_writing_garbage_or_hanging_is_one_line(planted_onnx, tmp_path):
    r = run_cli("audit", _cmd(planted_onnx), "--latent-shape", "32", "--n", "100", "--anchors", "8", "--out", tmp_path / "g", "--quiet",
                env=_fault("garbage"))
    assert r.returncode == 2 and "length-prefixed .npy" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("audit", _cmd(planted_onnx), "--latent-shape", "32", "--n", "100", "--anchors", "8", "--out", tmp_path / "h",
                "--quiet", "--timeout", "3", env=_fault("hang"))
    assert r.returncode == 2 and "no answer within --timeout 3 s" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_missing_program_or_latent_shape_is_refused(tmp_path):
    with pytest.raises(GancheckError, match="no-such-generator") as missing:
        gancheck.audit("cmd:./no-such-generator --batch", latent_shape="8", out=tmp_path / "a")
    assert "not found" in str(missing.value)
    with pytest.raises(GancheckError, match="--latent-shape"):
        gancheck.audit(_cmd("x.onnx"), out=tmp_path / "b")
