"""A run's inputs built from their names: the generator source (calibrated when asked) and the embedder.

Every process that needs them (the audit, a Ray worker, calibration, a re-render) builds them here,
once, from the same specs the manifest records.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedders import load_embedder
from gancheck.calibrators import load_calibrator
from gancheck.defaults import BATCH_SIZE
from gancheck.errors import GancheckError
from gancheck.sources import load_generator

def build_inputs(generator: str, embedder: str = "pixel", generator_options: dict | None = None, embedder_options: dict | None = None,
                 device: str = "auto", threads: int | None = None, batch_size: int = BATCH_SIZE, calibrator: str | None = None,
                 force: bool = False, timeout: float | None = None, retries: int | None = None):
    """``(source, embedder)`` of an audit: the image source (calibrated when ``calibrator`` is given)
    and the embedder that turns its images into descriptors. ``device``, ``threads``, ``batch_size``,
    ``timeout`` and ``retries`` go to the sources that take them; ``generator_options`` and
    ``embedder_options`` are the plug-ins' own, refused by one that does not take them."""
    source = load_generator(str(generator), device=device, threads=threads, batch_size=batch_size, timeout=timeout,
                            http_retries=retries, **(generator_options or {}))
    if calibrator is not None:
        source.sampler = load_calibrator(calibrator).bind(source, force=force)
    return source, load_embedder(embedder, device=device, threads=threads, **(embedder_options or {}))


def calibrated_generator(generator: str, calibrator: str | Path | None, force: bool = False, seed: int = 0, device: str = "auto",
                         batch_size: int = BATCH_SIZE, **generator_options):
    """The generator ``generator`` (a path or ``pkg.mod:attr``) with latents drawn by ``calibrator``
    (the plain prior when None), prepared with ``seed``: ``.images(indices)`` gives its images."""
    source = load_generator(str(generator), device=device, batch_size=batch_size, **generator_options)
    if calibrator is not None:
        load_calibrator(calibrator).wrap(source, force=force)
    source.prepare(seed)
    return source


def sample_images(generator: str, n: int = 64, seed: int = 0, calibrator: str | Path | None = None, force: bool = False, **options) -> np.ndarray:
    """float32 (n, H, W, 3) images in [0, 1]: samples ``0..n-1`` of the (calibrated) generator."""
    if n < 1:
        raise GancheckError(f"--n must be at least 1, got {n}")
    return calibrated_generator(generator, calibrator, force=force, seed=seed, **options).images(np.arange(n, dtype=np.int64))
