"""Calibration (Wu et al., section 3.2): change how latents are drawn so the dense modes found by
an audit thin out, without touching the generator.

    calibrate(run_dir, method)   fit on an audit run (:mod:`.fitdata`, :mod:`.build`), write the
                                 calibrator file, prove it by a re-audit (:mod:`.proof`), draw the
                                 re-audit's page beside the run

The methods themselves are plug-ins in :mod:`gancheck.calibrators` (``gmm``: Alg. 1, ``is``:
Alg. 2, ``rejection``: descriptor space); the file format is docs/calibrator-format.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gancheck.calibration.budget import spend_budget
from gancheck.calibration.build import build_calibrator
from gancheck.calibration.fitdata import load_fit_data, predict_outlook
from gancheck.calibration.proof import prove
from gancheck.analysis.report import load_run
from gancheck.analysis.verdict import before_after
from gancheck.calibrators import METHODS
from gancheck.calibrators.regions import split_of
from gancheck.errors import GancheckError
from gancheck.files import kept_until_replaced, write_json
from gancheck.formatting import format_share
from gancheck.render.html import write_html

__all__ = ["calibrate", "export_decision"]


def check_budget_and_export(method: str, budget, export_onnx, learns: bool) -> None:
    """Refuse a budget below 1 and an export this method cannot make, before anything is written."""
    if budget is not None and int(budget) < 1:
        raise GancheckError(f"--budget must be at least 1 extra sample to describe, got {budget}; omit it for the default (the audit's |C|)")
    if export_onnx is not None:
        if not learns:
            raise GancheckError(f"--export-onnx needs a calibrator that decides on the latent alone with a learned region (is with --region "
                                f"auto or a family, gmm with --region mixture); the {method} calibrator asked for has no such graph")
        if Path(export_onnx).is_dir():
            raise GancheckError(f"--export-onnx {export_onnx} is a directory; give a file name such as sampler.onnx")


def check_method_options(method: str, options: dict) -> None:
    """Refuse, before anything is fitted, an option the chosen method does not take (a method's
    options are the named keywords of its ``fit``)."""
    import inspect

    takes = [name for name, p in inspect.signature(METHODS[method].fit).parameters.items()
             if name not in ("cls", "data") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    for name, value in options.items():
        if value is not None and name not in takes:
            own = ", ".join("--" + t.replace("_", "-") for t in takes) or "none"
            raise GancheckError(f"--{name.replace('_', '-')} does not apply to --method {method} (its options: {own}); drop it")


def export_decision(calibrator_path: str | Path, onnx_path: str | Path) -> Path:
    """Write a calibrator's decision graph (latent ``z`` float32 (N, dim) in, ``keep_probability``
    (N,) out) as a standalone ONNX file, to ship next to the generator."""
    from gancheck.calibrators import load_calibrator
    from gancheck.files import atomic_write

    cal = load_calibrator(calibrator_path)
    if "decision_onnx" not in cal.t:
        raise GancheckError(f"{calibrator_path} ({cal.method}, region {cal.header['params'].get('region') or cal.header['params'].get('kind')}) "
                            "stores no decision graph; rebuild it with --method is or gmm and the default --region")
    atomic_write(onnx_path, cal.t["decision_onnx"].tobytes())
    return Path(onnx_path)


def export_embedder_graph(spec: str, screen_path: Path) -> dict:
    """The embedder's network as ONNX next to an exported cascade screen (``NAME-embedder.onnx``),
    where the embedder has an ONNX export (dlib); else a note on what the deployment runs instead."""
    if spec.split(":")[0] != "dlib":
        return {"exported_embedder_onnx": None, "embedder_note": f"the embedder {spec!r} has no ONNX export here; a deployment runs it "
                                                                  f"as gancheck.load_embedder({spec!r}) does"}
    from embedders.dlib_onnx import export_descriptor

    path = export_descriptor(screen_path.with_name(screen_path.stem + "-embedder.onnx"))
    return {"exported_embedder_onnx": str(path), "embedder_note": "dlib's network (150x150 RGB chips in, 128-value descriptors out); "
                                                                  "the face alignment the run used runs before it"}


def advice(method: str, spent: dict, result: dict) -> str:
    """One line on what would help when the excess was not cut significantly."""
    if method == "rejection":
        return "the modes are not denser than an ordinary identity at this r0: check --r0 or audit with a larger --n"
    if method == "drs":
        return ("drs follows the discriminator, not the dense modes: judge it by what it moves (gancheck coverage --attributes on "
                "its samples); a larger --max-draws lets it reject more")
    regions = result.get("region") or []
    recall = min((r.get("recall") or 0.0) for r in regions) if regions else None
    what = f"its latent region recalls only {format_share(recall)} of the mode's held-out samples; " if recall is not None else ""
    return (f"{what}what would help: a larger --budget (this fit described {spent.get('budget', 0):,} extra samples), a larger --max-draws, "
            "the other latent method, or --method rejection (exact, but it needs the embedder at sampling time)")


#: regions predicted to cut less than this share of the modes' excess are said before the proof's re-audit
HOPELESS_CUT = 0.25


def fit_forecast(fit: dict, held_in_mode: np.ndarray) -> str | None:
    """A warning, before the proof spends its embedder calls, when the fitted regions are predicted
    (on validation samples no model trained on; ``held_in_mode`` of them in each mode) to cut
    little of the modes' excess together, else None. One weak mode among several is not enough:
    the proof judges the modes together."""
    chosen = fit.get("thresholds") or {}
    cut = chosen.get("validation_excess_cut")
    held = np.asarray(held_in_mode, np.float64)
    if not cut or held.sum() == 0:
        return None
    total = float(np.dot(cut, held) / held.sum())  # each mode's cut, weighted by its share of the in-mode samples
    if total >= HOPELESS_CUT:
        return None
    limit = {"frechet": "the off-mode Fréchet limit", "max_draws": "--max-draws"}.get(chosen.get("limited_by"), "the model")
    which = (f"the fitted regions are predicted to remove only {format_share(total)} of the modes' excess (mode {int(np.argmin(cut)) + 1} "
             f"least: {format_share(min(cut))})" if len(cut) > 1 else f"the fitted region is predicted to remove only {format_share(total)} of its excess")
    return (f"on {int(held.sum())} validation samples in the modes, {which} (held back by {limit}); the proof's re-audit will likely not show "
            "a significant drop. What would help: a larger --budget, the other latent method, or --method rejection (Ctrl-C now to change course)")


def embedder_calls(data, spent: dict, result: dict) -> dict:
    """Generator + embedder calls paid: the audit's, the budget's, the proof's."""
    audit = int(data.config["n"]) + int(data.config["anchors"])
    proof = result["cost"].get("proof_embedder_calls", 0)
    return {"audit": audit, "budget": int(spent.get("budget", 0)), "proof": int(proof), "calibration": int(spent.get("budget", 0))}


def calibrate(run_dir: str | Path, method: str = "is", out: str | Path | None = None, modes: int = 1, r0: float | None = None,
              proof_dir: str | Path | None = None, overwrite: bool = False, device: str = "auto", progress=None, resume: bool = False,
              log=None, **options) -> dict:
    """Fit a ``method`` calibrator on the audit in ``run_dir``, write it to ``out`` (default
    ``RUN_DIR/calibrator-METHOD.safetensors``), re-audit it into ``proof_dir`` (default
    ``RUN_DIR/calibration-METHOD``) and return the before/after figures, also written there as
    calibration.json; ``result["change"]``: what changed, led by the targeted modes
    (:func:`gancheck.analysis.verdict.before_after`). ``options``: ``clusters``, ``max_draws`` (gmm), ``region`` (is).
    ``result["improved"]`` is False when the dense modes' share did not drop.

    A fit the run's own counts predict to fail (:func:`.fitdata.fit_outlook`) is said to ``log`` in
    seconds, before the long part, with what would work; it is also kept in ``result["notes"]``."""
    if method not in METHODS:
        raise GancheckError(f"--method must be one of {', '.join(METHODS.names())}, got {method!r}")
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / f"calibrator-{method}.safetensors"
    proof_dir = Path(proof_dir) if proof_dir is not None else run_dir / f"calibration-{method}"
    if out.exists() and not (overwrite or resume):
        raise GancheckError(f"{out} already exists; choose another --out, pass --overwrite to replace it, or --resume to finish a stopped calibration")
    if out.is_dir():
        raise GancheckError(f"--out {out} is a directory; give a file name such as calibrator.safetensors")
    if any((proof_dir / f).exists() for f in ("manifest.json", "report.json")) and not (overwrite or resume):
        raise GancheckError(f"{proof_dir} already holds a run; choose another --proof-dir or pass --overwrite to replace it")
    budget, export_onnx = options.pop("budget", None), options.pop("export_onnx", None)
    check_method_options(method, options)
    METHODS[method].check_options(**options)
    learns = METHODS[method].learns_from_budget(**options)
    check_budget_and_export(method, budget, export_onnx, learns)
    outlook = predict_outlook(run_dir, method, modes=modes, r0=r0, region=options.get("region") or ("auto" if method == "is" else "linear"))
    if outlook and log is not None:
        log(f"warning: {outlook}")
    data = load_fit_data(run_dir, modes=modes, r0=r0, device=device, progress=progress)
    spent = spend_budget(data, data.n if budget is None else int(budget), progress) if learns else {"budget": 0, "described": 0}
    with kept_until_replaced(out):  # an old calibrator file comes back if the fit or its proof fails
        header = build_calibrator(data, method, out, **options)
        early = fit_forecast(header["fit"], data.near[split_of(data.indices) == 1].sum(axis=0))
        if early and log is not None:
            log(f"warning: {early}")
        result, proof = prove(data, out, proof_dir, overwrite=overwrite, device=device, progress=progress, resume=resume)
        result["fit"] = header["fit"]
        result["params"] = header["params"]
        result["budget"] = spent
        if outlook:
            result.setdefault("notes", []).append(outlook)
        result["advice"] = advice(method, spent, result)
        result["cost"]["embedder_calls"] = embedder_calls(data, spent, result)
        result["cost"]["descriptor_calls"] = result["cost"]["embedder_calls"]  # its name before 0.2, kept for one release
        if export_onnx is not None:
            result["exported_onnx"] = str(export_decision(out, export_onnx))
            if METHODS[method].needs_generator:
                result.update(export_embedder_graph(data.config["embedder"], Path(export_onnx)))
        write_json(Path(proof_dir) / "calibration.json", result)
    result["change"] = before_after(run_dir, proof_dir, data.report, proof.report)
    write_html(Path(proof_dir) / "report.html", proof.analysis, proof.source, before=load_run(run_dir), change=result["change"])
    return result
