"""The Python API behind every CLI command: ``import gancheck; gancheck.audit("model.onnx")``.

Each function runs the pipeline's steps in order (run -> analyse -> render) and returns plain data.
"""

from __future__ import annotations

from pathlib import Path

from gancheck.calibrate import calibrate as fit_and_prove
from gancheck.analysis.compare import compare_runs
from gancheck.analysis.gates import Gate, evaluate
from gancheck.analysis.report import enrich_report, merge_report
from gancheck.analysis.verdict import before_after, with_verdict
from gancheck.components import load_descriptor, sample_images
from gancheck.files import write_json
from gancheck.render.html import write_html
from gancheck.render.junit import gate_cases, write_junit
from gancheck.run.audit import audit_into
from gancheck.errors import GancheckError
from gancheck.run.directory import load_report, open_run
from gancheck.run.sweep import class_row, parse_sweep, sweep_table
from gancheck.render.sweep import write_sweep_html
from gancheck.run.fingerprint import measurement_difference

__all__ = ["audit", "calibrate", "compare", "coverage", "export_descriptor", "ldr", "load_descriptor", "open_run", "report",
           "sample_images", "sweep"]


def export_descriptor(name: str, out: str | Path, model: str | Path | None = None) -> Path:
    """Write descriptor ``name``'s network as an ONNX file ``out``, built from the local model file
    (``dlib``: dlib's ResNet from face-recognition-models' .dat, or the .dat given as ``model``)."""
    if name != "dlib":
        raise GancheckError(f"cannot export descriptor {name!r}: only dlib's network is converted; use: export-descriptor dlib")
    from embedders.dlib_onnx import export_descriptor as export_dlib

    return export_dlib(out, model)


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
    allow_inconclusive = options.pop("allow_inconclusive", False)

    def finish(work: Path, report: dict) -> dict:
        """Analyse and render the finished run before it is moved into place (run/audit.py): moving
        it is the last step, so a run directory always holds its whole report.json and report.html."""
        report = with_verdict(merge_report(report, enrich_report(work, reference_dir=reference, device=device)), work)
        if gates:  # after enrichment, so confidence bounds (and verdict.collapse) can be gated
            report["gates"] = evaluate(report, gates, allow_inconclusive=allow_inconclusive)
        report = with_verdict(report, work)  # again: a failed gate decides the status
        write_json(Path(work) / "report.json", report)
        if html:
            write_html(work, shown_dir=out)
        return report

    report = audit_into(generator, out, n=n, anchors=anchors, seed=seed, embedder=embedder, device=device,
                        finish=finish if out is not None else None, **options)
    if out is None and gates:
        report["gates"] = evaluate(report, gates, allow_inconclusive=allow_inconclusive)
    if junit:
        write_junit(junit, "gancheck.audit", gate_cases(report.get("gates", [])), {"generator": str(generator)})
    return report


def calibrate(run_dir: str | Path, method: str = "is", device: str = "auto", **options) -> dict:
    """Fit a ``method`` calibrator on the audit in ``run_dir``, prove it by a re-audit and return
    the before/after figures (see :func:`gancheck.calibrate.calibrate`), with ``change``: what
    changed, led by the targeted modes (:func:`gancheck.analysis.verdict.before_after`); the
    re-audit's run directory is analysed and rendered like any audit's."""
    result = fit_and_prove(run_dir, method=method, device=device, **options)
    proof = Path(result["proof_run"])
    after = with_verdict(merge_report(load_report(proof), enrich_report(proof, device=device)), proof)
    write_json(proof / "report.json", after)
    write_html(proof, before=run_dir)
    return dict(result, change=before_after(run_dir, proof, load_report(run_dir), after))


def report(run_dir: str | Path, before: str | Path | None = None, reference: str | Path | None = None,
           out: str | Path | None = None, gates: list[Gate | str] | None = None, junit: str | Path | None = None,
           overwrite: bool = False, force: bool = False, allow_inconclusive: bool = False) -> dict:
    """Re-render ``run_dir``'s report.html (or ``out``) and gate the run; returns
    ``{"html": path, "gates": results, "verdict": verdict}``. Of report.json only ``verdict`` is
    rewritten: the verdict of this report, against these gates."""
    gates = [g if isinstance(g, Gate) else Gate.parse(g) for g in gates or []]
    if out is not None and Path(out).exists() and not overwrite:
        raise GancheckError(f"{out} already exists; choose another --out or pass --overwrite to replace it")
    differs = measurement_difference(before, run_dir) if before is not None else None
    if differs and not force:
        raise GancheckError(f"--before {before} was measured differently from {run_dir} ({differs}); audit both the same "
                            "way, or pass --force to show them side by side anyway")
    extra = enrich_report(run_dir, reference_dir=reference)
    stored = load_report(run_dir)
    merged = with_verdict(merge_report(stored, extra), run_dir)
    results = evaluate(merged, gates, allow_inconclusive=allow_inconclusive) if gates else []
    if gates:
        extra["gates"] = results  # the page's verdict is against these gates
    extra["verdict"] = with_verdict(merge_report(stored, extra), run_dir)["verdict"]
    if stored.get("verdict") != extra["verdict"]:
        try:
            write_json(Path(run_dir) / "report.json", dict(stored, verdict=extra["verdict"]))
        except OSError:
            pass  # a read-only run (rendered elsewhere with --out) keeps its report.json; the page shows the verdict
    path = write_html(run_dir, before=before, out=out, extra=extra)
    if junit is not None:
        write_junit(junit, "gancheck.report", gate_cases(results), {"run": Path(run_dir).resolve(), "report_html": path.resolve()})
    return {"html": path, "gates": results, "verdict": extra["verdict"]}


def compare(run_a: str | Path, run_b: str | Path, **options) -> dict:
    """The change of every key figure from run A to run B, with gates (:func:`gancheck.analysis.compare.compare_runs`)."""
    return compare_runs(run_a, run_b, **options)


def sweep(generator: str, sweep: str, out: str | Path | None = None, gates: list[Gate | str] | None = None,
          junit: str | Path | None = None, **options) -> dict:
    """Audit a conditional generator class by class (``sweep``: ``"label=onehot:10"`` or
    ``"label=values:0,1,2"``): one run per class in ``out/class-LABEL`` with the same seeds and
    descriptor, then the ranking table (:func:`gancheck.run.sweep.sweep_table`), written to
    ``out/sweep.json`` and ``out/report.html``; ``gates`` are evaluated on the table
    (``"max_class.mccs.mean>0.3"``, ``"classes.3.worst_mode.mccs>0.5"``). ``options`` are :func:`audit`'s."""
    import pyarrow.parquet as pq

    name, values = parse_sweep(sweep)
    if out is None:
        raise GancheckError("--sweep needs a run directory (--out) for its classes' runs")
    gates = [g if isinstance(g, Gate) else Gate.parse(g) for g in gates or []]
    generator_options = dict(options.pop("generator_options", None) or {})
    fixed = dict(generator_options.get("inputs") or {})
    if name in fixed:
        raise GancheckError(f"--sweep sets input {name!r}, which --input also fixes; drop one of them")
    rows, scores = [], {}
    for value in values:
        run = Path(out) / f"class-{value.label}"
        report = audit(generator, out=run, generator_options=dict(generator_options, inputs=dict(fixed, **{name: value.text})), **options)
        rows.append(class_row(value.label, value.text, report))
        scores[value.label] = pq.read_table(run / "anchors.parquet", columns=["mccs"]).column("mccs").to_numpy()
    table = sweep_table(name, rows)
    if gates:
        table["gates"] = evaluate(table, gates)
    write_json(Path(out) / "sweep.json", table)
    write_sweep_html(out, table, scores)
    if junit:
        write_junit(junit, "gancheck.sweep", gate_cases(table.get("gates", [])), {"generator": str(generator)})
    return table


def coverage(generator: str, reference: str | Path, n: int = 10_000, seed: int = 0, embedder: str = "pixel",
             out: str | Path | None = None, html: bool = True, **options) -> dict:
    """Which kinds of real image ``generator`` does not make: the reference folder's descriptors are
    binned, generated images assigned, and each bin's shares compared (NDB/K, dropped bins); with
    ``attributes="onnx:PATH"`` and ``attribute_names`` also the classifier's attribute frequencies
    (:func:`gancheck.analysis.coverage.measure_coverage`; ``options`` are its keywords). With ``out``
    writes coverage.json and (``html``) coverage.html there, each whole or not at all."""
    from gancheck.analysis.coverage import measure_coverage
    from gancheck.errors import GancheckError
    from gancheck.render.coverage import write_coverage_html

    result = measure_coverage(generator, reference, n=n, seed=seed, embedder=embedder, **options)
    reference_dir = result.pop("_reference_dir")
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise GancheckError(f"--out {out} is a file; give a folder for coverage.json and coverage.html")
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "coverage.json", result)
        if html:
            result["html"] = str(write_coverage_html(result, reference_dir, out / "coverage.html"))
    return result


def ldr(discriminators: list[str | Path], data: str | Path, out: str | Path | None = "ldr.parquet",
        weights_out: str | Path | None = None, top: int = 16, html: str | Path | None = None, **options) -> dict:
    """The Self-Diagnosing GAN's view of a training set: each image's log density ratio under each
    discriminator checkpoint, LDRM, LDRV and the discrepancy score (:func:`gancheck.analysis.ldr.diagnose`;
    ``options``: k, input_range, output, device, threads, batch_size, progress). Writes the per-image
    table to ``out`` (Parquet) and, with ``weights_out``, phase 2's per-image sampling weights
    (CSV when it ends in .csv, else Parquet), and with ``html`` a page of the ``top`` most
    under-represented images. Returns the summary with those images (highest score first)."""
    import numpy as np

    from gancheck.analysis.ldr import diagnose, sampling_weights
    from gancheck.errors import GancheckError

    for path, flag in ((out, "--out"), (weights_out, "--weights-out"), (html, "--html")):
        if path is not None and Path(path).is_dir():
            raise GancheckError(f"{flag} {path} is a folder; give a file name such as ldr.parquet")
    d = diagnose(discriminators, data, **options)
    order = np.lexsort((np.arange(len(d["score"])), -d["score"]))
    columns = {"file": d["files"], "ldrm": d["ldrm"], "ldrv": d["ldrv"], "score": d["score"]}
    columns.update({f"ldr_{t + 1:02d}": row for t, row in enumerate(d["ldr"])})
    weights, floor = sampling_weights(d["score"])
    if out is not None:
        _write_table(out, columns)
    if weights_out is not None:
        _write_table(weights_out, {"file": d["files"], "weight": weights})
    summary = {"format": "gancheck-ldr", "data": str(Path(data).resolve()), "images": len(d["files"]), "checkpoints": len(d["ldr"]),
               "k": d["k"], "discriminators": d["discriminators"], "out": str(out) if out is not None else None,
               "weights_out": str(weights_out) if weights_out is not None else None, "weight_floor": floor,
               "score": {"mean": float(d["score"].mean()), "max": float(d["score"].max()), "min": float(d["score"].min())},
               "top": [{"file": d["files"][i], "ldrm": float(d["ldrm"][i]), "ldrv": float(d["ldrv"][i]), "score": float(d["score"][i]),
                        "weight": float(weights[i])} for i in order[: max(int(top), 0)]]}
    if html is not None:
        from gancheck.render.ldr import write_ldr_html

        summary["html"] = str(write_ldr_html(summary, data, html))
    return summary


def _write_table(path: str | Path, columns: dict) -> Path:
    """``columns`` (name -> values) as one file, atomically: CSV when ``path`` ends in .csv, else Parquet."""
    import io

    import pyarrow as pa

    from gancheck.files import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(columns)
    buf = io.BytesIO()
    if path.suffix.lower() == ".csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, buf)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, buf)
    atomic_write(path, buf.getvalue())
    return path
