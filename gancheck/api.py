"""The Python API behind every CLI command: ``import gancheck; gancheck.audit("model.onnx")``.

Each function runs the pipeline's steps in order (run -> analyse -> render) and returns plain data.
"""

from __future__ import annotations

from pathlib import Path

from gancheck.calibrate import calibrate as fit_and_prove
from gancheck.analysis.compare import compare_runs
from gancheck.analysis.gates import Gate, evaluate
from gancheck.analysis.report import enrich_report, merge_report
from gancheck.components import load_descriptor, sample_images
from gancheck.files import write_json
from gancheck.render.html import write_html
from gancheck.render.junit import gate_cases, write_junit
from gancheck.run.audit import audit_into
from gancheck.run.directory import load_report, open_run

__all__ = ["audit", "calibrate", "compare", "load_descriptor", "open_run", "report", "sample_images"]


def audit(generator: str, n: int = 10_000, anchors: int = 1_000, seed: int = 0, embedder: str = "pixel",
          out: str | Path | None = None, gates: list[Gate | str] | None = None, reference: str | Path | None = None,
          junit: str | Path | None = None, html: bool = True, device: str = "auto", **options) -> dict:
    """Audit ``generator`` and return the report dict (the content of report.json).

    ``options`` are :func:`gancheck.run.audit.audit_into`'s (overwrite, resume, threads, progress,
    generator_options, embedder_options, batch_size, calibrator, force, log, and the
    :class:`gancheck.run.config.AuditConfig` fields: theta, radius, mccs_form, ...). With ``out``
    the run directory is written in checkpointed shards and analysed; ``gates``
    (``"mccs.mean>0.45"``) are evaluated into ``report["gates"]``; ``reference`` (a folder of real
    images) adds precision, recall, density, coverage and the Fréchet distance; ``junit`` writes
    one JUnit test case per gate; ``html`` writes report.html.
    """
    gates = [g if isinstance(g, Gate) else Gate.parse(g) for g in gates or []]
    report = audit_into(generator, out, n=n, anchors=anchors, seed=seed, embedder=embedder, device=device, **options)
    if out is not None:
        report = merge_report(report, enrich_report(out, reference_dir=reference, device=device))
    if gates:
        report["gates"] = evaluate(report, gates)  # after enrichment, so confidence bounds can be gated
    if out is not None:
        write_json(Path(out) / "report.json", report)
        if html:
            write_html(out)
    if junit:
        write_junit(junit, "gancheck.audit", gate_cases(report.get("gates", [])), {"generator": str(generator)})
    return report


def calibrate(run_dir: str | Path, method: str = "is", device: str = "auto", **options) -> dict:
    """Fit a ``method`` calibrator on the audit in ``run_dir``, prove it by a re-audit and return
    the before/after figures (see :func:`gancheck.calibrate.calibrate`); the re-audit's run
    directory is analysed and rendered like any audit's."""
    result = fit_and_prove(run_dir, method=method, device=device, **options)
    proof = Path(result["proof_run"])
    write_json(proof / "report.json", merge_report(load_report(proof), enrich_report(proof, device=device)))
    write_html(proof, before=run_dir)
    return result


def report(run_dir: str | Path, before: str | Path | None = None, reference: str | Path | None = None,
           out: str | Path | None = None, gates: list[Gate | str] | None = None, junit: str | Path | None = None) -> dict:
    """Re-render ``run_dir``'s report.html (or ``out``) and gate the run; returns
    ``{"html": path, "gates": results}``. report.json is not changed."""
    gates = [g if isinstance(g, Gate) else Gate.parse(g) for g in gates or []]
    extra = enrich_report(run_dir, reference_dir=reference)
    results = evaluate(merge_report(load_report(run_dir), extra), gates) if gates else []
    if gates:
        extra["gates"] = results  # the page's verdict is against these gates
    path = write_html(run_dir, before=before, out=out, extra=extra)
    if junit is not None:
        write_junit(junit, "gancheck.report", gate_cases(results), {"run": Path(run_dir).resolve(), "report_html": path.resolve()})
    return {"html": path, "gates": results}


def compare(run_a: str | Path, run_b: str | Path, **options) -> dict:
    """The change of every key figure from run A to run B, with gates (:func:`gancheck.analysis.compare.compare_runs`)."""
    return compare_runs(run_a, run_b, **options)
