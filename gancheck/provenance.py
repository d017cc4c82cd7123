"""What a run records about itself: file hashes and package versions."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path

_PACKAGES = ("gancheck", "numpy", "onnxruntime", "onnxruntime-gpu", "faiss-cpu", "faiss-gpu", "torch", "pyarrow", "insightface", "dlib-bin", "dlib")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
