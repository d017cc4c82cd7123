"""The calibrator file: one safetensors file, tensors plus a JSON header, no pickle.

The complete specification is docs/calibrator-format.md. The header is the JSON string stored
under the safetensors metadata key ``gancheck``; ``tensors_sha256`` in it guards the tensor bytes,
which safetensors itself does not check, so a damaged file is refused instead of sampling wrongly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from gancheck.errors import GancheckError
from gancheck.sources.latents import LatentPrior

FORMAT = "gancheck-calibrator"
FORMAT_VERSION = 1
METADATA_KEY = "gancheck"
#: Tensors every method's file holds; each method adds its own (see ``required_tensors``).
COMMON_TENSORS = ("mode_vectors", "mode_acceptance")
_HEADER_KEYS = ("format", "format_version", "method", "latent", "generator", "dense_modes", "r0", "stream", "params", "tensors_sha256")


def tensors_sha256(tensors: dict[str, np.ndarray]) -> str:
    """sha256 of every tensor's raw little-endian C-order bytes, concatenated in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def write_calibrator(path: str | Path, header: dict, tensors: dict[str, np.ndarray]) -> Path:
    """Write ``tensors`` with ``header`` (the checksum is added here) atomically to ``path``."""
    from safetensors.numpy import save

    from gancheck.files import atomic_write

    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    header = dict(header, tensors_sha256=tensors_sha256(tensors))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, save(tensors, metadata={METADATA_KEY: json.dumps(header, sort_keys=True, allow_nan=False)}))
    return path


def read_calibrator(path: str | Path, required_tensors: dict[str, tuple[str, ...]]) -> tuple[dict, dict[str, np.ndarray]]:
    """``(header, tensors)`` of a calibrator file, refused with a one-line reason when it is not a
    complete, undamaged gancheck calibrator. ``required_tensors`` maps method -> tensor names."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise GancheckError(f"calibrator file not found: {path}; give the --out file of `gancheck calibrate`")
    damaged = f"{path} is not a usable calibrator file"
    try:
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for truncated or garbled files
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise GancheckError(f"{damaged} (damaged or truncated: {reason}); re-run gancheck calibrate or copy the file again") from None
    if METADATA_KEY not in metadata:
        raise GancheckError(f"{damaged} (a safetensors file without a gancheck header); give a file written by gancheck calibrate")
    try:
        header = json.loads(metadata[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise GancheckError(f"{damaged} (its header is not valid JSON: {exc.msg}); re-run gancheck calibrate") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise GancheckError(f"{damaged} (header format is {header.get('format') if isinstance(header, dict) else None!r}, expected {FORMAT!r}); give a file written by gancheck calibrate")
    if header.get("format_version") != FORMAT_VERSION:
        raise GancheckError(f"{path} is calibrator format version {header.get('format_version')}, this gancheck reads version {FORMAT_VERSION}; upgrade gancheck or rebuild the calibrator")
    missing = [k for k in _HEADER_KEYS if k not in header] + ([] if "embedder" in header or "descriptor" in header else ["embedder"])
    if missing:
        raise GancheckError(f"{damaged} (header lacks {', '.join(missing)}); re-run gancheck calibrate")
    method = header["method"]
    if method not in required_tensors:
        raise GancheckError(f"{path} uses calibration method {method!r}, unknown to this gancheck (it knows {', '.join(required_tensors)}); upgrade gancheck")
    absent = [k for k in COMMON_TENSORS + required_tensors[method] if k not in tensors]
    if absent:
        raise GancheckError(f"{damaged} (tensor {', '.join(absent)} missing for method {method}); re-run gancheck calibrate")
    if tensors_sha256(tensors) != header["tensors_sha256"]:
        raise GancheckError(f"{damaged} (its tensors do not match the checksum in its header: the file is corrupt); re-run gancheck calibrate or copy the file again")
    try:
        LatentPrior.from_dict(header["latent"])
    except (KeyError, TypeError, ValueError, GancheckError) as exc:
        raise GancheckError(f"{damaged} (latent description {header['latent']!r} is invalid: {exc}); re-run gancheck calibrate") from None
    n_modes = len(header["dense_modes"])
    acc = tensors["mode_acceptance"]
    if acc.shape != (n_modes,) or tensors["mode_vectors"].shape[0] != n_modes or not np.all((acc >= 0) & (acc <= 1)):
        raise GancheckError(f"{damaged} (mode tensors disagree with its {n_modes} dense modes, or an acceptance lies outside [0, 1]); re-run gancheck calibrate")
    for name, t in tensors.items():
        if t.dtype.kind == "f" and not np.all(np.isfinite(t)):
            raise GancheckError(f"{damaged} (tensor {name} holds NaN or Inf); re-run gancheck calibrate")
    return header, tensors
