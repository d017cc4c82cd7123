"""Fault injection: ``audit`` and ``calibrate`` killed at random points (SIGKILL: nothing runs after
it; SIGTERM: the run stops at the next batch) and then continued with ``--resume`` give bitwise the
result of an uninterrupted run, and never leave a half run under the final name."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

#: A generator slow enough (a sleep per batch) for a kill to land in the middle of a run.
SLOW = """
import time
import numpy as np
W = np.random.default_rng(5).standard_normal((16, 3 * 16 * 16)).astype(np.float32)
HOT = np.random.default_rng(6).standard_normal(3 * 16 * 16).astype(np.float32)
def images(z):
    time.sleep(0.03)
    z = np.asarray(z, np.float32).reshape(len(z), -1)
    x = np.tanh(z @ W)
    x[z[:, 0] > 1.5] = np.tanh(HOT)  # a planted collapse: ~7% of draws are one image
    return x.reshape(len(z), 3, 16, 16)
"""
AUDIT = ("--latent-shape", "16", "--n", "1200", "--anchors", "40", "--shard-size", "150", "--batch-size", "16", "--quiet")


def env_with(tmp: Path) -> dict:
    (tmp / "slowgen.py").write_text(textwrap.dedent(SLOW))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp), str(ROOT), os.environ.get("PYTHONPATH", "")]))


def gancheck(*args):
    return [sys.executable, "-m", "gancheck", *map(str, args)]


def interrupted(cmd: list, env: dict, delay: float, sig: int) -> int:
    """Run ``cmd``, send ``sig`` after ``delay`` seconds (unless it finished first); its exit status."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert "Traceback" not in err, err
    return proc.returncode


def run(cmd: list, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    return proc


def figures(run_dir: Path) -> dict:
    """report.json and the anchors table, as they are on disk."""
    import pyarrow.parquet as pq

    report = json.loads((run_dir / "report.json").read_text())
    return {"report": report, "anchors": pq.read_table(run_dir / "anchors.parquet").to_pydict()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    env = env_with(tmp)
    start = time.monotonic()
    run(gancheck("audit", "slowgen:images", "--out", tmp / "run", *AUDIT), env)
    return tmp, env, time.monotonic() - start


@pytest.mark.parametrize("seed, sig", [(0, signal.SIGKILL), (1, signal.SIGTERM), (2, signal.SIGKILL), (3, signal.SIGTERM)])
def test_audit_killed_anywhere_resumes_to_the_uninterrupted_result(reference, tmp_path, seed, sig):
    ref_dir, env, seconds = reference
    out = tmp_path / "run"
    delay = float(np.random.default_rng(seed).uniform(0.3, 0.9)) * seconds
    interrupted(gancheck("audit", "slowgen:images", "--out", out, *AUDIT), env, delay, sig)
    if out.exists():  # nothing unfinished under the final name: a killed run is not there, a finished one is whole
        assert figures(out) == figures(ref_dir / "run")
    run(gancheck("audit", "slowgen:images", "--out", out, "--resume", *AUDIT), env)
    assert figures(out) == figures(ref_dir / "run")
    assert not (tmp_path / ".run.partial").exists()


def calibration(run_dir: Path) -> dict:
    """calibration.json without the paths (the runs live in different directories) and the
    calibrator file's sha256 (its header records when it was written; what it samples is compared
    through the figures and the proof run's fingerprint)."""
    result = json.loads((run_dir / "calibration-gmm" / "calibration.json").read_text())
    for key in ("run", "proof_run"):
        result.pop(key)
    result["calibrator"].pop("path")
    result["calibrator"].pop("sha256")
    return result


@pytest.fixture(scope="module")
def calibrated(reference, tmp_path_factory):
    ref_dir, env, _ = reference
    base = tmp_path_factory.mktemp("base") / "run"
    shutil.copytree(ref_dir / "run", base)
    start = time.monotonic()
    run(gancheck("calibrate", base, "--method", "gmm", "--clusters", "4", "--quiet"), env)
    return base, time.monotonic() - start


@pytest.mark.parametrize("seed, sig", [(4, signal.SIGKILL), (5, signal.SIGTERM)])
def test_calibrate_killed_anywhere_resumes_to_the_uninterrupted_result(reference, calibrated, tmp_path, seed, sig):
    ref_dir, env, _ = reference
    want, seconds = calibrated
    run_dir = Path(shutil.copytree(ref_dir / "run", tmp_path / "run"))
    delay = float(np.random.default_rng(seed).uniform(0.2, 0.9)) * seconds
    cmd = gancheck("calibrate", run_dir, "--method", "gmm", "--clusters", "4", "--quiet")
    interrupted(cmd, env, delay, sig)
    run(cmd + ["--resume"], env)
    assert calibration(run_dir) == calibration(want)
