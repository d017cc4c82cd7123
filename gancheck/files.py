"""Files on disk: atomic writes (a killed process never leaves a half file under a final name),
content hashes and the package versions a run records."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
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


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to a temporary sibling, flush it to disk, then rename it onto ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk must not leave the temporary file behind


def write_json(path: str | Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


@contextlib.contextmanager
def kept_until_replaced(path: str | Path):
    """``with kept_until_replaced(path):`` a block that writes ``path`` anew: an existing file is set
    aside first and put back, unchanged, if the block fails; it is deleted once the block succeeds."""
    path = Path(path)
    backup = path.with_name(f".{path.name}.previous-{os.getpid()}")
    if path.is_file():
        os.replace(path, backup)
    try:
        yield path
    except BaseException:
        if backup.exists():
            os.replace(backup, path)
        else:
            path.unlink(missing_ok=True)
        raise
    backup.unlink(missing_ok=True)
