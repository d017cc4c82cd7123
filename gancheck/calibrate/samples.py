"""Images of a calibrated generator, and a PNG contact sheet of them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gancheck.errors import GancheckError


def calibrated_generator(generator: str, calibrator: str | Path | None, force: bool = False, seed: int = 0, device: str = "auto",
                         batch_size: int = 64, **generator_options):
    """The generator ``generator`` (a path or ``pkg.mod:attr``) with latents drawn by ``calibrator``
    (the plain prior when None), prepared with ``seed``: ``.images(indices)`` gives its images."""
    from gancheck.calibrate.base import load_calibrator
    from gancheck.generators import load_generator

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


def image_grid(images: np.ndarray, columns: int | None = None, gap: int = 2) -> np.ndarray:
    """uint8 (H', W', 3) sheet of the images (N, H, W, 3) in [0, 1], row by row, ``gap`` white pixels apart."""
    from gancheck.images import to_uint8

    n, h, w, _ = images.shape
    columns = int(columns) if columns else math.ceil(math.sqrt(n))
    if columns < 1:
        raise GancheckError(f"--columns must be positive, got {columns}")
    rows = math.ceil(n / columns)
    sheet = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, 3), 255, np.uint8)
    tiles = to_uint8(images)
    for i in range(n):
        r, c = divmod(i, columns)
        sheet[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tiles[i]
    return sheet


def save_grid(images: np.ndarray, path: str | Path, columns: int | None = None) -> Path:
    """Write the grid of ``images`` as a PNG to ``path``."""
    import io

    from PIL import Image

    from gancheck.report import atomic_write

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise GancheckError(f"--out {path} must be a .png file")
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(image_grid(images, columns)).save(buf, format="PNG")
    atomic_write(path, buf.getvalue())
    return path
