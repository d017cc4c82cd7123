"""The Python API behind every CLI command: ``import gancheck; gancheck.audit("model.onnx")``."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from gancheck.audit import AuditConfig, run_audit, summary
from gancheck.errors import GancheckError
from gancheck.gates import Gate, evaluate
from gancheck.generators import load_generator
from gancheck.report import base_manifest, combine_embeddings, prepare_run_dir, write_json, write_run


def load_descriptor(spec: str, device: str = "auto", threads: int | None = None, model_dir: str | None = None, **options):
    """An embedder by name. ``device``, ``threads`` and ``model_dir`` (GANCHECK_INSIGHTFACE_DIR may
    be set whatever descriptor is asked for) go only to descriptors whose constructor takes them;
    other options must be the descriptor's own."""
    from embedders import load_embedder
    from embedders.base import _REGISTRY

    cls = _REGISTRY.get(spec.partition(":")[0])
    options = {k: v for k, v in options.items() if v is not None}
    if cls is not None:
        params = inspect.signature(cls.__init__).parameters
        environment = {"device": device, "threads": threads, "model_dir": model_dir}
        options.update({k: v for k, v in environment.items() if k in params and v is not None})
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            unknown = sorted(set(options) - set(params))
            if unknown:
                takes = ", ".join(p for p in params if p not in ("self", "path")) or "none"
                raise GancheckError(f"embedder {cls.name!r} takes no option {', '.join(unknown)}; its options are: {takes}")
    return load_embedder(spec, **options)


def build_source_and_embedder(generator: str, embedder: str = "pixel", generator_options: dict | None = None,
                              embedder_options: dict | None = None, device: str = "auto", threads: int | None = None,
                              batch_size: int = 64, calibrator: str | None = None, force: bool = False):
    """The image source (calibrated when ``calibrator`` is given) and the descriptor of an audit."""
    source = load_generator(str(generator), device=device, threads=threads, batch_size=batch_size, **(generator_options or {}))
    if calibrator is not None:
        from gancheck.calibrate import load_calibrator

        source.sampler = load_calibrator(calibrator).bind(source, force=force)
    return source, load_descriptor(embedder, device=device, threads=threads, **(embedder_options or {}))


def audit(generator: str, n: int = 10_000, anchors: int = 1_000, seed: int = 0, embedder: str = "pixel",
          out: str | Path | None = None, overwrite: bool = False, resume: bool = False, device: str = "auto",
          threads: int | None = None, gates: list[Gate | str] | None = None, progress=None,
          generator_options: dict | None = None, embedder_options: dict | None = None, argv: list[str] | None = None,
          batch_size: int = 64, calibrator: str | Path | None = None, force: bool = False, log=None,
          reference: str | Path | None = None, junit: str | Path | None = None, html: bool = True, **config) -> dict:
    """Audit ``generator`` and return the report dict (the content of report.json).

    ``config`` takes the remaining :class:`gancheck.audit.AuditConfig` fields (theta, radius,
    mccs_form, chunk_size, shard_size, backend, top_k, no_face, on_nan, retries, executor,
    workers, ray_address, save_embeddings). With ``out`` the run directory is written in
    checkpointed shards (``resume`` continues a killed run); ``gates`` (``"mccs.mean>0.45"``) are
    evaluated into ``report["gates"]``; ``log(message)`` receives notes such as the run directory's
    expected size. ``reference`` (a folder of real images) adds precision, recall, density,
    coverage and the Fréchet distance; ``junit`` writes one JUnit test case per gate; ``html``
    writes report.html. ``calibrator`` audits the calibrated sampler of that file
    instead of the generator's prior (refused for another generator unless ``force``).
    """
    cfg = AuditConfig(n=n, anchors=anchors, seed=seed, batch_size=batch_size, **config)
    cfg.validate()
    gates = [g if isinstance(g, Gate) else Gate.parse(g) for g in gates or []]
    out = prepare_run_dir(out, overwrite=overwrite, resume=resume) if out is not None else None
    if Path(generator).exists():
        generator = str(Path(generator).resolve())  # the manifest must work from any directory
    calibration = None
    if calibrator is not None:
        from gancheck.provenance import file_sha256

        calibrator = str(Path(calibrator).resolve())
        calibration = {"path": calibrator, "sha256": file_sha256(calibrator) if Path(calibrator).is_file() else None}
    rebuild = dict(generator=str(generator), embedder=embedder, generator_options=_jsonable(generator_options),
                   embedder_options=_jsonable(embedder_options), device=device, threads=threads, batch_size=batch_size,
                   calibrator=calibrator, force=force)
    source, descriptor = build_source_and_embedder(**rebuild)
    manifest = None
    if out is not None:
        source.prepare(seed)
        manifest = base_manifest(source, descriptor, dict(cfg.__dict__, **rebuild, calibration=calibration), argv)
        if not resume or not (out / "manifest.json").exists():
            write_json(out / "manifest.json", manifest)
    result = run_audit(source, descriptor, cfg, progress=progress, run_dir=out, resume=resume, rebuild=rebuild, log=log)
    extra = {"calibrator": calibration} if calibration else {}
    if out is None:
        report = dict(summary(result), **extra)
    else:
        from gancheck.html_report import enrich_report, merge_report, write_html

        if cfg.save_embeddings:
            combine_embeddings(out)
        report = merge_report(write_run(out, result, manifest, extra), enrich_report(out, reference_dir=reference, device=device))
    if gates:
        report["gates"] = evaluate(report, gates)  # after enrichment, so confidence bounds can be gated
    if out is not None:
        write_json(out / "report.json", report)
        if html:
            write_html(out)
    if junit:
        from gancheck.junit import gate_cases, write_junit

        write_junit(junit, "gancheck.audit", gate_cases(report.get("gates", [])), {"generator": str(generator)})
    return report


def _jsonable(options: dict | None) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in (options or {}).items() if v is not None}


def open_run(run_dir: str | Path, device: str = "auto"):
    """Rebuild what a run used: ``(manifest, source, embedder)``; the source is prepared with the
    run's seed, so ``source.images(indices)`` regenerates any sample, anchor or mode."""
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise GancheckError(f"{run_dir} is not a gancheck run directory (no manifest.json); give the --out of an audit")
    try:
        manifest = json.loads(path.read_text())
        cfg = manifest["config"]
        source, embedder = build_source_and_embedder(
            cfg["generator"], cfg["embedder"], cfg.get("generator_options"), cfg.get("embedder_options"), device=device,
            batch_size=cfg.get("batch_size", 64), calibrator=cfg.get("calibrator"), force=cfg.get("force", False))
    except (json.JSONDecodeError, KeyError) as exc:
        raise GancheckError(f"{path} is damaged ({type(exc).__name__}: {exc}); re-run the audit") from None
    source.prepare(cfg["seed"])
    return manifest, source, embedder
