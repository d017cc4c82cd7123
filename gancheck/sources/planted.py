"""A small ONNX generator with a planted collapse, shipped with the package for `gancheck demo`
and built afresh by the tests.

``z`` (N, latent_dim) standard normal -> a 3 x size x size image in [-1, 1]: a smooth random
texture that varies with ``z``, except that every ``z`` with ``z[0] > t`` yields the same image.
``t`` is the standard normal quantile of ``1 - fraction``, so ``fraction`` of all draws collapse
onto one identity. Building needs the ``onnx`` package (test extra); running needs only onnxruntime.
"""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import numpy as np

from gancheck.sources.onnx_graph import save_graph

DEMO_MODEL = Path(__file__).parents[1] / "data" / "demo_generator.onnx"
DEMO_FRACTION = 0.06


def planted_threshold(fraction: float) -> float:
    """``t`` with P(z[0] > t) = fraction for standard normal z[0]."""
    return NormalDist().inv_cdf(1.0 - fraction)


def _smooth_patterns(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """``count`` low-frequency colour patterns, (count, 3 * size * size), unit RMS."""
    yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    out = np.zeros((count, 3, size, size))
    for k in range(count):
        for _ in range(4):
            fy, fx = rng.integers(1, 5, size=2)
            phase = rng.uniform(0, 2 * np.pi, size=3)
            out[k] += np.cos(2 * np.pi * (fy * yy + fx * xx))[None] * np.cos(phase)[:, None, None] + rng.normal(0, 0.05, (3, size, size))
    out = out.reshape(count, -1)
    return out / np.sqrt((out**2).mean(axis=1, keepdims=True))


def build_planted_generator(path: str | Path, latent_dim: int = 32, fraction: float = DEMO_FRACTION, size: int = 32,
                            seed: int = 1234, layout: str = "nchw", fixed_batch: int | None = None, nan: bool = False) -> Path:
    """Write the planted-collapse generator to ``path`` as ONNX (``nan=True`` makes every output NaN,
    for error tests). Returns the path."""
    from onnx import helper

    rng = np.random.default_rng(seed)
    width = 2 * latent_dim
    mix = rng.normal(0, 1 / np.sqrt(latent_dim), (latent_dim, width)).astype(np.float32)
    mix[0] = 0.0  # the collapse switch z[0] does not also steer the texture
    patterns = (_smooth_patterns(rng, width, size) * 1.5 / np.sqrt(width)).astype(np.float32)
    planted = np.tanh(_smooth_patterns(rng, 1, size) * 0.8).astype(np.float32)
    shape = [-1, 3, size, size] if layout == "nchw" else [-1, size, size, 3]
    if layout == "nhwc":
        patterns = patterns.reshape(width, 3, size, size).transpose(0, 2, 3, 1).reshape(width, -1).copy()
        planted = planted.reshape(1, 3, size, size).transpose(0, 2, 3, 1).reshape(1, -1).copy()
    inits = {"mix": mix, "patterns": patterns, "planted": planted, "t": np.array([planted_threshold(fraction)], np.float32),
             "zero": np.array([0], np.int64), "one": np.array([1], np.int64), "shape": np.array(shape, np.int64),
             "poison": np.array([np.nan if nan else 0.0], np.float32)}
    nodes = [
        helper.make_node("MatMul", ["z", "mix"], ["h"]),
        helper.make_node("MatMul", ["h", "patterns"], ["pre"]),
        helper.make_node("Tanh", ["pre"], ["texture"]),
        helper.make_node("Slice", ["z", "zero", "one", "one"], ["z0"]),
        helper.make_node("Greater", ["z0", "t"], ["collapsed"]),
        helper.make_node("Where", ["collapsed", "planted", "texture"], ["flat"]),
        helper.make_node("Add", ["flat", "poison"], ["flat2"]),
        helper.make_node("Reshape", ["flat2", "shape"], ["image"]),
    ]
    batch = fixed_batch if fixed_batch else "batch"
    out_shape = [batch, 3, size, size] if layout == "nchw" else [batch, size, size, 3]
    return save_graph(path, "planted_collapse", nodes, {"z": [batch, latent_dim]}, {"image": out_shape}, inits, 17, "gancheck-demo")


def in_planted_region(z: np.ndarray, fraction: float = DEMO_FRACTION) -> np.ndarray:
    """Whether each latent (N, latent_dim) falls in the collapsed region."""
    return np.asarray(z).reshape(len(z), -1)[:, 0] > planted_threshold(fraction)


if __name__ == "__main__":
    print(build_planted_generator(DEMO_MODEL))
