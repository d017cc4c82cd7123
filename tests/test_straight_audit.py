"""One audit runs in one direction (issue 23): the generator is prepared once, the embedder built
once, each statistic computed once, and no file of the run is opened for reading while the audit
runs; the run directory's files are each written once."""

from __future__ import annotations

import builtins
import io
from collections import Counter
from pathlib import Path


def test_an_audit_prepares_builds_computes_and_writes_each_thing_once(planted_onnx, tmp_path, monkeypatch):
    import gancheck
    import gancheck.analysis.report as report_module
    import gancheck.run.directory as directory
    import gancheck.analysis.diversity as diversity
    import gancheck.analysis.intervals as intervals
    import gancheck.analysis.spatial as spatial
    import gancheck.inputs as inputs
    from gancheck.sources.base import LatentSource

    calls = Counter()

    def counting(owner, name, key=None):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            calls[key or name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    counting(LatentSource, "prepare")
    counting(inputs, "load_embedder")
    counting(report_module, "load_embedder", "load_embedder (analysis)")
    counting(directory, "build_inputs", "build_inputs (open_run)")
    for module, name in ((spatial, "ripley_test"), (diversity, "identity_vendi"), (intervals, "bootstrap_mean_std"),
                         (intervals, "anchor_subsample_curve"), (intervals, "collection_sd")):
        counting(module, name)
    out = tmp_path / "run"
    reads, writes, real_open = Counter(), Counter(), builtins.open

    def watched_open(file, mode="r", *args, **kwargs):
        path = Path(str(file)) if isinstance(file, (str, Path)) else None
        if path is not None and tmp_path in path.absolute().parents:
            (writes if any(c in mode for c in "wax+") else reads)[path.name.lstrip(".").removesuffix(".tmp")] += 1
        return real_open(file, mode, *args, **kwargs)

    import pyarrow.parquet as pq

    monkeypatch.setattr(builtins, "open", watched_open)
    monkeypatch.setattr(io, "open", watched_open)
    for name in ("read_table", "ParquetFile"):
        counting(pq, name, f"pyarrow.parquet.{name}")
    report = gancheck.audit(str(planted_onnx), out, n=1500, anchors=150, shard_size=500, reference=None)
    assert report["verdict"]["status"] in ("pass", "collapse", "fail", "inconclusive")
    assert calls["prepare"] == 1 and calls["load_embedder"] == 1, calls  # the probe batch once, the embedder built once
    assert calls["load_embedder (analysis)"] == calls["build_inputs (open_run)"] == 0, calls
    for name in ("ripley_test", "identity_vendi", "bootstrap_mean_std", "anchor_subsample_curve", "collection_sd"):
        assert calls[name] == 1, (name, calls)
    run_files = ("report.json", "manifest.json", "report.html", "state.json")
    assert not [name for name in reads if name in run_files or name.endswith(".parquet")], reads
    assert calls["pyarrow.parquet.read_table"] == calls["pyarrow.parquet.ParquetFile"] == 0, calls
    assert writes["report.json"] == 1 and writes["manifest.json"] == 1 and writes["report.html"] == 1, writes


def test_reference_metrics_use_the_audits_own_embedder(planted_onnx, tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    import gancheck
    import gancheck.analysis.report as report_module
    import gancheck.inputs as inputs

    real = tmp_path / "real"
    real.mkdir()
    for i, image in enumerate(gancheck.sample_images(str(planted_onnx), n=12, seed=5)):
        Image.fromarray((image * 255).round().astype(np.uint8)).save(real / f"{i}.png")
    built = Counter()
    for owner in (inputs, report_module):
        original = owner.load_embedder

        def counted(*args, _original=original, _owner=owner.__name__, **kwargs):
            built[_owner] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, "load_embedder", counted)
    report = gancheck.audit(str(planted_onnx), n=600, anchors=60, reference=real)
    assert report["reference"]["embedded"] == 12 and built == {"gancheck.inputs": 1}, built
