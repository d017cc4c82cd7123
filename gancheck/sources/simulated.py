"""ONNX generators and descriptors whose truth is known, for checking that every report figure
means what it says (tests/test_validity.py, benchmarks/bench_validity.py).

The generator maps ``z`` (N, latent_dim) standard normal to a 3 x size x size image in [-1, 1]:
``z[0]`` picks one of K identities with probabilities ``weights`` (its normal quantiles cut the
line into K intervals), and ``z[1:]`` adds a small nuisance variation (pose, lighting) that stays
well inside the identity's ball. So the share of every identity, the number of identities and
every population figure are known in closed form. The descriptor is a fixed random projection of
the pixels, optionally shifted along one direction so that all descriptors fill a narrow cone, as
dlib's face descriptors do. Building needs the ``onnx`` package (test extra).
"""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import numpy as np

from gancheck.sources.onnx_graph import save_graph


def zipf_weights(k: int, exponent: float = 1.0) -> np.ndarray:
    """Zipf identity shares ``w_j ∝ 1 / j^exponent``, j = 1..k, summing to 1."""
    w = 1.0 / np.arange(1, k + 1) ** exponent
    return w / w.sum()


def planted_weights(k: int, shares: list[float]) -> np.ndarray:
    """Identities 0..len(shares)-1 hold the given shares (planted modes, largest first); the other
    ``k`` identities share the rest equally."""
    shares = np.asarray(shares, dtype=np.float64)
    return np.concatenate([shares, np.full(k, (1.0 - shares.sum()) / k)])


def identity_thresholds(weights: np.ndarray) -> np.ndarray:
    """Cut points of ``z[0]``: identity j is drawn when ``t[j-1] < z[0] <= t[j]``."""
    cum = np.cumsum(np.asarray(weights, dtype=np.float64))[:-1]
    return np.array([NormalDist().inv_cdf(min(max(c, 1e-300), 1 - 1e-16)) for c in cum])


def identity_of(z: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Identity index of each latent (N, latent_dim), as the generator computes it."""
    t = identity_thresholds(weights).astype(np.float32)
    return (np.asarray(z, np.float32).reshape(len(z), -1)[:, :1] > t[None, :]).sum(axis=1)


def build_identity_generator(path: str | Path, weights, latent_dim: int = 8, size: int = 16, nuisance: float = 0.02,
                             seed: int = 0) -> Path:
    """Write a K-identity generator (K = len(weights)) to ``path`` as ONNX and return the path.

    Identity j's image is ``tanh(0.8 p_j + nuisance * (z[1:] M))`` with ``p_j`` an i.i.d. normal
    pixel pattern: distinct identities are nearly orthogonal after centring (normalised angular
    distance about 0.5 with the pixel descriptor), draws of one identity lie within about 0.06.
    """
    from onnx import TensorProto, helper

    weights = np.asarray(weights, dtype=np.float64)
    rng = np.random.default_rng(seed)
    pixels = 3 * size * size
    patterns = (0.8 * rng.normal(size=(len(weights), pixels))).astype(np.float32)
    mix = (nuisance * rng.normal(size=(latent_dim - 1, pixels))).astype(np.float32)
    inits = {"patterns": patterns, "mix": mix, "t": identity_thresholds(weights).astype(np.float32)[None, :],
             "zero": np.array([0], np.int64), "one": np.array([1], np.int64), "end": np.array([latent_dim], np.int64),
             "shape": np.array([-1, 3, size, size], np.int64)}
    nodes = [
        helper.make_node("Slice", ["z", "zero", "one", "one"], ["z0"]),
        helper.make_node("Greater", ["z0", "t"], ["above"]),
        helper.make_node("Cast", ["above"], ["above_i"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["above_i", "one"], ["index2"], keepdims=0),
        helper.make_node("Gather", ["patterns", "index2"], ["base"], axis=0),
        helper.make_node("Slice", ["z", "one", "end", "one"], ["rest"]),
        helper.make_node("MatMul", ["rest", "mix"], ["jitter"]),
        helper.make_node("Add", ["base", "jitter"], ["pre"]),
        helper.make_node("Tanh", ["pre"], ["flat"]),
        helper.make_node("Reshape", ["flat", "shape"], ["image"]),
    ]
    return save_graph(path, "identities", nodes, {"z": ["batch", latent_dim]}, {"image": ["batch", 3, size, size]}, inits, 17,
                      "gancheck-simulated")


def build_projection_descriptor(path: str | Path, size: int = 16, dim: int = 128, cone: float = 0.0, seed: int = 0) -> Path:
    """Write a random-projection descriptor to ``path`` as ONNX: (N, 3, size, size) images ->
    ``x P + cone * |x P| u`` (N, dim), ``P`` Gaussian, ``u`` a fixed unit direction.

    ``cone = 0``: descriptors of unrelated images are nearly orthogonal. ``cone = 1.5``: every
    descriptor lies within a narrow cone around ``u`` (unrelated images at cosine about 0.7), the
    geometry of dlib's face descriptors, where a cosine kernel sees every pair as similar.
    """
    from onnx import helper

    rng = np.random.default_rng(seed)
    pixels = 3 * size * size
    proj = (rng.normal(size=(pixels, dim)) / np.sqrt(pixels)).astype(np.float32)
    u = rng.normal(size=(1, dim))
    u = (cone * u / np.linalg.norm(u)).astype(np.float32)
    inits = {"proj": proj, "u": u, "flat_shape": np.array([-1, pixels], np.int64)}
    nodes = [
        helper.make_node("Reshape", ["images", "flat_shape"], ["flat"]),
        helper.make_node("ReduceMean", ["flat"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["flat", "mean"], ["centred"]),
        helper.make_node("MatMul", ["centred", "proj"], ["y"]),
        helper.make_node("ReduceL2", ["y"], ["norm"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["norm", "u"], ["shift"]),
        helper.make_node("Add", ["y", "shift"], ["descriptor"]),
    ]
    return save_graph(path, "projection", nodes, {"images": ["batch", 3, size, size]}, {"descriptor": ["batch", dim]}, inits, 13,
                      "gancheck-simulated")
