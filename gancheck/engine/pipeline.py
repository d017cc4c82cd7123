"""One stretch of samples through generate -> embed -> accumulate, the stages overlapped in
threads (onnxruntime, torch and BLAS release the GIL), with the fault policies of a long run."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from gancheck.engine.accumulator import CollapseAccumulator, Partial
from gancheck.errors import GancheckError

#: How many images with no detected face are kept as PNGs for inspection.
NO_FACE_SAMPLES = 16
_DONE = object()


@dataclass
class ShardResult:
    """A shard's partial sums plus what it counted on the way."""

    index: int
    partial: Partial
    no_face: int = 0
    skipped_nan: int = 0
    embeddings: tuple | None = None  # (sample indices, vectors) when embeddings are kept
    no_face_samples: list = field(default_factory=list)  # (sample index, image)


#: Batches each of the two background stages (generate, embed) may run ahead of its consumer.
PREFETCH_DEPTH = 2
#: Image batches alive at once at most: per stage, its queue, the one it holds blocked on a full queue
#: and the one it works on; the consumer's one (the embed stage passes the images on, for no-face samples).
BATCHES_IN_FLIGHT = 2 * (PREFETCH_DEPTH + 2) + 1


def prefetch(items: Iterable, depth: int = PREFETCH_DEPTH) -> Iterator:
    """Iterate ``items`` in a background thread, up to ``depth`` ahead; its exceptions re-raise here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work():
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


class Stopped(BaseException):
    """A stop was asked for (SIGTERM, SIGINT): raised at the next batch boundary, never retried."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


_STOP = threading.Event()
_STOP_SIGNAL = ["SIGTERM"]


def request_stop(signal_name: str) -> None:
    """Ask every running pipeline to stop at its next batch (called from a signal handler)."""
    _STOP_SIGNAL[0] = signal_name
    _STOP.set()


def stop_requested() -> bool:
    return _STOP.is_set()


_ACTIVE = [0]


class running:
    """``with running():`` marks a pipeline at work, so that a signal waits for its next batch
    boundary instead of stopping mid-write (see :func:`pipeline_active`)."""

    def __enter__(self):
        _ACTIVE[0] += 1
        return self

    def __exit__(self, *exc):
        _ACTIVE[0] -= 1
        return False


def pipeline_active() -> bool:
    return _ACTIVE[0] > 0


def clear_stop() -> None:
    _STOP.clear()


def check_stop() -> None:
    if _STOP.is_set():
        raise Stopped(_STOP_SIGNAL[0])


class CallTimeout(Exception):
    """A generator or embedder call ran past ``--timeout``."""


def call_with_timeout(fn: Callable, timeout: float):
    """``fn()``, abandoned (left to finish in a daemon thread) when it runs past ``timeout`` seconds; 0 waits forever."""
    if not timeout:
        return fn()
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise CallTimeout(f"no answer within --timeout {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def retrying(fn: Callable, what: str, retries: int, timeout: float = 0):
    """``fn()``, tried ``1 + retries`` times on unexpected errors and on calls that run past
    ``timeout`` seconds (0: no limit); user errors and stops are not retried."""
    for attempt in range(retries + 1):
        check_stop()
        try:
            return call_with_timeout(fn, timeout)
        except (GancheckError, KeyboardInterrupt, MemoryError, Stopped):
            raise
        except Exception as exc:
            last = exc
    msg = (str(last).strip().splitlines() or [type(last).__name__])[0][:200]
    if isinstance(last, CallTimeout):
        raise GancheckError(f"{what} hung: {msg}, {retries + 1} times; finished shards are kept: fix the cause (or raise "
                            "--timeout) and rerun with --resume")
    raise GancheckError(f"{what} failed {retries + 1} times ({type(last).__name__}: {msg}); finished shards are kept: "
                        "fix the cause and rerun with --resume")


class ShardMeasurer:
    """Measures the collection shard by shard for one run's anchors and settings: generates, embeds and
    accumulates its samples."""

    def __init__(self, source, embedder, anchors: np.ndarray, theta: float, radius: float, config):
        self.source, self.embedder, self.anchors = source, embedder, anchors
        self.theta, self.radius, self.config = theta, radius, config
        self.keep_no_face = config.no_face == "keep"
        self.dim = None if anchors is None else anchors.shape[1] - self.keep_no_face
        source.allow_nan = config.on_nan == "skip"

    def generated(self, indices: np.ndarray) -> Iterator:
        size = self.config.batch_size
        for start in range(0, len(indices), size):
            idx = indices[start : start + size]
            images = retrying(lambda: self.source.images(idx), f"the generator on samples {idx[0]}..{idx[-1]}", self.config.retries,
                              getattr(self.config, "timeout", 0))
            ok = np.isfinite(images.reshape(len(images), -1)).all(axis=1)
            yield idx, images, ok

    def embedded(self, batches: Iterable) -> Iterator:
        for idx, images, ok in batches:
            found = np.zeros(len(idx), bool)
            if ok.any():
                v, f = retrying(lambda: self.embedder.embed(images[ok]), f"the embedder on samples {idx[0]}..{idx[-1]}", self.config.retries,
                                getattr(self.config, "timeout", 0))
                self.dim = np.asarray(v).shape[1]
                vectors = np.zeros((len(idx), self.dim), np.float32)
                vectors[ok], found[ok] = v, f
            else:  # every image of the batch was skipped: its rows are never used
                vectors = np.zeros((len(idx), self.dim or 1), np.float32)
            if self.keep_no_face:
                # Every image without a face becomes the same extra-axis point: its own "no face" mode.
                vectors = np.concatenate([np.where(found[:, None], vectors, 0.0), (~found & ok)[:, None]], axis=1).astype(np.float32)
            yield idx, vectors, found, ok, images

    def stream(self, indices: np.ndarray) -> Iterator:
        """(indices, vectors, found, ok, images) batches, generation and embedding overlapped."""
        return prefetch(self.embedded(prefetch(self.generated(indices))))

    def embed_all(self, indices: np.ndarray, on_batch=None):
        """Vectors, found and ok masks for ``indices`` (the anchors)."""
        parts = []
        for idx, vec, found, ok, _ in self.stream(indices):
            parts.append((vec, found, ok))
            if on_batch:
                on_batch(len(idx))
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

    def shard(self, j: int, indices: np.ndarray, checkpoints: list[int], end: int, on_batch=None) -> ShardResult:
        """Exact partial sums of one shard of the collection."""
        if isinstance(indices, range):
            indices = np.arange(indices.start, indices.stop, indices.step, dtype=np.int64)
        acc = CollapseAccumulator(self.anchors, self.theta, self.radius, backend=self.config.backend, tile=self.config.chunk_size,
                                  keep_neighbors=self.config.neighbors_k, checkpoints=checkpoints)
        result = ShardResult(j, acc.part)
        kept = [] if self.config.save_embeddings else None
        pending, waiting = [], 0  # batches gathered into whole statistics tiles
        for idx, vec, found, ok, images in self.stream(indices):
            use = ok & (found | self.keep_no_face)
            pending.append((idx[use], vec[use]))
            waiting += int(use.sum())
            if waiting >= self.config.chunk_size:
                acc.update(np.concatenate([p[1] for p in pending]), np.concatenate([p[0] for p in pending]))
                pending, waiting = [], 0
            if kept is not None:
                kept.append((idx[use], vec[use]))
            missing = np.flatnonzero(ok & ~found)
            result.no_face += len(missing)
            result.skipped_nan += int((~ok).sum())
            room = NO_FACE_SAMPLES - len(result.no_face_samples)
            result.no_face_samples.extend((int(idx[i]), images[i]) for i in missing[:room])
            if on_batch:
                on_batch(len(idx))
        if pending:
            acc.update(np.concatenate([p[1] for p in pending]), np.concatenate([p[0] for p in pending]))
        acc.finish(end)
        if kept is not None:
            result.embeddings = (np.concatenate([k[0] for k in kept]), np.concatenate([k[1] for k in kept]))
        return result
