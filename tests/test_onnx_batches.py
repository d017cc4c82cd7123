"""Fixed-batch ONNX models (batch dimension exported as a number): the descriptor (``onnx:PATH``)
and the scorers (discriminators, classifiers) share one padding loop (embedders.onnx_model.run_batches);
a fixed-batch model gives the same rows as the same model with a dynamic batch, for any count."""

from __future__ import annotations

import numpy as np
import pytest

from embedders.onnx_model import OnnxEmbedder, run_batches
from embedders.scorer import ImageScorer
from gancheck.sources.onnx_graph import save_graph


def _linear_model(path, batch, outputs: int = 5, size: int = 8):
    """images (batch, 3, size, size) -> (batch, outputs): a fixed random projection."""
    from onnx import helper

    weights = np.random.default_rng(0).normal(size=(3 * size * size, outputs)).astype(np.float32)
    nodes = [helper.make_node("Reshape", ["images", "flat_shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["out"])]
    return save_graph(path, "linear", nodes, {"images": [batch, 3, size, size]}, {"out": [batch, outputs]},
                      {"flat_shape": np.array([-1, 3 * size * size], np.int64), "w": weights}, 13, "gancheck-test")


@pytest.mark.parametrize("count", [1, 3, 4, 9])
def test_fixed_batch_models_give_the_rows_of_a_dynamic_batch(tmp_path, count):
    fixed, dynamic = _linear_model(tmp_path / "fixed.onnx", 4), _linear_model(tmp_path / "dynamic.onnx", "batch")
    images = np.random.default_rng(count).random((count, 8, 8, 3)).astype(np.float32)
    a, b = OnnxEmbedder(str(fixed), threads=1), OnnxEmbedder(str(dynamic), threads=1)
    assert a.fixed_batch == 4 and b.fixed_batch is None
    np.testing.assert_allclose(a.embed(images)[0], b.embed(images)[0], rtol=1e-6)
    s, t = ImageScorer(fixed, threads=1, what="classifier"), ImageScorer(dynamic, threads=1, what="classifier")
    assert s.scores(images).shape == (count, 5)
    np.testing.assert_allclose(s.scores(images), t.scores(images), rtol=1e-6)


def test_run_batches_pads_the_last_slice_and_drops_the_padding():
    seen = []

    def run(part):
        seen.append(len(part))
        return part * 2.0

    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    out = np.concatenate(run_batches(run, x, 2))
    assert seen == [2, 2, 2] and np.array_equal(out, x * 2.0)
    assert run_batches(run, x[:0], 2) == [] and np.array_equal(np.concatenate(run_batches(run, x, None)), x * 2.0)
