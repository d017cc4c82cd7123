"""Calibration (Wu et al., section 3.2): change how latents are drawn so the dense modes found by
an audit thin out, without touching the generator.

    calibrate(run_dir, method)   fit on an audit run (:mod:`.fitdata`, :mod:`.build`), write the
                                 calibrator file, prove it by a re-audit (:mod:`.proof`)

The methods themselves are plug-ins in :mod:`gancheck.calibrators` (``gmm``: Alg. 1, ``is``:
Alg. 2, ``rejection``: descriptor space); the file format is docs/calibrator-format.md.
"""

from __future__ import annotations

from pathlib import Path

from gancheck.calibrate.build import build_calibrator
from gancheck.calibrate.fitdata import load_fit_data
from gancheck.calibrate.proof import prove
from gancheck.calibrators import METHODS
from gancheck.errors import GancheckError
from gancheck.files import write_json

__all__ = ["calibrate"]


def calibrate(run_dir: str | Path, method: str = "is", out: str | Path | None = None, modes: int = 1, r0: float | None = None,
              proof_dir: str | Path | None = None, overwrite: bool = False, device: str = "auto", progress=None, **options) -> dict:
    """Fit a ``method`` calibrator on the audit in ``run_dir``, write it to ``out`` (default
    ``RUN_DIR/calibrator-METHOD.safetensors``), re-audit it into ``proof_dir`` (default
    ``RUN_DIR/calibration-METHOD``) and return the before/after figures, also written there as
    calibration.json. ``options``: ``clusters``, ``max_draws`` (gmm), ``region`` (is).
    ``result["improved"]`` is False when the dense modes' share did not drop."""
    if method not in METHODS:
        raise GancheckError(f"--method must be one of {', '.join(METHODS.names())}, got {method!r}")
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / f"calibrator-{method}.safetensors"
    proof_dir = Path(proof_dir) if proof_dir is not None else run_dir / f"calibration-{method}"
    if out.exists() and not overwrite:
        raise GancheckError(f"{out} already exists; choose another --out or pass --overwrite to replace it")
    if out.is_dir():
        raise GancheckError(f"--out {out} is a directory; give a file name such as calibrator.safetensors")
    if any((proof_dir / f).exists() for f in ("manifest.json", "report.json")) and not overwrite:
        raise GancheckError(f"{proof_dir} already holds a run; choose another --proof-dir or pass --overwrite to replace it")
    data = load_fit_data(run_dir, modes=modes, r0=r0, device=device, progress=progress)
    header = build_calibrator(data, method, out, **options)
    result = prove(data, out, proof_dir, overwrite=overwrite, device=device, progress=progress)
    result["fit"] = header["fit"]
    result["params"] = header["params"]
    write_json(Path(proof_dir) / "calibration.json", result)
    return result
