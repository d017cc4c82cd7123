"""Fitting a calibrator on an audit run and writing its file."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from gancheck.calibrators.base import METHODS
from gancheck.calibrators.fileformat import FORMAT, FORMAT_VERSION, write_calibrator
from gancheck.calibration.fitdata import FitData
from gancheck.calibrators.sampling import MAX_ROUNDS, STREAM_BLOCK, STREAM_TAG
from gancheck.errors import GancheckError


def build_calibrator(data: FitData, method: str, out: str | Path, **options) -> dict:
    """Fit ``method`` on ``data``, write the calibrator file to ``out``; returns its header."""
    if method not in METHODS:
        raise GancheckError(f"--method must be one of {', '.join(METHODS.names())}, got {method!r}")
    cls = METHODS[method]
    params, tensors, figures = cls.fit(data, **options)
    accept = cls.fit_acceptance(data, tensors, params)
    if accept.mean() <= 1.0 / 1000:
        raise GancheckError(f"the {method} calibrator would keep only {accept.mean():.2e} of all draws; the dense modes cover nearly "
                            "everything: calibrate fewer --modes or a smaller --r0")
    dense = data.dense
    # On the fit set itself, so optimistic where the fit adapts to it (gmm cells, is regions): the
    # proof's re-audit measures the real figures.
    figures = dict(figures, fit_draws_per_sample=float(1.0 / accept.mean()), fit_dense_share_before=float(dense.mean()),
                   fit_dense_share_after=float((accept * dense).sum() / accept.sum()))
    tensors = dict(tensors, mode_vectors=np.asarray(data.mode_vectors, np.float32), mode_acceptance=np.asarray(data.mode_acceptance, np.float64))
    header = header_for(data, method, params, figures)
    write_calibrator(out, header, tensors)
    return header


def header_for(data: FitData, method: str, params: dict, figures: dict) -> dict:
    from gancheck.version import __version__

    cfg, report = data.config, data.report
    gen = data.source.describe()
    embedder = {"spec": cfg["embedder"], "options": cfg.get("embedder_options") or {}, "describe": data.manifest.get("embedder", {}),
                "theta": report["theta"], "no_face": data.no_face}
    counts = data.mode_counts
    return _jsonable({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": method,
        "latent": data.prior.to_dict(),
        "generator": {"sha256": gen.get("sha256"), "kind": gen.get("kind"), "path": gen.get("path"), "callable": gen.get("callable")},
        "embedder": embedder,
        "descriptor": embedder,  # the same, under its name before 0.2 (readers of format 1 find it there; dropped in 0.3)
        "dense_modes": [{"sample_index": int(m["sample_index"]), "neighbors_r0": int(c), "share_r0": float(c / data.n),
                         "run_neighbors": int(m["neighbors"]), "run_mccs": m.get("mccs"), "acceptance": float(p)}
                        for m, c, p in zip(data.modes, counts, data.mode_acceptance)],
        "r0": data.r0,
        "reference": {"count": data.reference_count, "share": data.reference_count / data.n, "ordinary_anchors": data.ordinary_anchors,
                      "definition": "mean N_r0 over the run's anchors farther than r0 from every dense mode"},
        "stream": {"rng": "PCG64", "seed_words": ["seed", "block", STREAM_TAG], "block": STREAM_BLOCK, "max_rounds": MAX_ROUNDS},
        "params": params,
        "fit": figures,
        "source_run": {"path": str(Path(data.run_dir).resolve()), "seed": data.seed, "n": data.n, "anchors": int(report["n_anchors"]),
                       "mccs_form": report["mccs_form"], "radius": report["radius"]},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "gancheck_version": __version__,
    })


def _jsonable(x):
    """numpy scalars and arrays as plain JSON values."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x
