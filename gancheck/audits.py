"""An audit, straight through, in one direction:

    resolve the inputs once -> stage the run directory -> measure -> analyse the in-memory result
    once -> write each file once -> render the page from the analysis

:func:`audit` is ``gancheck.audit``; :func:`run_audit` returns what it produced in memory too (the
analysis, and the generator and embedder it opened), for the commands built on an audit (a class
sweep, a calibration's proof). Commands that start from a finished run read it with
:func:`gancheck.analysis.report.load_run` instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from gancheck.analysis.gates import Gate
from gancheck.analysis.report import Analysis, analyse, measured_run
from gancheck.errors import GancheckError
from gancheck.files import file_sha256
from gancheck.inputs import build_inputs
from gancheck.options import split_audit_options
from gancheck.render.html import write_html
from gancheck.render.junit import gate_cases, write_junit
from gancheck.run.config import AuditConfig
from gancheck.run.directory import base_manifest, combine_embeddings, staged_run, write_run
from gancheck.run.measure import measure
from gancheck.run.result import AuditResult


@dataclass
class Audit:
    """What one audit produced, in memory."""

    analysis: Analysis  # the run and its whole report (``analysis.report`` is report.json)
    result: AuditResult
    source: object  # the generator source, open and prepared: it regenerates any sample
    embedder: object

    @property
    def report(self) -> dict:
        return self.analysis.report


def audit(generator: str, out: str | Path | None = None, **options) -> dict:
    """Audit ``generator`` and return its report (the content of report.json, verdict, intervals
    and gates included, whether or not ``out`` is given).

    ``options`` are the audit's options as Python keywords, declared once in
    :data:`gancheck.options.AUDIT_OPTIONS` (``gancheck audit --help`` explains each): ``n``,
    ``anchors``, ``seed``, ``embedder``, ``theta``, ``radius``, ``mccs_form``, ``gates``
    (``["mccs.mean>0.45"]``), ``reference`` (a folder of real images), ``junit``, ``calibrator``,
    ``resume``, ``overwrite``, the generator's (``layout``, ``inputs``, ``concurrency``, ...) and the
    embedder's (``align``, ``embedder_opts``); also ``generator_options``/``embedder_options``
    dicts, ``progress(stage, done, total)``, ``log(line)`` and ``html`` (write report.html into
    ``out``; default True with ``out``). An unknown keyword, or one the chosen generator or
    embedder does not take, is an error.
    """
    return run_audit(generator, out, **options).report


def run_audit(generator: str, out: str | Path | None = None, **options) -> Audit:
    """:func:`audit`, returning the :class:`Audit` with everything it produced."""
    parts = split_audit_options(options)
    run = parts["run"]
    config = AuditConfig(**parts["config"])
    config.validate()
    run["gates"] = [g if isinstance(g, Gate) else Gate.parse(g) for g in run.get("gates") or []]  # a bad gate fails before any work
    html = run.get("html", out is not None)
    if html and out is None:
        raise GancheckError("html=True writes report.html into the run directory: give out=DIR, or html=False")
    specs = input_specs(generator, parts)
    calibration = None
    if specs["calibrator"] is not None:
        calibration = {"path": specs["calibrator"], "sha256": file_sha256(specs["calibrator"]) if Path(specs["calibrator"]).is_file() else None}
    source, embedder = build_inputs(**specs)
    settings = dict(asdict(config), **specs, calibration=calibration)
    if out is None:
        done = _audit(source, embedder, config, specs, settings, run, calibration, None)
    else:
        with staged_run(out, overwrite=run.get("overwrite", False), resume=run.get("resume", False), log=run.get("log")) as work:
            done = _audit(source, embedder, config, specs, settings, run, calibration, work)
            if config.save_embeddings:
                combine_embeddings(work)
            write_run(work, done.result, done.report, done.analysis.run.manifest)
            if html:
                write_html(work / "report.html", done.analysis, source, shown_dir=out)
    if run.get("junit"):
        write_junit(run["junit"], "gancheck.audit", gate_cases(done.report.get("gates", [])), {"generator": str(generator)})
    return done


def _audit(source, embedder, config: AuditConfig, specs: dict, settings: dict, run: dict, calibration, work: Path | None) -> Audit:
    """Measure, then analyse the in-memory result once (the run directory ``work`` only receives)."""
    if work is not None:
        source.use_run_dir(work)
    result = measure(source, embedder, config, progress=run.get("progress"), run_dir=work, resume=run.get("resume", False),
                     specs=specs, log=run.get("log"))
    manifest = base_manifest(source, embedder, settings, run.get("argv"))
    analysis = analyse(measured_run(result, manifest, work, calibration), reference_dir=run.get("reference"), embedder=embedder,
                       gates=run["gates"], allow_inconclusive=run.get("allow_inconclusive", False), device=run.get("device", "auto"))
    return Audit(analysis, result, source, embedder)


def input_specs(generator: str, parts: dict) -> dict:
    """What :func:`gancheck.inputs.build_inputs` builds the generator and embedder from, resolved
    once (paths made absolute, so that the manifest works from any directory)."""
    run = parts["run"]
    if Path(generator).exists():
        generator = str(Path(generator).resolve())
    calibrator = run.get("calibrator")
    return dict(generator=str(generator), embedder=run.get("embedder") or "pixel", generator_options=_jsonable(parts["generator"]),
                embedder_options=_jsonable(parts["embedder"]), device=run.get("device", "auto"), threads=run.get("threads"),
                batch_size=parts["config"].get("batch_size") or AuditConfig.batch_size,
                calibrator=str(Path(calibrator).resolve()) if calibrator is not None else None, force=bool(run.get("force", False)),
                timeout=parts["config"].get("timeout", AuditConfig.timeout), retries=parts["config"].get("retries", AuditConfig.retries))


def _jsonable(options: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items() if v is not None}
