"""Checkpointing a run as shards: the collection is cut into fixed index ranges whose exact partial
sums (:class:`gancheck.engine.accumulator.Partial`) are written atomically as Parquet files, listed with their
sha256 in ``state.json``. A killed run resumes from the shards it finished; a partial or corrupt
shard file fails its checksum and is computed again, never read as data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from gancheck.engine.accumulator import Partial
from gancheck.engine.pipeline import ShardResult
from gancheck.errors import GancheckError
from gancheck.files import atomic_write, file_sha256, write_json
from gancheck.run.fingerprint import describe_difference, first_difference, upgraded

STATE = "state.json"
SHARD_DIR = "shards"
#: The key of the anchors' checkpoint in state.json, beside the shard numbers.
ANCHORS = -1


def _fixed(values: np.ndarray):
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def write_shard(run_dir: Path, result: ShardResult) -> tuple[str, str]:
    """Write one shard atomically; returns (file name, sha256)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = result.partial
    columns = {"sim_sum": p.sim_sum, "neighbors": p.neighbors, "radial": _fixed(p.radial), "nn_dist": _fixed(p.nn_dist),
               "nn_index": _fixed(p.nn_index)}
    snaps = []
    for k, (index, n, s, nb) in enumerate(p.snapshots):
        columns[f"snap{k}_sim_sum"], columns[f"snap{k}_neighbors"] = s, nb
        snaps.append([int(index), int(n)])
    meta = {"n": p.n, "snapshots": snaps, "display_dist": p.display_dist.tolist(), "display_index": p.display_index.tolist(),
            "no_face": result.no_face, "skipped_nan": result.skipped_nan}
    table = pa.table(columns).replace_schema_metadata({"gancheck": json.dumps(meta)})
    folder = Path(run_dir) / SHARD_DIR
    folder.mkdir(exist_ok=True)
    if result.embeddings is not None:
        idx, vec = result.embeddings
        emb_tmp = folder / f".emb-{result.index:06d}.parquet.tmp"
        pq.write_table(pa.table({"sample_index": pa.array(idx, pa.int64()), "embedding": _fixed(np.asarray(vec, np.float32))}), emb_tmp)
        os.replace(emb_tmp, folder / f"emb-{result.index:06d}.parquet")
    name = f"shard-{result.index:06d}.parquet"
    return name, _write_hashed(folder / name, table)


def _write_hashed(path: Path, table) -> str:
    """Write ``table`` as Parquet to ``path`` atomically; its sha256, hashed before it is written (the
    checkpoint is never read back to be checked)."""
    import hashlib
    import io

    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    data = buf.getvalue()
    atomic_write(path, data)
    return hashlib.sha256(data).hexdigest()


def write_anchors(run_dir: Path, indices: np.ndarray, vectors: np.ndarray, found: np.ndarray, ok: np.ndarray) -> tuple[str, str]:
    """Checkpoint the anchors' embeddings atomically; returns (file name, sha256)."""
    import pyarrow as pa

    folder = Path(run_dir) / SHARD_DIR
    folder.mkdir(exist_ok=True)
    table = pa.table({"sample_index": indices, "embedding": _fixed(np.asarray(vectors, np.float32)), "found": found, "ok": ok})
    return "anchors.parquet", _write_hashed(folder / "anchors.parquet", table)


def read_anchors(run_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pyarrow.parquet as pq

    t = pq.read_table(Path(run_dir) / SHARD_DIR / "anchors.parquet")
    vec = t.column("embedding").combine_chunks()
    return vec.values.to_numpy().reshape(len(vec), vec.type.list_size), t.column("found").to_numpy(), t.column("ok").to_numpy()


def read_shard(path: Path) -> ShardResult:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"gancheck"])
    col = lambda name: table.column(name).combine_chunks()  # noqa: E731

    def fixed(name):
        arr = col(name)
        return arr.values.to_numpy(zero_copy_only=False).reshape(len(arr), arr.type.list_size)

    snaps = [(i, n, col(f"snap{k}_sim_sum").to_numpy(), col(f"snap{k}_neighbors").to_numpy()) for k, (i, n) in enumerate(meta["snapshots"])]
    partial = Partial(meta["n"], col("sim_sum").to_numpy().copy(), col("neighbors").to_numpy().copy(), fixed("radial").copy(),
                      fixed("nn_dist").copy(), fixed("nn_index").copy(), np.array(meta["display_dist"], float),
                      np.array(meta["display_index"], np.int64), snaps)
    index = int(Path(path).stem.split("-")[1])
    return ShardResult(index, partial, meta["no_face"], meta["skipped_nan"])


class State:
    """``state.json``: which shards are finished, with their checksums, for the run's settings."""

    def __init__(self, run_dir: Path, fingerprint: dict):
        self.path = Path(run_dir) / STATE
        self.fingerprint = fingerprint
        self.done: dict[int, dict] = {}

    def load(self) -> list[str]:
        """Read a previous state; returns warnings about shards that must be redone. A run started
        with another fingerprint is refused, naming the first field that differs."""
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text())
            shards = data.get("shards", {})
            old = data["fingerprint"]
            entries = [(int(key), entry["file"], entry["sha256"]) for key, entry in shards.items()]
            if not isinstance(old, dict) or not all(isinstance(f, str) and isinstance(h, str) for _, f, h in entries):
                raise TypeError("wrong types")
        except (ValueError, KeyError, TypeError, AttributeError):
            return [f"{self.path} is damaged; every shard will be recomputed"]
        diff = first_difference(upgraded(old), self.fingerprint)
        if diff is not None:
            raise GancheckError(f"cannot resume: the run was started with other settings or inputs, {describe_difference(diff)}; resume with "
                                "the same inputs and settings, or start afresh (--overwrite replaces the run only once the new one has finished)")
        warnings = []
        for key, file, sha in entries:
            path = self.path.parent / SHARD_DIR / Path(file).name
            if not path.is_file() or file_sha256(path) != sha:
                warnings.append(f"shard {key} ({file}) is missing or corrupt; recomputing it")
                continue
            self.done[key] = {"file": Path(file).name, "sha256": sha}
        return warnings

    def mark(self, j: int, file: str, sha256: str) -> None:
        self.done[j] = {"file": file, "sha256": sha256}
        write_json(self.path, {"fingerprint": self.fingerprint, "shards": {str(k): v for k, v in sorted(self.done.items())}})

    def shard_path(self, j: int) -> Path:
        return self.path.parent / SHARD_DIR / self.done[j]["file"]
