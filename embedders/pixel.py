"""``pixel``: resized, centred, L2-normalised pixels. For tests and data with no trained embedder."""

from __future__ import annotations

import numpy as np

from embedders.base import Embedder, l2_normalise, register
from gancheck.errors import GancheckError


def area_resize(images: np.ndarray, size: int) -> np.ndarray:
    """Resize an NHWC batch to ``size x size`` by box averaging (exact when size divides H and W)."""
    n, h, w, c = images.shape
    if (h, w) == (size, size):
        return images
    if h % size == 0 and w % size == 0:
        return images.reshape(n, size, h // size, size, w // size, c).mean(axis=(2, 4))
    # Non-integer factor: nearest sampling of pixel centres, vectorised.
    rows = ((np.arange(size) + 0.5) * h / size).astype(np.int64)
    cols = ((np.arange(size) + 0.5) * w / size).astype(np.int64)
    return images[:, rows][:, :, cols]


@register("pixel")
class PixelEmbedder(Embedder):
    """Each image resized to ``size x size``, flattened, centred on its own mean and L2-normalised.

    Centring makes unrelated images nearly orthogonal (distance about 0.5), as with a trained
    descriptor; identical images have distance 0.
    """

    default_theta = 0.3
    default_radius = 0.2
    threshold_source = "chosen for centred pixels: unrelated images lie near d = 0.5, copies at 0"

    def __init__(self, size: int = 16):
        if int(size) < 1:
            raise GancheckError(f"pixel embedder size must be a positive integer, got {size}")
        self.size = int(size)

    @property
    def input_side(self) -> int:
        return self.size

    def embed(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = area_resize(np.asarray(images, dtype=np.float32), self.size).reshape(len(images), -1)
        x = x - x.mean(axis=1, keepdims=True)
        return l2_normalise(x), np.ones(len(x), dtype=bool)

    def describe(self) -> dict:
        return {"name": self.name, "size": self.size}
