"""Image sheets written as PNG: a contact sheet of a generator's samples."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from gancheck.errors import GancheckError
from gancheck.files import atomic_write
from gancheck.images import to_uint8


def image_grid(images: np.ndarray, columns: int | None = None, gap: int = 2) -> np.ndarray:
    """uint8 (H', W', 3) sheet of the images (N, H, W, 3) in [0, 1], row by row, ``gap`` white pixels apart."""
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
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise GancheckError(f"--out {path} must be a .png file")
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(image_grid(images, columns)).save(buf, format="PNG")
    atomic_write(path, buf.getvalue())
    return path
