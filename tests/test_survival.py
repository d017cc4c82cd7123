"""Long runs survive: kill and resume, corrupt shards, faults with defined policies, Ray."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli

FIXTURES = Path(__file__).parent / "fixtures"
RUN = ["--n", "24000", "--anchors", "400", "--shard-size", "2000", "--seed", "4", "--quiet"]


def comparable(report):
    return {k: v for k, v in report.items() if k not in ("generator", "config")}


@pytest.fixture(scope="module")
def reference_run(planted_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = run_cli("audit", planted_onnx, "--out", out, *RUN)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "report.json").read_text())


def live(out: Path) -> Path:
    """Where a run is being written: its staging sibling until it has finished (docs/run-directory.md)."""
    staging = out.parent / f".{out.name}.partial"
    return staging if staging.exists() else out


def shards_done(out: Path) -> int:
    try:
        return sum(1 for k in json.loads((live(out) / "state.json").read_text())["shards"] if int(k) >= 0)
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def start(model, out):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "gancheck", "audit", str(model), "--out", str(out), *RUN],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("kill_after_shards", [0, 3, 9])
def test_sigkill_then_resume_gives_the_uninterrupted_report(planted_onnx, reference_run, tmp_path, kill_after_shards):
    out = tmp_path / "run"
    proc = start(planted_onnx, out)
    deadline = time.time() + 300
    while shards_done(out) < kill_after_shards and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if kill_after_shards == 0:  # inside the anchors or the first shard
        while not (live(out) / "manifest.json").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = shards_done(out)
    again = run_cli("audit", planted_onnx, "--out", out, *RUN, "--resume")
    assert again.returncode == 0, again.stderr
    assert comparable(json.loads((out / "report.json").read_text())) == comparable(reference_run)
    assert killed_at >= kill_after_shards


def test_corrupt_and_partial_shards_are_redone_not_read(planted_onnx, reference_run, tmp_path):
    out = tmp_path / "run"
    assert run_cli("audit", planted_onnx, "--out", out, *RUN).returncode == 0
    shard = out / "shards" / "shard-000004.parquet"
    shard.write_bytes(shard.read_bytes()[:200])  # truncated
    (out / "shards" / ".shard-000005.parquet.tmp").write_bytes(b"half a file")  # a write cut short
    os.utime(out / "shards" / "shard-000006.parquet")
    again = run_cli("audit", planted_onnx, "--out", out, *RUN, "--resume")
    assert again.returncode == 0, again.stderr
    assert "shard 4" in again.stderr and "recomputing" in again.stderr
    assert comparable(json.loads((out / "report.json").read_text())) == comparable(reference_run)


def test_resume_with_other_settings_is_refused(planted_onnx, tmp_path):
    out = tmp_path / "run"
    assert run_cli("audit", planted_onnx, "--out", out, *RUN).returncode == 0
    before = (out / "report.json").read_text()
    proc = run_cli("audit", planted_onnx, "--out", out, *RUN[:-3], "--seed", "5", "--quiet", "--resume")
    assert proc.returncode == 2 and "other settings" in proc.stderr and "seed" in proc.stderr
    assert (out / "report.json").read_text() == before


def flaky(tmp_path, planted_onnx, *args, **env):
    full = {"GANCHECK_TEST_MODEL": str(planted_onnx), "PYTHONPATH": f"{ROOT}{os.pathsep}{FIXTURES}"}
    full.update({k: str(v) for k, v in env.items()})
    return run_cli("audit", "flaky_generator:make", "--out", tmp_path / "run", *args, env=full)


def test_generator_that_raises_once_is_retried(tmp_path, planted_onnx):
    proc = flaky(tmp_path, planted_onnx, *RUN, GANCHECK_TEST_RAISE_AT=20, GANCHECK_TEST_RAISE_TIMES=1)
    assert proc.returncode == 0, proc.stderr


def test_generator_that_keeps_raising_stops_cleanly_and_keeps_finished_shards(tmp_path, planted_onnx, reference_run):
    proc = flaky(tmp_path, planted_onnx, *RUN, "--retries", "1", GANCHECK_TEST_RAISE_AT=200, GANCHECK_TEST_RAISE_TIMES=5)
    assert proc.returncode == 2
    assert "failed 2 times" in proc.stderr and "simulated generator crash" in proc.stderr and "--resume" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert shards_done(tmp_path / "run") >= 2
    resumed = flaky(tmp_path, planted_onnx, *RUN, "--resume")
    assert resumed.returncode == 0, resumed.stderr


def test_nan_in_a_few_outputs_is_skipped_and_counted_when_asked(tmp_path, planted_onnx):
    stop = flaky(tmp_path, planted_onnx, *RUN, GANCHECK_TEST_NAN=1)
    assert stop.returncode == 2 and "NaN" in stop.stderr and "--on-nan skip" in stop.stderr
    skip = flaky(tmp_path, planted_onnx, *RUN, "--on-nan", "skip", "--overwrite", GANCHECK_TEST_NAN=1)
    assert skip.returncode == 0, skip.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert 0.002 < report["skipped_nan"] / 24400 < 0.02
    assert report["n_samples"] + report["skipped_nan"] - (400 - report["n_anchors"]) == 24000


class FlakyEmbedder:
    """A descriptor that fails ``failures`` times, then works (the pixel descriptor)."""

    default_theta, default_radius, name = 0.3, 0.2, "flaky"

    def __init__(self, failures):
        from embedders.pixel import PixelEmbedder

        self.inner, self.failures = PixelEmbedder(), failures

    def embed(self, images):
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("simulated descriptor failure")
        return self.inner.embed(images)

    def describe(self):
        return {"name": self.name}


def small_config(**kw):
    from gancheck.run.config import AuditConfig

    return AuditConfig(n=3000, anchors=100, shard_size=1000, **kw)


def test_descriptor_failure_is_retried_then_stops_with_a_message(planted_onnx):
    from gancheck.run.measure import measure
    from gancheck.errors import GancheckError
    from gancheck.sources import load_generator

    result = measure(load_generator(str(planted_onnx)), FlakyEmbedder(2), small_config(retries=2))
    assert result.n_samples == 3000
    with pytest.raises(GancheckError, match="embedder .* failed 3 times .*simulated descriptor failure"):
        measure(load_generator(str(planted_onnx)), FlakyEmbedder(3), small_config(retries=2))


def test_full_disk_stops_cleanly_and_keeps_earlier_shards(planted_onnx, tmp_path, monkeypatch):
    import errno

    import pyarrow.parquet as pq

    import gancheck.run.shards as shards
    from gancheck import api
    from gancheck.errors import GancheckError

    real, calls = shards.atomic_write, {"n": 0}

    def fill_up(where, data):
        if "shard-" in str(where):
            calls["n"] += 1
            if calls["n"] > 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(where))
        return real(where, data)

    monkeypatch.setattr(shards, "atomic_write", fill_up)
    out = tmp_path / "run"
    with pytest.raises(GancheckError, match="cannot write shard 2 .*No space left on device.*--resume"):
        api.audit(str(planted_onnx), n=6000, anchors=100, out=out, shard_size=1000)
    assert shards_done(out) == 2
    assert not out.exists()  # the unfinished run stays in its staging sibling
    for j in (0, 1):
        pq.read_table(live(out) / "shards" / f"shard-00000{j}.parquet")  # intact
    assert not (live(out) / "shards" / "shard-000002.parquet").exists()
    monkeypatch.setattr(shards, "atomic_write", real)
    report = api.audit(str(planted_onnx), n=6000, anchors=100, out=out, shard_size=1000, resume=True)
    assert report["n_samples"] == 6000


def test_unwritable_output_directory_is_a_clear_error(planted_onnx):
    proc = run_cli("audit", planted_onnx, "--out", "/proc/gancheck-cannot-write-here", "--n", "100", "--anchors", "10")
    assert proc.returncode == 2 and "cannot write to /proc/gancheck-cannot-write-here" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_memory_holds_anchors_not_the_collection():
    """The engine's state is sized by |A| (sums, kept neighbours), never by |C|: streaming ten times
    more samples through it must not raise its peak traced memory."""
    import tracemalloc

    from gancheck.engine.accumulator import CollapseAccumulator

    rng = np.random.default_rng(0)
    anchors = rng.normal(size=(200, 64)).astype(np.float32)
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)

    def peak(n: int) -> int:
        tracemalloc.start()
        acc = CollapseAccumulator(anchors, 0.3, 0.25, tile=1000, keep_neighbors=8)
        for start in range(0, n, 1000):
            tile = rng.normal(size=(1000, 64)).astype(np.float32)
            acc.update(tile / np.linalg.norm(tile, axis=1, keepdims=True), np.arange(start, start + 1000))
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return top

    peak(1_000)  # first use allocates caches once
    small, large = peak(4_000), peak(40_000)
    assert large < 1.3 * small, (small, large)  # holding the collection would cost 40000 * 64 * 4 bytes = 10 MB more


ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'gancheck[ray]'")


def test_ray_local_cluster_equals_single_process(planted_onnx, reference_run, tmp_path):
    proc = run_cli("audit", planted_onnx, "--out", tmp_path / "ray", *RUN, "--executor", "ray", "--workers", "2", timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert comparable(json.loads((tmp_path / "ray" / "report.json").read_text())) == comparable(reference_run)
