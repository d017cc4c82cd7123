"""A generator's raw outputs kept by sample index inside the run directory, so that a resumed or
repeated audit of a remote or slow generator never pays twice for the same sample.

Each answered request is one ``.npz`` file (``index``: the sample indices, ``output``: the raw
output rows, exactly as the generator returned them) written atomically; a folder holds the
outputs of one setting (model, inputs, prior, seed), named by a hash of it.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path

import numpy as np

from gancheck.files import atomic_write
from gancheck.sources.base import LatentSource


def cache_key(setting: dict) -> str:
    """The folder name for the outputs of ``setting`` (anything that changes a sample's output)."""
    return hashlib.sha256(json.dumps(setting, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ResponseCache:
    """Raw outputs by sample index under ``folder``; safe to use from several threads."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.where: dict[int, tuple[Path, int]] = {}
        for path in sorted(self.folder.glob("*.npz")):
            try:
                with np.load(path) as f:
                    index = f["index"]
            except (OSError, ValueError, KeyError):  # a damaged file only costs its samples again
                continue
            self.where.update((int(i), (path, row)) for row, i in enumerate(index))

    def missing(self, indices: np.ndarray) -> np.ndarray:
        """The mask of ``indices`` not in the cache."""
        with self.lock:
            return np.array([int(i) not in self.where for i in indices], dtype=bool)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """The cached rows of ``indices`` (all present), in their order."""
        with self.lock:
            spots = [self.where[int(i)] for i in indices]
        rows = {}
        for path in dict.fromkeys(p for p, _ in spots):
            with np.load(path) as f:
                rows[path] = f["output"]
        return np.stack([rows[p][r] for p, r in spots])

    def write(self, indices: np.ndarray, output: np.ndarray) -> None:
        buf = io.BytesIO()
        np.savez(buf, index=np.asarray(indices, np.int64), output=np.asarray(output))
        path = self.folder / f"{int(indices[0])}-{int(indices[-1])}-{len(indices)}.npz"
        atomic_write(path, buf.getvalue())
        with self.lock:
            self.where.update((int(i), (path, row)) for row, i in enumerate(indices))


class CachedSource(LatentSource):
    """A latent generator reached by requests (an inference server, a program): each batch is
    split into up to ``concurrency`` requests sent at once, and with a run directory every answered
    sample's raw output is kept there, so a resumed audit asks only for what it lacks.

    Subclasses give :meth:`request` (latents and indices -> raw output rows) and :meth:`setting`
    (what the output of a sample depends on besides its latent)."""

    concurrency: int = 1
    current_indices: np.ndarray | None = None  # the sample indices of a batch given to generate()
    cache: ResponseCache | None = None
    cache_root: Path | None = None

    def use_run_dir(self, run_dir: str | Path) -> None:
        self.cache_root = Path(run_dir) / "cache"

    def setting(self) -> dict:
        return self.describe()

    def request(self, z: np.ndarray, indices: np.ndarray) -> np.ndarray:
        return np.asarray(self.generate(z))

    def images(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if not len(indices):
            return np.zeros((0, 1, 1, 3), np.float32)
        raw = self.raw(indices)
        return self.format.convert(raw, first_index=int(indices[0]), allow_nan=self.allow_nan)

    def raw(self, indices: np.ndarray) -> np.ndarray:
        """Raw output rows for ``indices``: from the cache where answered before, else requested."""
        cache = self._cache()
        todo = cache.missing(indices) if cache is not None else np.ones(len(indices), bool)
        if todo.any():
            ask = indices[todo]
            step = max(1, min(self.batch_size, -(-len(ask) // max(1, self.concurrency))))
            parts = [ask[i : i + step] for i in range(0, len(ask), step)]
            answers = self._send(parts)
            if cache is not None:
                for part, out in zip(parts, answers):
                    cache.write(part, out)
            if cache is None or not (~todo).any():
                return np.concatenate(answers)
        return cache.read(indices)

    def _send(self, parts: list[np.ndarray]) -> list[np.ndarray]:
        if len(parts) == 1 or self.concurrency <= 1:
            return [self.request(self.latents(p), p) for p in parts]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(self.concurrency, len(parts))) as pool:
            return list(pool.map(lambda p: self.request(self.latents(p), p), parts))

    def _cache(self) -> ResponseCache | None:
        if self.cache_root is None or self.sampler is not None:  # a calibrated sampler's draws are not the prior's
            return None
        key = cache_key(dict(self.setting(), seed=self.seed))
        if self.cache is None or self.cache.folder.name != key:
            self.cache = ResponseCache(self.cache_root / key)
        return self.cache
