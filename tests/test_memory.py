"""Memory does not grow with |C| (issue 24): on the real dlib path, what the measurement holds at the
start of each shard stays flat over the run, and its peak stays under the documented bound
(:func:`gancheck.run.measure.working_memory`: batches in flight, the embedder's batch, the
statistics tile, the sums), which depends on |A|, the descriptor size, the image size and the batch
size, not on |C|. Traced by tracemalloc (numpy's buffers included)."""

from __future__ import annotations

import gc
import tracemalloc

import pytest


def traced_measurement(generator, n: int, monkeypatch) -> tuple[list[int], int, int]:
    """``(traced bytes at each shard's start, peak traced bytes, the documented bound)``."""
    import gancheck.engine.pipeline as pipeline
    from embedders import load_embedder
    from gancheck.run.config import AuditConfig
    from gancheck.run.measure import measure, working_memory
    from gancheck.sources import load_generator

    source, embedder = load_generator(str(generator)), load_embedder("dlib", align="fixed")
    starts, shard = [], pipeline.ShardMeasurer.shard

    def counted(self, *args, **kwargs):
        gc.collect()
        starts.append(tracemalloc.get_traced_memory()[0])
        return shard(self, *args, **kwargs)

    monkeypatch.setattr(pipeline.ShardMeasurer, "shard", counted)
    config = AuditConfig(n=n, anchors=60, shard_size=300)
    tracemalloc.start()
    try:
        result = measure(source, embedder, config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    bound = working_memory(len(result.anchor_vectors), result.anchor_vectors.shape[1], source.image_shape, config, embedder.input_side)
    return starts, peak, bound


def test_the_real_dlib_path_holds_the_same_memory_at_every_shard_and_stays_under_its_bound(planted_onnx, monkeypatch):
    pytest.importorskip("dlib")
    small_starts, small_peak, bound = traced_measurement(planted_onnx, 600, monkeypatch)
    starts, peak, same_bound = traced_measurement(planted_onnx, 1800, monkeypatch)
    assert bound == same_bound  # the bound does not depend on |C|
    assert len(starts) == 6 and max(starts[1:]) - starts[1] < 2**20, [s / 2**20 for s in starts]  # nothing kept per shard
    assert small_peak <= bound and peak <= bound, (small_peak / 2**20, peak / 2**20, bound / 2**20)


def test_the_proofs_paired_bootstrap_holds_memory_linear_in_the_draw_and_gives_the_unbatched_interval():
    """Unbatched, scipy's BCa jackknife held an n x (n - 1) index matrix: 3 GB at n = 2e4 (the
    calibration tests' proof was killed at 17 GB of RSS)."""
    import numpy as np
    from scipy.stats import bootstrap

    from gancheck.calibration.proof import weighted_excess

    rng = np.random.default_rng(0)
    near, keep = rng.random((20_000, 2)) < 0.05, rng.random(20_000)
    tracemalloc.start()
    try:
        large = weighted_excess(near, keep, 0.01)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 300 * 2**20 and large["low"] < large["excess_removed"] < large["high"], peak / 2**20
    small_near, small_keep = near[:2000], keep[:2000]
    count = small_near.sum(axis=1).astype(np.float64)

    def removed(k, c, axis=-1):
        before = c.mean(axis=axis)
        return (before - (k * c).sum(axis=axis) / k.sum(axis=axis)) / (before - 2 * 0.01)

    whole = bootstrap((small_keep, count), removed, paired=True, vectorized=True, n_resamples=2000, random_state=0).confidence_interval
    got = weighted_excess(small_near, small_keep, 0.01)
    assert (got["low"], got["high"]) == (float(whole.low), float(whole.high))
