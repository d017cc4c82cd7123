"""Opening ONNX files with clear errors, on CUDA when onnxruntime-gpu and a GPU are present."""

from __future__ import annotations

import os
from pathlib import Path

from gancheck.errors import GancheckError


def providers_for(device: str) -> list[str]:
    import onnxruntime as ort

    have = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda" and "CUDAExecutionProvider" not in have:
        raise GancheckError(
            "--device cuda asked for, but onnxruntime has no CUDA provider; "
            "install the gpu extra (pip install 'gancheck[gpu]') or use --device cpu"
        )
    if "CUDAExecutionProvider" in have:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(path: str | Path, device: str = "auto", threads: int | None = None, what: str = "model"):
    """An ``onnxruntime.InferenceSession`` for ``path``; a one-line GancheckError if it cannot be."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise GancheckError(f"{what} file not found: {path} (check the path)")
    # onnxruntime's own log lines (its default logger writes even before a session's options apply)
    # would break the one-line error promise; GANCHECK_DEBUG=1 (``--debug``) shows its warnings.
    ort.set_default_logger_severity(3 if os.environ.get("GANCHECK_DEBUG", "") in ("", "0") else 1)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers_for(device))
    except GancheckError:
        raise
    except Exception as exc:  # onnxruntime raises several types for unreadable models
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GancheckError(f"{path} is not a loadable ONNX {what} ({first[:200]}); export it again with torch.onnx.export or check the file") from None
