"""Writing an audit's run directory: manifest, Parquet tables, report.json.

Layout (see docs/run-directory.md): ``manifest.json``, ``report.json``, ``anchors.parquet``,
``modes.parquet``, ``neighbors.parquet``, optional ``embeddings.parquet``, ``no_face/*.png``.
Every file is written to a temporary name and renamed, so a killed run never leaves a half file
under a final name.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from gancheck.run.result import AuditResult
from gancheck.inputs import build_inputs
from gancheck.errors import GancheckError
from gancheck.files import package_versions, write_json
from gancheck.defaults import BATCH_SIZE
from gancheck.images import to_uint8

FORMAT_VERSION = 1
_RUN_FILES = ("manifest.json", "report.json", "anchors.parquet")


def prepare_run_dir(out: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Check that ``out`` may receive a run, without touching anything there: refuse a directory
    that already holds a run unless it is to be replaced (``overwrite``, at the very end, see
    :func:`publish`) or continued (``resume``; with nothing to continue, it starts)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GancheckError(f"--out {out} is a file, not a directory; choose another path")
    if holds_run(out) and not (overwrite or resume):
        raise GancheckError(f"{out} already holds a run; continue it with --resume, replace it with --overwrite, or choose another --out")
    try:
        out.absolute().parent.mkdir(parents=True, exist_ok=True)
        probe = out.absolute().parent / f".{out.name}.write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise GancheckError(f"cannot write to {out} ({exc.strerror}); choose a writable --out") from None
    return out


def holds_run(path: str | Path) -> bool:
    return any((Path(path) / f).exists() for f in _RUN_FILES + ("state.json",))


def staging_dir(out: str | Path) -> Path:
    """The sibling a run is written into until it has finished: ``.NAME.partial``."""
    out = Path(out).absolute()
    return out.parent / f".{out.name}.partial"


def open_staging(out: Path, resume: bool, log=None) -> Path:
    """The directory to write a run into. ``resume`` continues an unfinished run (the staging
    directory of a stopped run, else a copy of the finished run in ``out``); otherwise a stale
    unfinished run is discarded and the staging directory starts empty. ``out`` is never touched."""
    import shutil

    work = staging_dir(out)
    if resume and (work / "state.json").is_file():
        return work
    if work.exists():
        if holds_run(work) and log is not None:
            log(f"discarding the unfinished run in {work} (pass --resume to continue one)")
        shutil.rmtree(work)
    if resume and (Path(out) / "state.json").is_file():
        # the finished run stays whole until the continued one replaces it
        shutil.copytree(out, work, ignore=lambda d, names: [n for n in names if n not in RUN_ENTRIES] if Path(d) == Path(out) else [])
        return work
    work.mkdir(parents=True)
    return work


@contextmanager
def staged_run(out: str | Path, overwrite: bool = False, resume: bool = False, log=None) -> Iterator[Path]:
    """The one way a run directory is written: check ``out`` (:func:`prepare_run_dir`), hold its
    lock, yield the staging directory to write the run into, and move it into place (:func:`publish`)
    only when the body has finished; after a failure or a stop, ``out`` is as it was and the staging
    directory is kept when ``--resume`` can continue it (:func:`abandon`)."""
    from gancheck.run.lock import RunLock

    out = prepare_run_dir(out, overwrite=overwrite, resume=resume)
    with RunLock(out):
        work = open_staging(out, resume, log=log)
        try:
            yield work
        except BaseException:
            abandon(work, out)  # kept when --resume can continue it; the error's own line says so
            raise
        publish(work, out)


def has_checkpoints(work: Path) -> bool:
    """Whether a stopped run in ``work`` holds finished work worth a --resume."""
    try:
        return bool(json.loads((Path(work) / "state.json").read_text()).get("shards"))
    except (OSError, ValueError, AttributeError):
        return False


def abandon(work: Path, out: Path) -> bool:
    """After a failed or stopped run: keep ``work`` when --resume can continue it (returns True),
    otherwise remove it so that nothing blocks the corrected command. An untouched copy of the
    finished run in ``out`` is not worth keeping."""
    import shutil

    def state(d):
        try:
            return (Path(d) / "state.json").read_bytes()
        except OSError:
            return None

    if has_checkpoints(work) and state(work) != state(out):
        return True
    shutil.rmtree(work, ignore_errors=True)
    return False


#: What a run writes at the top of its directory (anything else there, such as a calibration
#: proof run or the user's own files, is left alone when the run is replaced).
RUN_ENTRIES = ("manifest.json", "report.json", "report.html", "state.json", "anchors.parquet", "modes.parquet",
               "neighbors.parquet", "convergence.parquet", "embeddings.parquet", "shards", "no_face", "cache")


def publish(work: Path, out: Path) -> None:
    """Move the finished run ``work`` to ``out``, replacing what was there only now: in one rename
    when ``out`` is new or holds nothing but a run, else entry by entry (report.json and
    manifest.json last), leaving the directory's other entries alone."""
    import shutil

    import signal

    out = Path(out)
    held = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)  # a second Ctrl-C must not land between the renames
    try:
        if out.exists() and any(p.name not in RUN_ENTRIES for p in out.iterdir()):
            _merge(work, out)
            return
        old = out.absolute().parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            os.replace(out, old)
        os.replace(work, out)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
    shutil.rmtree(old, ignore_errors=True)


def _merge(work: Path, out: Path) -> None:
    import shutil

    new = {p.name for p in work.iterdir()}
    for name in RUN_ENTRIES:  # the old run's files that the new run does not replace
        stale = out / name
        if name not in new and (stale.exists() or stale.is_symlink()):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    last = ("report.json", "manifest.json")
    for name in sorted(new, key=lambda n: (n in last, last.index(n) if n in last else 0, n)):
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(work / name, target)
    shutil.rmtree(work, ignore_errors=True)


def _write_table(path: Path, columns: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.table(columns), tmp)
    os.replace(tmp, path)


def _vectors_column(vectors: np.ndarray):
    import pyarrow as pa

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def combine_embeddings(out: Path) -> None:
    """Concatenate the shards' embeddings, in shard order, into ``embeddings.parquet``."""
    import pyarrow.parquet as pq

    files = sorted((Path(out) / "shards").glob("emb-*.parquet"))
    if not files:
        return
    tmp = Path(out) / ".embeddings.parquet.tmp"
    writer = None
    for f in files:
        table = pq.read_table(f)
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
    writer.close()
    os.replace(tmp, Path(out) / "embeddings.parquet")


def base_manifest(source, embedder, config_dict: dict, argv: list[str] | None = None) -> dict:
    return {
        "format": "gancheck-run",
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": argv if argv is not None else sys.argv,
        "config": config_dict,
        "generator": source.describe(),
        "embedder": embedder.describe(),
        "versions": package_versions(),
        "images": {"shape": list(source.image_shape) if getattr(source, "image_shape", None) else None},
        "status": "running",
    }


def write_run(out: Path, result: AuditResult, report: dict, manifest: dict) -> None:
    """Write a finished, analysed audit into ``out``, each file once: the tables, ``report.json``
    (the analysed report) and ``manifest.json`` (status complete)."""
    import pyarrow as pa
    from PIL import Image

    out = Path(out)
    radial = np.ascontiguousarray(result.radial, dtype=np.int64)
    _write_table(out / "anchors.parquet", {
        "sample_index": result.anchor_index, "m": result.m, "mccs": result.scores,
        "neighbors": result.neighbors, "embedding": _vectors_column(result.anchor_vectors),
        "radial_counts": pa.FixedSizeListArray.from_arrays(pa.array(radial.reshape(-1)), radial.shape[1]),
    })
    _write_table(out / "convergence.parquet", {k: [row[k] for row in result.convergence] for k in result.convergence[0]})
    modes = report["modes"]
    _write_table(out / "modes.parquet", {k: [m[k] for m in modes] for k in ("rank", "sample_index", "neighbors", "neighbor_fraction", "mccs")})
    rows = [(int(result.anchor_index[a]), r, int(s), float(d)) for a, (idx, dist) in result.nearest.items() for r, (s, d) in enumerate(zip(idx, dist))]
    _write_table(out / "neighbors.parquet", {name: [row[j] for row in rows] for j, name in enumerate(("anchor_index", "rank", "sample_index", "distance"))})
    if result.no_face_samples:
        (out / "no_face").mkdir(exist_ok=True)
        for index, image in result.no_face_samples:
            Image.fromarray(to_uint8(image)).save(out / "no_face" / f"{index}.png")
    write_json(out / "report.json", report)
    write_json(out / "manifest.json", dict(manifest, status="complete", theta=result.theta, radius=result.radius,
                                           mccs_form=result.config.mccs_form, seed=result.config.seed))


def load_report(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "report.json"
    if not path.is_file():
        raise GancheckError(f"no report.json in {run_dir}; run `gancheck audit ... --out {run_dir}` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GancheckError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); re-run the audit") from None


#: Generator options that runs before the options were declared once recorded for every source (their
#: defaults, or settings now passed apart): dropped when such a run is reopened, so a source that
#: does not take them does not refuse the old run.
_LEGACY_GENERATOR_OPTIONS = {"timeout": None, "http_retries": None, "concurrency": 1, "token_env": "GANCHECK_HTTP_TOKEN"}


def stored_generator_options(config: dict) -> dict:
    """A manifest's generator options, as they are passed again to rebuild its generator."""
    return {k: v for k, v in (config.get("generator_options") or {}).items()
            if not (k in _LEGACY_GENERATOR_OPTIONS and (_LEGACY_GENERATOR_OPTIONS[k] is None or v == _LEGACY_GENERATOR_OPTIONS[k]))}


def open_run(run_dir: str | Path, device: str = "auto"):
    """Rebuild what a run used: ``(manifest, source, embedder)``; the source is prepared with the
    run's seed, so ``source.images(indices)`` regenerates any sample, anchor or mode."""
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise GancheckError(f"{run_dir} is not a gancheck run directory (no manifest.json); give the --out of an audit")
    try:
        manifest = json.loads(path.read_text())
        cfg = manifest["config"]
        source, embedder = build_inputs(
            cfg["generator"], cfg["embedder"], stored_generator_options(cfg), cfg.get("embedder_options"), device=device,
            batch_size=cfg.get("batch_size", BATCH_SIZE), calibrator=cfg.get("calibrator"), force=cfg.get("force", False),
            timeout=cfg.get("timeout"), retries=cfg.get("retries"))
    except (json.JSONDecodeError, KeyError) as exc:
        raise GancheckError(f"{path} is damaged ({type(exc).__name__}: {exc}); re-run the audit") from None
    source.prepare(cfg["seed"])
    return manifest, source, embedder
