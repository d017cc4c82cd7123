"""The Python API: every command of the CLI is a function here with the same name, and
``gancheck.X`` is ``gancheck.api.X`` (``import gancheck; gancheck.audit("model.onnx")``).

Each function runs the pipeline's steps in order and returns plain data; the CLI only parses and
prints.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from embedders import load_embedder
from gancheck.analysis.compare import compare_runs
from gancheck.analysis.gates import Gate, evaluate
from gancheck.analysis.ranking import class_draws, class_row, sweep_table
from gancheck.analysis.report import analyse, load_run
from gancheck.audits import audit, run_audit
from gancheck.calibration import calibrate
from gancheck.errors import GancheckError
from gancheck.files import write_json
from gancheck.inputs import sample_images
from gancheck.options import parse_pairs
from gancheck.render.html import write_html
from gancheck.render.junit import gate_cases, write_junit
from gancheck.render.sweep import write_sweep_html
from gancheck.run.directory import load_report, open_run
from gancheck.run.fingerprint import measurement_difference
from gancheck.run.sweep import parse_sweep
from gancheck.sources.planted import DEMO_MODEL

__all__ = ["audit", "calibrate", "compare", "coverage", "demo", "export_embedder", "ldr", "leakage", "load_embedder", "open_run", "report",
           "sample", "sample_images", "sweep", "theta"]


def export_embedder(name: str, out: str | Path, model: str | Path | None = None) -> Path:
    """Write embedder ``name``'s network as an ONNX file ``out``, built from the local model file
    (``dlib``: dlib's ResNet from face-recognition-models' .dat, or the .dat given as ``model``)."""
    if name != "dlib":
        raise GancheckError(f"cannot export embedder {name!r}: only dlib's network is converted; use: export-embedder dlib")
    from embedders.dlib_onnx import export_descriptor as export_dlib

    return export_dlib(out, model)


def export_descriptor(name: str, out: str | Path, model: str | Path | None = None) -> Path:
    """Deprecated name of :func:`export_embedder` (kept for one release)."""
    warnings.warn("gancheck.export_descriptor is now gancheck.export_embedder", DeprecationWarning, stacklevel=2)
    return export_embedder(name, out, model)


def load_descriptor(spec: str, **options):
    """Deprecated name of :func:`load_embedder` (kept for one release)."""
    warnings.warn("gancheck.load_descriptor is now gancheck.load_embedder", DeprecationWarning, stacklevel=2)
    return load_embedder(spec, **options)


def demo(out: str | Path = "gancheck-demo", n: int | str = 20_000, anchors: int | str = 1_000, **options) -> dict:
    """Audit the generator that ships with the package (6% of its draws collapse onto one image)."""
    return audit(str(DEMO_MODEL), out, n=n, anchors=anchors, **options)


def theta(pairs_dir: str | Path, embedder: str = "dlib", **options) -> dict:
    """Estimate an embedder's theta and r from labelled image pairs (:func:`gancheck.analysis.thresholds.estimate_from_folder`;
    ``options``: align, insightface_dir, device, threads)."""
    from gancheck.analysis.thresholds import build_embedder, estimate_from_folder

    model = build_embedder(embedder, options.get("align"), options.get("insightface_dir"), options.get("device", "auto"), options.get("threads"))
    return estimate_from_folder(pairs_dir, model)


def sample(generator: str, out: str | Path = "samples.png", n: int = 64, columns: int | None = None, **options) -> Path:
    """Write a PNG grid of samples ``0..n-1`` of the (calibrated) generator; ``options`` are
    :func:`gancheck.inputs.sample_images`'s."""
    from gancheck.render.images import save_grid

    return save_grid(sample_images(generator, n=n, **options), out, columns)


def report(run_dir: str | Path, before: str | Path | None = None, reference: str | Path | None = None,
           out: str | Path | None = None, gates: list[Gate | str] | None = None, junit: str | Path | None = None,
           overwrite: bool = False, force: bool = False, allow_inconclusive: bool = False, device: str = "auto") -> dict:
    """Re-render ``run_dir``'s report.html (or ``out``) and gate the finished run; returns
    ``{"html": path, "gates": results, "verdict": verdict}``. Of report.json only ``verdict`` is
    rewritten: the verdict of this report, against these gates."""
    gates = [g if isinstance(g, Gate) else Gate.parse(g) for g in gates or []]
    if out is not None and Path(out).exists() and not overwrite:
        raise GancheckError(f"{out} already exists; choose another --out or pass --overwrite to replace it")
    differs = measurement_difference(before, run_dir) if before is not None else None
    if differs and not force:
        raise GancheckError(f"--before {before} was measured differently from {run_dir} ({differs}); audit both the same "
                            "way, or pass --force to show them side by side anyway")
    run = load_run(run_dir)
    source, embedder = _reopen(run_dir, device)
    analysis = analyse(run, reference_dir=reference, embedder=embedder, gates=gates, allow_inconclusive=allow_inconclusive, device=device)
    verdict = analysis.report["verdict"]
    if run.report.get("verdict") != verdict:
        try:
            write_json(Path(run_dir) / "report.json", dict(run.report, verdict=verdict))
        except OSError:
            pass  # a read-only run (rendered elsewhere with --out) keeps its report.json; the page shows the verdict
    change = None
    if before is not None:
        from gancheck.analysis.verdict import before_after

        change = before_after(before, run_dir, load_report(before), analysis.report)
    path = write_html(Path(out) if out is not None else run.path / "report.html", analysis, source,
                      before=load_run(before) if before is not None else None, change=change)
    results = analysis.report.get("gates", [])
    if junit is not None:
        write_junit(junit, "gancheck.report", gate_cases(results), {"run": Path(run_dir).resolve(), "report_html": path.resolve()})
    return {"html": path, "gates": results, "verdict": verdict}


def _reopen(run_dir: str | Path, device: str) -> tuple:
    """A finished run's generator and embedder, reopened once (the generator regenerates the page's
    images); when the generator cannot be reopened, the reason instead of it and no embedder (the
    analysis then builds only the embedder, if it needs one)."""
    try:
        _, source, embedder = open_run(run_dir, device=device)
        return source, embedder
    except GancheckError as exc:
        return f"Images could not be regenerated: {exc}", None
    except Exception as exc:  # the generator file moved or its runtime is missing: the report still renders
        return (f"Images could not be regenerated ({type(exc).__name__}: {exc}); keep the generator at the path in manifest.json "
                "to see them."), None


def compare(run_a: str | Path, run_b: str | Path, **options) -> dict:
    """The change of every key figure from run A to run B, with gates (:func:`gancheck.analysis.compare.compare_runs`)."""
    return compare_runs(run_a, run_b, **options)


def sweep(generator: str, sweep: str, out: str | Path | None = None, gates: list[Gate | str] | None = None,
          junit: str | Path | None = None, **options) -> dict:
    """Audit a conditional generator class by class (``sweep``: ``"label=onehot:10"`` or
    ``"label=values:0,1,2"``): one run per class in ``out/class-LABEL`` with the same seeds and
    embedder, then the ranking table (:func:`gancheck.analysis.ranking.sweep_table`: ranks with their
    intervals, the flagged classes), written to
    ``out/sweep.json`` and ``out/report.html``; ``gates`` are evaluated on the table
    (``"max_class.mccs.mean>0.3"``, ``"classes.3.worst_mode.mccs>0.5"``). ``options`` are :func:`audit`'s."""
    name, values = parse_sweep(sweep)
    if out is None:
        raise GancheckError("--sweep needs a run directory (--out) for its classes' runs")
    gates = [g if isinstance(g, Gate) else Gate.parse(g) for g in gates or []]
    generator_options = dict(options.pop("generator_options", None) or {})
    fixed = dict(parse_pairs(options.pop("inputs", None), "--input"), **(generator_options.get("inputs") or {}))
    if name in fixed:
        raise GancheckError(f"--sweep sets input {name!r}, which --input also fixes; drop one of them")
    rows, scores, noise = [], {}, []
    for value in values:
        run = Path(out) / f"class-{value.label}"
        done = run_audit(generator, run, generator_options=dict(generator_options, inputs=dict(fixed, **{name: value.text})), **options)
        rows.append(class_row(value.label, value.text, done.report))
        scores[value.label] = done.analysis.run.mccs
        noise.append((done.report["mccs"].get("collection_bias_mean"), done.report["mccs"].get("collection_sd_mean")))
    draws = class_draws(list(scores.values()), *zip(*noise), seed=int(options.get("seed") or 0))
    table = sweep_table(name, rows, draws)
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


def leakage(generator: str, train: str | Path, holdout: str | Path, n: int = 10_000, seed: int = 0, out: str | Path | None = None,
            html: bool = True, gates: list[Gate | str] | None = None, junit: str | Path | None = None, **options) -> dict:
    """Whether ``generator`` reproduces its training images: each generated sample's nearest
    training and held-out image, the excess of training matches within theta with its interval and
    p-value, the distance test, the strongest matches and the verdict (``leak`` or ``pass``)
    (:func:`gancheck.analysis.leakage.measure_leakage`; ``options`` are its keywords, e.g.
    ``embedder``, ``theta``, ``run``). ``gates`` are evaluated on the result (``"excess_share>0.01"``).
    With ``out`` writes leakage.json and (``html``) leakage.html there, each whole or not at all."""
    from gancheck.analysis.leakage import measure_leakage
    from gancheck.render.leakage import write_leakage_html

    gates = [g if isinstance(g, Gate) else Gate.parse(g) for g in gates or []]
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise GancheckError(f"--out {out} is a file; give a folder for leakage.json and leakage.html")
    result = measure_leakage(generator, train, holdout, n=n, seed=seed, **options)
    images, (train_dir, holdout_dir) = result.pop("_gallery"), result.pop("_dirs")
    result["gates"] = evaluate(result, gates)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if html:
            result["html"] = str(write_leakage_html(result, images, train_dir, holdout_dir, out / "leakage.html"))
        write_json(out / "leakage.json", result)
    if junit is not None:
        verdict = {"name": "leakage verdict", "failed": result["verdict"]["status"] == "leak", "message": result["verdict"]["headline"]}
        write_junit(junit, "gancheck.leakage", [verdict] + gate_cases(result["gates"]),
                    {"generator": str(generator), "excess_share": result["excess_share"], "excess_p_value": result["excess_p_value"]},
                    output=result["verdict"]["headline"])
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
