"""Where shards are computed: in this process, or spread over Ray workers (one per GPU or CPU group).

Either way each shard's result is an exact :class:`gancheck.engine.accumulator.Partial`, merged by the caller
in shard order, so every executor gives the same numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Iterable, Iterator

import numpy as np

from gancheck.errors import GancheckError
from gancheck.engine.pipeline import ShardResult, ShardMeasurer


class ShardPlan(Sequence):
    """The collection's sample indices cut into consecutive shards of ``shard_size``, made one at a
    time when asked for: the plan of any ``--n`` holds two numbers (a list of 6e7 shards for
    ``--n 1e12`` took 15 GB before the first one started)."""

    def __init__(self, indices, shard_size: int):
        self.indices, self.shard_size = indices, int(shard_size)

    def __len__(self) -> int:
        return -(-len(self.indices) // self.shard_size)

    def __getitem__(self, j: int):
        if j < 0:
            j += len(self)
        if not 0 <= j < len(self):
            raise IndexError(j)
        return self.indices[j * self.shard_size : (j + 1) * self.shard_size]


def plan(indices, shard_size: int) -> ShardPlan:
    """The collection's sample indices cut into consecutive shards of ``shard_size`` (lazily)."""
    return ShardPlan(indices, shard_size)


def shard_checkpoints(shards: list[np.ndarray], checkpoints: list[int], j: int) -> list[int]:
    """Checkpoints (sample indices) that fall in shard ``j``: after its first sample, up to its end."""
    lo = shards[j][0]
    hi = shards[j + 1][0] if j + 1 < len(shards) else shards[j][-1] + 1
    return [c for c in checkpoints if lo < c <= hi]


def shard_end(shards: list[np.ndarray], j: int) -> int:
    return int(shards[j + 1][0]) if j + 1 < len(shards) else int(shards[j][-1]) + 1


def shard_results(config, worker, parts, checkpoints, todo: Iterable[int], on_batch, specs) -> Iterator[ShardResult]:
    """Results of shards ``todo`` (an iterable, consumed lazily; results in any order)."""
    if config.executor == "ray":
        return _ray_results(config, worker, parts, checkpoints, todo, on_batch, specs)
    return (worker.shard(j, parts[j], shard_checkpoints(parts, checkpoints, j), shard_end(parts, j), on_batch) for j in todo)


class _RayShardWorker:
    """Holds one rebuilt generator and embedder for the life of a Ray actor."""

    def __init__(self, specs: dict, anchors, theta, radius, config):
        from gancheck.inputs import build_inputs

        source, embedder = build_inputs(**specs)
        source.prepare(config.seed)
        self.worker = ShardMeasurer(source, embedder, anchors, theta, radius, config)

    def shard(self, j, indices, checkpoints, end):
        return self.worker.shard(j, indices, checkpoints, end)


def _ray_results(config, worker, parts, checkpoints, todo, on_batch, specs):
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise GancheckError("--executor ray needs Ray: pip install 'gancheck[ray]'") from None
    if specs is None:
        raise GancheckError("--executor ray needs a generator given by path or module (not an in-memory object)")
    if not ray.is_initialized():
        try:
            if config.ray_address:
                ray.init(address=config.ray_address, log_to_driver=False)
            else:
                ray.init(num_cpus=config.workers, include_dashboard=False, log_to_driver=False)
        except Exception as exc:
            raise GancheckError(f"cannot start or reach Ray ({str(exc).splitlines()[0][:160]}); check --ray-address") from None
    actor = ray.remote(num_cpus=1)(_RayShardWorker)
    anchors = ray.put(worker.anchors)
    pool = ActorPool([actor.remote(specs, anchors, worker.theta, worker.radius, config) for _ in range(config.workers)])
    calls = pool.map_unordered(lambda a, j: a.shard.remote(j, parts[j], shard_checkpoints(parts, checkpoints, j), shard_end(parts, j)), todo)
    try:
        for result in calls:
            on_batch(len(parts[result.index]))
            yield result
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(getattr(exc, "cause", None), GancheckError) else None
        raise GancheckError(str(cause) if cause else f"a Ray worker failed: {str(exc).splitlines()[-1][:200]}") from None
