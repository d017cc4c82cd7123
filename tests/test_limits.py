"""Limits said before a long run (issue 24): a size that cannot finish is refused in one line before
the collection starts, the shard plan holds two numbers whatever --n, and collection and anchors
never overlap."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_cli


def test_a_run_larger_than_the_free_disk_is_refused_before_the_collection(planted_onnx, tmp_path):
    proc = run_cli("audit", planted_onnx, "--n", "1e12", "--anchors", "100", "--out", tmp_path / "run", "--quiet")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "--n 1,000,000,000,000" in lines[0] and "TiB" in lines[0] and "free" in lines[0] and "lower --n" in lines[0]
    assert not (tmp_path / "run").exists()


def test_counts_beyond_the_anchors_index_range_are_refused(planted_onnx):
    import gancheck
    from gancheck.errors import GancheckError
    from gancheck.run.config import AuditConfig
    from gancheck.sources.latents import ANCHOR_OFFSET

    with pytest.raises(GancheckError, match="--n must lie between"):
        gancheck.audit(str(planted_onnx), n="2e12")
    with pytest.raises(GancheckError, match="anchors' sample indices"):
        AuditConfig(n=ANCHOR_OFFSET + 1).validate()


def test_the_shard_plan_is_made_one_shard_at_a_time_and_equals_the_list_it_replaces():
    from gancheck.engine.executors import plan, shard_checkpoints, shard_end

    small = plan(range(10_000), 4096)
    listed = [range(10_000)[i : i + 4096] for i in range(0, 10_000, 4096)]
    assert len(small) == len(listed) == 3 and [list(small[j]) for j in range(3)] == [list(r) for r in listed]
    assert [shard_end(small, j) for j in range(3)] == [4096, 8192, 10_000]
    assert shard_checkpoints(small, [100, 4096, 5000, 9999], 1) == [5000]
    huge = plan(range(10**12), 16_384)
    assert len(huge) == -(-10**12 // 16_384) and huge[len(huge) - 1][-1] == 10**12 - 1
    arrays = plan(np.arange(10, dtype=np.int64), 4)
    assert [a.tolist() for a in arrays] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(IndexError):
        small[3]


def test_the_expected_size_and_time_are_said_before_the_collection(planted_onnx, tmp_path):
    proc = run_cli("audit", planted_onnx, "--n", "3000", "--anchors", "200", "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    said = [i for i, line in enumerate(lines) if "collection: about" in line and "images/s" in line]
    started = [i for i, line in enumerate(lines) if "collection samples: started" in line]
    assert said and started and said[0] < started[0], proc.stderr
    assert any("run directory: about" in line for line in lines[: started[0]])
