"""``gancheck audit``: audit a generator for intra-mode collapse."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

import gancheck.api as api
from gancheck.analysis.gates import Gate, describe
from gancheck.cli.common import (EXIT_GATE, INPUTS, LATENT_INPUT, LATENT_SHAPE, LAYOUT, PRIOR, TRUNCATION, VALUE_RANGE,
                                 finite, generator_options, parse_count, parse_pairs, set_threads)
from gancheck.cli.progress import Reporter, choose_mode
from gancheck.numbers import format_number as num, format_share
from gancheck.render.terminal import final_line, render_summary


def audit(
    generator: str = typer.Argument(..., metavar="GENERATOR", help="The generator: an .onnx file, a TorchScript file (.pt), a Python callable package.module:attr, a folder of its images, an inference server's http(s)://HOST:PORT/v2/models/NAME, a JSON service URL with --request-template, or 'cmd:PROGRAM ARGS' (docs/sources.md)."),
    n: str = typer.Option("1e4", "--n", metavar="N", help="Size of the collection C, in samples (each compared with every anchor); accepts 1e6-style numbers."),
    anchors: str = typer.Option("1000", "--anchors", metavar="N", help="Number of anchors A (drawn apart from C) whose MCCS is computed; accepts 1e4-style numbers."),
    seed: int = typer.Option(0, "--seed", metavar="SEED", help="Seed; every latent is reproducible from (seed, sample index)."),
    embedder: str = typer.Option("pixel", "--embedder", metavar="NAME", help="Identity descriptor that embeds each image: pixel, dlib, insightface, or onnx:PATH (any ONNX model)."),
    theta: Optional[float] = typer.Option(None, "--theta", metavar="D", show_default="the descriptor's", help="Largest distance at which two images share an identity, as a normalised angular distance (Eq. 4, 0 to 1)."),
    radius: Optional[float] = typer.Option(None, "--radius", metavar="D", show_default="the descriptor's", help="Radius r of the neighbour counts N_r and dense modes, as a normalised angular distance (Eq. 4, 0 to 1)."),
    mccs_form: str = typer.Option("paper", "--mccs-form", metavar="paper|reference", help="paper: Eq. 7, 1/(1-ln m) in (0,1]; reference: the published code's formula 1/(-log10 m). The formula alone does not reproduce the paper's tables: add --protocol reference for that."),
    protocol: str = typer.Option("independent", "--protocol", metavar="independent|reference", help="independent: anchors drawn apart from C (Eq. 8); reference: the published code's protocol, anchors are C's first samples and each anchor's m counts itself (matters at small --n). With --mccs-form reference it compares exactly with the paper's tables."),
    out: Path = typer.Option(Path("gancheck-run"), "--out", metavar="DIR", help="Run directory: report.html (open it in a browser), report.json, manifest.json and the Parquet tables. Written beside it as .DIR.partial and moved into place when the run has finished."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json to stdout (and nothing else); progress lines still go to stderr unless --quiet."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors and failed gates. Without it: progress bars and a summary on a terminal; elsewhere (CI logs) a line per stage, a progress line every 30 s and a last line with the verdict and the report's path, on stderr."),
    batch_size: int = typer.Option(64, "--batch-size", metavar="N", help="Images generated and embedded per batch; results do not depend on it."),
    chunk_size: int = typer.Option(4096, "--chunk-size", metavar="N", help="Collection samples per statistics tile; results do not depend on it."),
    backend: str = typer.Option("auto", "--backend", metavar="auto|blas|faiss", help="Statistics backend: numpy matrix products (blas) or FAISS range search; results do not depend on it."),
    device: str = typer.Option("auto", "--device", metavar="auto|cpu|cuda", help="Where the generator and the descriptor run (auto: CUDA when present)."),
    threads: Optional[int] = typer.Option(None, "--threads", metavar="N", show_default="all cores", help="CPU threads for BLAS, FAISS and onnxruntime."),
    fail_if: Optional[List[str]] = typer.Option(None, "--fail-if", metavar="'KEY>BOUND'", help="Gate: exit 1 when a report value crosses a bound, e.g. 'mccs.mean>0.45', 'worst_mode.neighbor_fraction>=0.02' or 'verdict.collapse>0'. Repeatable."),
    top_k: int = typer.Option(24, "--top-k", metavar="K", help="How many distinct dense modes to list (an anchor within r of a listed mode is not a new mode)."),
    layout: str = LAYOUT,
    value_range: str = VALUE_RANGE,
    prior: str = PRIOR,
    truncation: float = TRUNCATION,
    latent_input: Optional[str] = LATENT_INPUT,
    latent_shape: Optional[str] = LATENT_SHAPE,
    inputs: Optional[List[str]] = INPUTS,
    align: Optional[str] = typer.Option(None, "--align", metavar="detect|fixed|detect-cnn", show_default="detect", help="Face descriptors: detect (detector + 5 landmarks), fixed (pre-aligned crop; ArcFace frame, or FFHQ/CelebA-HQ frame with --embedder-opt frame=ffhq) or, for dlib, detect-cnn (dlib's CNN face detector). dlib runs as ONNX; --embedder-opt engine=dlib runs dlib's own code."),
    insightface_dir: Optional[Path] = typer.Option(None, "--insightface-dir", envvar="GANCHECK_INSIGHTFACE_DIR", metavar="DIR", help="Directory holding the InsightFace model pack (e.g. ~/.insightface/models)."),
    embedder_opts: Optional[List[str]] = typer.Option(None, "--embedder-opt", metavar="KEY=VALUE", help="Extra descriptor option KEY=VALUE (e.g. size=32 for pixel, input_size=112 for onnx). Repeatable."),
    no_face: str = typer.Option("exclude", "--no-face", metavar="exclude|keep", help="Images where the descriptor finds no face: exclude them from C, or keep them as one 'no face' point."),
    save_embeddings: bool = typer.Option(False, "--save-embeddings", help="Also write the collection's embeddings to embeddings.parquet."),
    reference: Optional[Path] = typer.Option(None, "--reference", metavar="DIR", help="Folder of real images: adds precision, recall, density, coverage and the Fréchet distance in descriptor space."),
    junit: Optional[Path] = typer.Option(None, "--junit", metavar="FILE", help="Write JUnit XML with one test case per --fail-if gate, for CI systems."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed or failed run in --out from its finished shards (same settings required)."),
    shard_size: int = typer.Option(16384, "--shard-size", metavar="N", help="Collection samples per checkpointed shard (what --resume redoes at most)."),
    on_nan: str = typer.Option("stop", "--on-nan", metavar="stop|skip", help="Generator images with NaN/Inf: stop with an error, or skip and count them."),
    retries: int = typer.Option(2, "--retries", metavar="N", help="Retries of a generator or descriptor batch that raises, before the run stops (finished shards are kept)."),
    executor: str = typer.Option("local", "--executor", metavar="local|ray", help="local (this process) or ray (shards spread over Ray workers)."),
    workers: int = typer.Option(1, "--workers", metavar="N", help="Ray workers (one per GPU or CPU group)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", metavar="ADDR", show_default="start a local cluster", help="Address of an existing Ray cluster."),
    calibrator: Optional[Path] = typer.Option(None, "--calibrator", metavar="FILE", help="Audit the calibrated sampler in this file (from `gancheck calibrate`) instead of the plain prior."),
    force: bool = typer.Option(False, "--force", help="Use --calibrator even though it was built for another generator."),
    allow_inconclusive: bool = typer.Option(False, "--allow-inconclusive", help="Let --fail-if gates pass on an inconclusive run (degenerate descriptor vectors or images, see report.json's degenerate)."),
    request_template: Optional[Path] = typer.Option(None, "--request-template", metavar="FILE", help="JSON service over HTTP: the template saying where the latents go and where the images come back (docs/sources.md)."),
    concurrency: int = typer.Option(1, "--concurrency", metavar="N", help="HTTP generators: requests in flight at once (each batch is split across them)."),
    max_rps: Optional[float] = typer.Option(None, "--max-rps", metavar="R", help="HTTP generators: at most R requests per second."),
    timeout: float = typer.Option(1800.0, "--timeout", metavar="S", help="Seconds one generator or descriptor call (a batch, an HTTP request, a cmd: answer) may take before it counts as hung: retried per --retries, then the run stops resumably. 0: no limit."),
    token_env: str = typer.Option("GANCHECK_HTTP_TOKEN", "--token-env", metavar="VAR", help="HTTP generators: environment variable holding a bearer token (the token itself is never an option nor recorded)."),
    ca_file: Optional[Path] = typer.Option(None, "--ca-file", metavar="FILE", help="HTTPS generators: CA certificate(s) to verify the server with (default: the system's)."),
    sweep: Optional[str] = typer.Option(None, "--sweep", metavar="NAME=onehot:K|NAME=values:A,B", help="Audit each value of a conditioning input as its own sub-run (same seeds and descriptor) and rank the classes; --fail-if then also takes max_class.KEY and classes.LABEL.KEY."),
):
    """Audit a generator for intra-mode collapse: MCCS per anchor, its mean and spread, dense modes."""
    gates = [Gate.parse(g) for g in fail_if or []]
    set_threads(threads)
    finite(theta, "--theta", 0.0, 1.0), finite(radius, "--radius", 0.0, 1.0), finite(timeout, "--timeout", 0.0)
    finite(truncation, "--truncation", 0.0)
    mode = choose_mode(quiet, as_json)
    with Reporter(mode) as rep:
        report = (functools.partial(api.sweep, sweep=sweep) if sweep else api.audit)(
            generator, n=parse_count(n, "--n"), anchors=parse_count(anchors, "--anchors"), seed=seed, embedder=embedder,
            theta=theta, radius=radius, mccs_form=mccs_form, protocol=protocol, out=out, overwrite=overwrite, batch_size=batch_size,
            chunk_size=chunk_size, backend=backend, device=device, threads=threads, top_k=top_k, no_face=no_face,
            save_embeddings=save_embeddings, progress=_then_report(rep), gates=gates, calibrator=calibrator, force=force,
            resume=resume, timeout=timeout, allow_inconclusive=allow_inconclusive, shard_size=shard_size, on_nan=on_nan, retries=retries, executor=executor, workers=workers,
            ray_address=ray_address, reference=reference, junit=junit, log=rep.logger,
            generator_options=dict(generator_options(layout, value_range, prior, truncation, latent_input, latent_shape, inputs),
                                   **remote_options(request_template, concurrency, max_rps, timeout, token_env, ca_file, retries)),
            embedder_options=dict(parse_pairs(embedder_opts, "--embedder-opt"), align=align,
                                  model_dir=str(insightface_dir) if insightface_dir else None),
            argv=sys.argv,
        )
    if sweep:
        return _finish_sweep(report, as_json, mode != "off", Path(out))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    elif mode == "rich":
        render_summary(report, out)
    failed = [g for g in report.get("gates", []) if g["failed"]]
    for g in report.get("gates", []):
        if g["failed"] or mode != "off":
            typer.echo(describe(g), err=True)
    if mode == "lines":
        typer.echo(final_line(report, Path(out) / "report.html", rep.elapsed()), err=True)
    if failed:
        raise typer.Exit(EXIT_GATE)


def _then_report(rep: Reporter):
    """The progress callback, which also says when the run is being analysed (the last, quiet minute)."""
    if rep.progress is None:
        return None

    def update(stage: str, done: int, total: int) -> None:
        rep.update(stage, done, total)
        if stage == "samples" and done >= total:
            rep.log("analysing the run (confidence intervals, Ripley test, diversity) and drawing report.html")

    return update


def remote_options(request_template, concurrency, max_rps, timeout, token_env, ca_file, retries) -> dict:
    """The options of generators reached over HTTP or run as a program (load_generator passes each
    source only those it takes)."""
    return dict(request_template=str(request_template) if request_template else None, concurrency=concurrency, max_rps=max_rps,
                timeout=timeout, token_env=token_env, ca_file=str(ca_file) if ca_file else None, http_retries=retries)


def _finish_sweep(table: dict, as_json: bool, show: bool, out: Path) -> None:
    """A class sweep's ranking on stdout (or its JSON), its gates on stderr, exit 1 on a failed gate."""
    if as_json:
        typer.echo(json.dumps(table, indent=2))
    elif show:
        typer.echo(f"class sweep over input {table['input']}: ranked by mean MCCS, most collapsed first")
        for line in sweep_lines(table):
            typer.echo(line)
        typer.echo(f"report: {out / 'report.html'}")
    for g in table.get("gates", []):
        if g["failed"] or show:
            typer.echo(describe(g), err=True)
    if any(g["failed"] for g in table.get("gates", [])):
        raise typer.Exit(EXIT_GATE)


def sweep_lines(table: dict) -> list[str]:
    """One line per class, most collapsed first, in gancheck.numbers' one rule."""
    lines = []
    for label in table["ranking"]:
        r = table["classes"][label]
        m, w = r["mccs"], r["worst_mode"]
        lines.append(f"  {r['rank']:>3}. class {label:<8} mean {num(m['mean'])} [{num(m['mean_ci_low'])}, {num(m['mean_ci_high'])}]"
                     f"  sigma {num(m['std'])}  worst mode {num(w['mccs'])} ({format_share(w['neighbor_fraction'])} of samples)")
    return lines
