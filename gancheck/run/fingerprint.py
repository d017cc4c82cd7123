"""A run's fingerprint: every input that can change one of its numbers, as flat named fields.

Files count by content (sha256), never by path: replacing ``d.onnx`` by another model under the
same name changes the fingerprint, moving the same model elsewhere does not. ``--resume`` continues
a run only on an identical fingerprint; ``compare`` and ``report --before`` compare the
``embedder.*`` and measurement fields of two runs. The fields are listed in docs/run-directory.md.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from pathlib import Path

from gancheck.files import file_sha256
from gancheck.version import STATISTICS_REVISION

#: Settings that change the figures (batch, chunk, thread and executor settings do not).
MEASUREMENT = ("seed", "n", "anchors", "theta", "radius", "mccs_form", "protocol", "top_k", "neighbors_k", "no_face", "on_nan",
               "shard_size", "save_embeddings")
#: Fields two runs must share for their figures to be comparable.
COMPARABLE_PREFIXES = ("statistics_revision", "embedder.", "theta", "radius", "mccs_form", "protocol")
_PATHY = ("path", "recognition", "model_dir", "model")


def content_hash(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, in sorted order)."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


#: Header keys of a calibrator file that record when, not what (they never change a sample).
_CALIBRATOR_VOLATILE = ("created",)


def calibrator_hash(path: str | Path) -> str:
    """sha256 of what a calibrator file samples: its header (which holds the tensors' own sha256)
    without the time it was written, so a refit that draws the same latents fingerprints the same."""
    from safetensors import safe_open

    from gancheck.calibrators.fileformat import METADATA_KEY

    try:
        with safe_open(str(path), "np") as f:
            header = json.loads((f.metadata() or {})[METADATA_KEY])
    except Exception:  # not a readable calibrator: its bytes stand for it (loading it fails loudly elsewhere)
        return file_sha256(path)
    kept = {k: v for k, v in header.items() if k not in _CALIBRATOR_VOLATILE} if isinstance(header, dict) else header
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def _callable_hash(spec: str) -> str:
    """sha256 of the source file of a ``pkg.mod:attr`` generator's module (the spec when it has none)."""
    module = sys.modules.get(spec.partition(":")[0])
    try:
        source = inspect.getsourcefile(module) if module is not None else None
    except TypeError:
        source = None
    return file_sha256(source) if source and Path(source).is_file() else f"spec:{spec}"


def _compact(value) -> str | int | float | bool | None:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def generator_fields(source, generator: str) -> dict:
    described = source.describe()
    path = Path(str(generator))
    content = described.get("sha256") or (content_hash(path) if path.exists() else _callable_hash(str(generator)))
    rest = {k: v for k, v in described.items() if k not in ("kind", "path", "sha256", "callable")}
    return {"generator.kind": described.get("kind"), "generator.content": content,
            **{f"generator.{k}": _compact(v) for k, v in sorted(rest.items())}}


def embedder_fields(embedder, options: dict | None) -> dict:
    """The embedder's name, the content hash of every model file or folder it names, its options."""
    described = dict(embedder.describe(), **{k: v for k, v in (options or {}).items() if v is not None})
    models, rest = [], {}
    for key, value in sorted(described.items()):
        if isinstance(value, str) and key != "name" and (key in _PATHY or "/" in value) and Path(value).exists():
            models.append(content_hash(value))
        elif key in ("workers", "threads", "device"):
            continue  # where it runs, not what it computes
        else:
            rest[key] = value
    return {"embedder.name": described.get("name"), "embedder.models": _compact(sorted(models)),
            "embedder.options": _compact({k: v for k, v in rest.items() if k != "name"})}


def upgraded(fingerprint: dict) -> dict:
    """A stored fingerprint in today's field names (runs written before 0.2 named the embedder's
    fields ``descriptor.*``), so that such a run still resumes and compares."""
    return {("embedder." + k[len("descriptor."):] if k.startswith("descriptor.") else k): v for k, v in fingerprint.items()}


def run_fingerprint(config, theta: float, radius: float, source, embedder, generator: str, embedder_options: dict | None,
                    calibrator_sha256: str | None) -> dict:
    """The fingerprint of an audit (an ordered dict of JSON scalars)."""
    settings = {k: getattr(config, k, None) for k in MEASUREMENT}
    settings.update(theta=float(theta), radius=float(radius))
    fields = {"statistics_revision": STATISTICS_REVISION, **generator_fields(source, generator), "calibrator": calibrator_sha256,
              **embedder_fields(embedder, embedder_options), **settings}
    return json.loads(json.dumps(fields, default=str))


def first_difference(old: dict, new: dict, keys=None) -> tuple[str, object, object] | None:
    """The first field (in ``new``'s order) whose value differs between two fingerprints."""
    names = list(new) + [k for k in old if k not in new]
    for key in names:
        if keys is not None and not key.startswith(keys):
            continue
        if old.get(key) != new.get(key):
            return key, old.get(key, "(absent)"), new.get(key, "(absent)")
    return None


def describe_difference(diff: tuple[str, object, object]) -> str:
    key, old, new = diff

    def short(v):
        text = str(v)
        return text if len(text) <= 72 else text[:69] + "..."

    return f"{key} differs (was {short(old)}, now {short(new)})"


def load_fingerprint(run_dir: str | Path) -> dict | None:
    """The fingerprint a run directory was written with (from its state.json), or None (older runs)."""
    try:
        fingerprint = json.loads((Path(run_dir) / "state.json").read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return upgraded(fingerprint) if isinstance(fingerprint, dict) else None


def measurement_difference(run_a: str | Path, run_b: str | Path) -> str | None:
    """How two runs' measurements differ (embedder model files and options, theta, r, MCCS form,
    statistics revision), as a phrase; None when they agree or a run predates fingerprints."""
    a, b = load_fingerprint(run_a), load_fingerprint(run_b)
    if a is None or b is None:
        return None
    diff = first_difference(a, b, COMPARABLE_PREFIXES)
    return describe_difference(diff) if diff else None
