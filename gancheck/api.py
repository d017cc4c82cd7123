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
          embedder_options: dict | None = None, argv: list[str] | None = None, batch_size: int = 64, **config) -> dict:
    """Audit ``generator`` and return the report dict (the content of report.json).

    ``config`` takes the remaining :class:`gancheck.audit.AuditConfig` fields (theta, radius,
    mccs_form, chunk_size, backend, top_k, no_face, save_embeddings). With ``out`` the run
    directory is written; ``gates`` (``"mccs.mean>0.45"``) are evaluated into ``report["gates"]``.
    """
    cfg = AuditConfig(n=n, anchors=anchors, seed=seed, batch_size=batch_size, **config)
    cfg.validate()
    gates = [g if isinstance(g, Gate) else Gate.parse(g) for g in gates or []]
    out = prepare_run_dir(out, overwrite) if out is not None else None
    source = load_generator(str(generator), device=device, threads=threads, batch_size=batch_size, **(generator_options or {}))
    descriptor = load_descriptor(embedder, device=device, threads=threads, **(embedder_options or {}))
    manifest = None
    writer = EmbeddingWriter(out) if out is not None and cfg.save_embeddings else None
    if out is not None:
        source.prepare(seed)
        manifest = base_manifest(source, descriptor, dict(cfg.__dict__, embedder=embedder, generator=str(generator)), argv)
        write_json(out / "manifest.json", manifest)
    try:
        result = run_audit(source, descriptor, cfg, progress=progress, on_embeddings=writer)
    finally:
        if writer is not None:
            writer.close()
    from gancheck.audit import summary

    report = summary(result) if out is None else write_run(out, result, manifest)
    if gates:
        report["gates"] = evaluate(report, gates)
        if out is not None:
            write_json(out / "report.json", report)
    return report
