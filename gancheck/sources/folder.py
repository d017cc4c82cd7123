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

    @classmethod
    def accepts(cls, spec: str) -> bool:
        return Path(spec).is_dir()

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
        from PIL import Image

        path = self.files[int(i)]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if self.size and im.size != (self.size, self.size):
                    im = im.resize((self.size, self.size), Image.BILINEAR)
                x = np.asarray(im, dtype=np.float32) / 255.0
        except Exception as exc:
            raise GancheckError(f"cannot read image {path} ({type(exc).__name__}); remove or replace the file") from None
        if x.max() == x.min():
            raise GancheckError(f"image {path} is constant (one colour); remove it or check the generator that wrote it")
        return x

    def images(self, indices: np.ndarray) -> np.ndarray:
        return np.stack([self._load(i) for i in indices]) if len(indices) else np.zeros((0, 1, 1, 3), np.float32)

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "files": len(self.files), "size": self.size}
