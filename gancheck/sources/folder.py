"""A folder of a generator's images (PNG/JPEG/WebP): diagnosis only, there are no latents."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gancheck.errors import GancheckError
from gancheck.sources.base import Source, register

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


@register("folder")
class FolderSource(Source):
    """Sample index ``i`` is the i-th file in sorted order. Anchors are a seeded random subset of
    the files and the collection is the rest, so A and C are disjoint."""

    options = ("size",)

    def __init__(self, path: str, size: int | None = None):
        self.path = Path(path)
        self.files = sorted(p for p in self.path.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
        if not self.files:
            raise GancheckError(f"no PNG/JPEG/WebP images in {self.path}; point the audit at a folder of generated images")
        self.size = size
        self.seed = 0

    def prepare(self, seed: int) -> None:
        super().prepare(seed)
        self.order = np.random.default_rng([int(seed), 0xF01DE5]).permutation(len(self.files))
        first = self._load(0)
        self.size = self.size or first.shape[0]
        self.image_shape = (self.size, self.size) if self.size else tuple(first.shape[:2])

    def _split(self, n_anchors: int) -> int:
        if n_anchors >= len(self.files):
            raise GancheckError(f"{self.path} holds {len(self.files)} images, not enough for {n_anchors} anchors plus a collection; lower --anchors")
        return n_anchors

    def anchor_indices(self, n: int) -> np.ndarray:
        return np.sort(self.order[: self._split(n)]).astype(np.int64)

    def collection_indices(self, n: int, n_anchors: int = 0) -> np.ndarray:
        rest = self.order[n_anchors:]
        if n > len(rest):
            raise GancheckError(f"{self.path} holds {len(rest)} images besides the anchors; lower --n to at most {len(rest)}")
        return np.sort(rest[:n]).astype(np.int64)

    def _load(self, i: int) -> np.ndarray:
        path = self.files[int(i)]
        try:
            x = read_rgb(path, self.size)
        except GancheckError:
            raise
        except Exception as exc:
            raise GancheckError(f"cannot read image {path} ({type(exc).__name__}); remove or replace the file") from None
        if x.max() == x.min():
            raise GancheckError(f"image {path} is constant (one colour); remove it or check the generator that wrote it")
        return x

    def images(self, indices: np.ndarray) -> np.ndarray:
        return np.stack([self._load(i) for i in indices]) if len(indices) else np.zeros((0, 1, 1, 3), np.float32)

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "files": len(self.files), "size": self.size}


#: 16-bit and 32-bit integer modes PIL gives grayscale PNGs of more than 8 bits (values up to 65535)
_WIDE = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def read_rgb(path: Path, size: int | None = None) -> np.ndarray:
    """float32 (H, W, 3) in [0, 1] from an image file of any common mode: 8- and 16-bit grayscale,
    palette, RGB, CMYK; alpha is dropped when fully opaque and refused otherwise (a transparent
    pixel has no colour of its own)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode == "P" and "transparency" in im.info or im.mode == "PA":
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA", "RGBa", "La"):
            alpha = np.asarray(im.getchannel("A"))
            if alpha.min() < 255:
                raise GancheckError(f"image {path} has transparent pixels; flatten it onto a background (e.g. with PIL's "
                                    "Image.alpha_composite) or remove it")
            im = im.convert("RGB")
        if im.mode in _WIDE:
            if im.format != "PNG":
                raise GancheckError(f"image {path} has {im.mode} pixels in a {im.format} file; convert it to 8- or 16-bit PNG or JPEG")
            gray = np.asarray(im, dtype=np.float32) / 65535.0
            if size and gray.shape != (size, size):
                gray = np.asarray(Image.fromarray(gray, "F").resize((size, size), Image.BILINEAR), dtype=np.float32)
            return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=2)
        if im.mode == "F":
            raise GancheckError(f"image {path} has floating-point pixels; save it as an 8- or 16-bit PNG")
        im = im.convert("RGB")
        if size and im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.float32) / 255.0
