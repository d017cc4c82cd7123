"""The Python API behind every CLI command: ``import gancheck; gancheck.audit("model.onnx")``."""

from __future__ import annotations

import inspect
from pathlib import Path

from gancheck.audit import AuditConfig, run_audit
from gancheck.gates import Gate, evaluate
from gancheck.generators import load_generator
from gancheck.report import EmbeddingWriter, base_manifest, prepare_run_dir, write_json, write_run


def load_descriptor(spec: str, device: str = "auto", threads: int | None = None, **options):
    """An embedder by name, given ``device``/``threads`` only when its constructor takes them."""
    from embedders import load_embedder
    from embedders.base import _REGISTRY

    cls = _REGISTRY.get(spec.partition(":")[0])
    if cls is not None:
        params = inspect.signature(cls.__init__).parameters
        options.update({k: v for k, v in (("device", device), ("threads", threads)) if k in params})
        options = {k: v for k, v in options.items() if v is not None}
        unknown = sorted(set(options) - set(params) - {"device", "threads"}) if not any(p.kind == p.VAR_KEYWORD for p in params.values()) else []
        if unknown:
            from gancheck.errors import GancheckError

            raise GancheckError(f"embedder {spec.partition(':')[0]!r} takes no option {', '.join(unknown)}; its options are {', '.join(p for p in params if p not in ('self', 'path'))}")
    return load_embedder(spec, **options)


def audit(generator: str, n: int = 10_000, anchors: int = 1_000, seed: int = 0, embedder: str = "pixel",
          out: str | Path | None = None, overwrite: bool = False, device: str = "auto", threads: int | None = None,
          gates: list[Gate | str] | None = None, progress=None, generator_options: dict | None = None,
          embedder_options: dict | None = None, argv: list[str] | None = None, batch_size: int = 64,
          calibrator: str | Path | None = None, force: bool = False, **config) -> dict:
    """Audit ``generator`` and return the report dict (the content of report.json).

    ``config`` takes the remaining :class:`gancheck.audit.AuditConfig` fields (theta, radius,
    mccs_form, chunk_size, backend, top_k, no_face, save_embeddings). With ``out`` the run
    directory is written; ``gates`` (``"mccs.mean>0.45"``) are evaluated into ``report["gates"]``.
    ``calibrator`` audits the calibrated sampler of that file instead of the generator's prior
    (refused for another generator unless ``force``).
    """
    cfg = AuditConfig(n=n, anchors=anchors, seed=seed, batch_size=batch_size, **config)
    cfg.validate()
    gates = [g if isinstance(g, Gate) else Gate.parse(g) for g in gates or []]
    out = prepare_run_dir(out, overwrite) if out is not None else None
    if Path(generator).exists():
        generator = str(Path(generator).resolve())  # the manifest must work from any directory
    source = load_generator(str(generator), device=device, threads=threads, batch_size=batch_size, **(generator_options or {}))
    calibration = None
    if calibrator is not None:
        from gancheck.calibrate import load_calibrator
        from gancheck.provenance import file_sha256

        source.sampler = load_calibrator(calibrator).bind(source, force=force)
        calibration = {"path": str(Path(calibrator).resolve()), "sha256": file_sha256(calibrator)}
    descriptor = load_descriptor(embedder, device=device, threads=threads, **(embedder_options or {}))
    manifest = None
    writer = EmbeddingWriter(out) if out is not None and cfg.save_embeddings else None
    if out is not None:
        source.prepare(seed)
        manifest = base_manifest(source, descriptor, dict(cfg.__dict__, embedder=embedder, generator=str(generator), device=device, calibrator=calibration,
                                                          generator_options=_jsonable(generator_options), embedder_options=_jsonable(embedder_options)), argv)
        write_json(out / "manifest.json", manifest)
    try:
        result = run_audit(source, descriptor, cfg, progress=progress, on_embeddings=writer)
    finally:
        if writer is not None:
            writer.close()
    from gancheck.audit import summary

    extra = {"calibrator": calibration} if calibration else None
    report = summary(result) if out is None else write_run(out, result, manifest, extra)
    if out is None and extra:
        report.update(extra)
    if gates:
        report["gates"] = evaluate(report, gates)
        if out is not None:
            write_json(out / "report.json", report)
    return report


def _jsonable(options: dict | None) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in (options or {}).items() if v is not None}


def open_run(run_dir: str | Path, device: str = "auto"):
    """Rebuild what a run used: ``(manifest, source, embedder)``; the source is prepared with the
    run's seed, so ``source.images(indices)`` regenerates any sample, anchor or mode."""
    import json

    from gancheck.errors import GancheckError

    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise GancheckError(f"{run_dir} is not a gancheck run directory (no manifest.json); give the --out of an audit")
    try:
        manifest = json.loads(path.read_text())
        cfg = manifest["config"]
        source = load_generator(cfg["generator"], device=device, batch_size=cfg.get("batch_size", 64), **cfg.get("generator_options", {}))
        embedder = load_descriptor(cfg["embedder"], device=device, **cfg.get("embedder_options", {}))
    except (json.JSONDecodeError, KeyError) as exc:
        raise GancheckError(f"{path} is damaged ({type(exc).__name__}: {exc}); re-run the audit") from None
    source.prepare(cfg["seed"])
    return manifest, source, embedder
