"""``gancheck audit``: audit a generator for intra-mode collapse."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

import gancheck.api as api
from gancheck.analysis.gates import Gate, describe
from gancheck.cli.common import (EXIT_GATE, INPUTS, LATENT_INPUT, LATENT_SHAPE, LAYOUT, PRIOR, TRUNCATION, VALUE_RANGE,
                                 generator_options, interactive, parse_count, parse_pairs, progress_bar, set_threads)
from gancheck.render.terminal import render_summary


def audit(
    generator: str = typer.Argument(..., help="The generator: an .onnx file, a TorchScript file (.pt), a Python callable package.module:attr, or a folder of its images."),
    n: str = typer.Option("1e4", "--n", help="Size of the collection C (samples compared with every anchor); accepts 1e6-style numbers."),
    anchors: str = typer.Option("1000", "--anchors", help="Number of anchors A (independent of C) whose MCCS is computed."),
    seed: int = typer.Option(0, "--seed", help="Seed; every latent is reproducible from (seed, sample index)."),
    embedder: str = typer.Option("pixel", "--embedder", help="Identity descriptor: pixel, dlib, insightface, or onnx:PATH."),
    theta: Optional[float] = typer.Option(None, "--theta", help="Largest normalised angular distance (Eq. 4, in [0, 1]) at which two images share an identity; default: the descriptor's."),
    radius: Optional[float] = typer.Option(None, "--radius", help="Radius r for neighbour counts N_r and dense modes; default: the descriptor's."),
    mccs_form: str = typer.Option("paper", "--mccs-form", help="paper: Eq. 7, 1/(1-ln m) in (0,1]; reference: the published code's 1/(-log10 m), to compare with the paper's tables."),
    out: Path = typer.Option(Path("gancheck-run"), "--out", help="Run directory for manifest.json, report.json and the Parquet tables."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json to stdout (and nothing else)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary table (also automatic when stdout is not a terminal)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images generated and embedded per batch; results do not depend on it."),
    chunk_size: int = typer.Option(4096, "--chunk-size", help="Collection samples per statistics tile; results do not depend on it."),
    backend: str = typer.Option("auto", "--backend", help="Statistics backend: auto, blas (numpy matrix products) or faiss (range search)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda: where the generator and the descriptor run."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for BLAS, FAISS and onnxruntime (default: all cores)."),
    fail_if: Optional[List[str]] = typer.Option(None, "--fail-if", help="Gate: exit 1 when a report value crosses a bound, e.g. 'mccs.mean>0.45' or 'worst_mode.neighbor_fraction>=0.02'. Repeatable."),
    top_k: int = typer.Option(24, "--top-k", help="How many distinct dense modes to list (an anchor within r of a listed mode is not a new mode)."),
    layout: str = LAYOUT,
    value_range: str = VALUE_RANGE,
    prior: str = PRIOR,
    truncation: float = TRUNCATION,
    latent_input: Optional[str] = LATENT_INPUT,
    latent_shape: Optional[str] = LATENT_SHAPE,
    inputs: Optional[List[str]] = INPUTS,
    align: Optional[str] = typer.Option(None, "--align", help="Face descriptors: detect (detector + 5 landmarks) or fixed (pre-aligned crop; ArcFace frame, or FFHQ/CelebA-HQ frame with --embedder-opt frame=ffhq)."),
    insightface_dir: Optional[Path] = typer.Option(None, "--insightface-dir", envvar="GANCHECK_INSIGHTFACE_DIR", help="Directory holding the InsightFace model pack (e.g. ~/.insightface/models)."),
    embedder_opts: Optional[List[str]] = typer.Option(None, "--embedder-opt", help="Extra descriptor option KEY=VALUE (e.g. size=32 for pixel, input_size=112 for onnx). Repeatable."),
    no_face: str = typer.Option("exclude", "--no-face", help="Images where the descriptor finds no face: exclude them from C, or keep them as one 'no face' point."),
    save_embeddings: bool = typer.Option(False, "--save-embeddings", help="Also write the collection's embeddings to embeddings.parquet."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Folder of real images: adds precision, recall, density, coverage and the Fréchet distance in descriptor space."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML with one test case per --fail-if gate, for CI systems."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed or failed run in --out from its finished shards (same settings required)."),
    shard_size: int = typer.Option(16384, "--shard-size", help="Samples per checkpointed shard of the collection."),
    on_nan: str = typer.Option("stop", "--on-nan", help="Generator images with NaN/Inf: stop with an error, or skip and count them."),
    retries: int = typer.Option(2, "--retries", help="Retries of a generator or descriptor batch that raises, before the run stops (finished shards are kept)."),
    executor: str = typer.Option("local", "--executor", help="local (this process) or ray (shards spread over Ray workers)."),
    workers: int = typer.Option(1, "--workers", help="Ray workers (one per GPU or CPU group)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Address of an existing Ray cluster (default: start a local one)."),
    calibrator: Optional[Path] = typer.Option(None, "--calibrator", help="Audit the calibrated sampler in this file (from `gancheck calibrate`) instead of the plain prior."),
    force: bool = typer.Option(False, "--force", help="Use --calibrator even though it was built for another generator."),
):
    """Audit a generator for intra-mode collapse: MCCS per anchor, its mean and spread, dense modes."""
    gates = [Gate.parse(g) for g in fail_if or []]
    set_threads(threads)
    show = interactive(quiet) and not as_json
    with progress_bar(show) as on_progress:
        report = api.audit(
            generator, n=parse_count(n, "--n"), anchors=parse_count(anchors, "--anchors"), seed=seed, embedder=embedder,
            theta=theta, radius=radius, mccs_form=mccs_form, out=out, overwrite=overwrite, batch_size=batch_size,
            chunk_size=chunk_size, backend=backend, device=device, threads=threads, top_k=top_k, no_face=no_face,
            save_embeddings=save_embeddings, progress=on_progress, gates=gates, calibrator=calibrator, force=force,
            resume=resume, shard_size=shard_size, on_nan=on_nan, retries=retries, executor=executor, workers=workers,
            ray_address=ray_address, reference=reference, junit=junit, log=(lambda msg: typer.echo(msg, err=True)) if show else None,
            generator_options=generator_options(layout, value_range, prior, truncation, latent_input, latent_shape, inputs),
            embedder_options=dict(parse_pairs(embedder_opts, "--embedder-opt"), align=align,
                                  model_dir=str(insightface_dir) if insightface_dir else None),
            argv=sys.argv,
        )
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    elif show:
        render_summary(report, out)
    failed = [g for g in report.get("gates", []) if g["failed"]]
    for g in report.get("gates", []):
        if g["failed"] or show:
            typer.echo(describe(g), err=True)
    if failed:
        raise typer.Exit(EXIT_GATE)
