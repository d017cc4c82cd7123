"""``gancheck coverage``: which kinds of real image a generator does not make."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

import gancheck.api as api
from gancheck.formatting import format_count, format_number as num, format_share
from gancheck.cli.common import (INPUTS, LATENT_INPUT, LATENT_SHAPE, LAYOUT, PRIOR, TRUNCATION, VALUE_RANGE, generator_options,
                                 parse_count, parse_pairs, positive, set_threads)
from gancheck.cli.progress import Reporter, choose_mode


def coverage(
    generator: str = typer.Argument(..., metavar="GENERATOR", help="The generator: an .onnx file, a PyTorch 2 file (.pt2: torch.export program or AOTInductor package), a TorchScript file (.pt), a Python callable package.module:attr, or a folder of its images."),
    reference: Path = typer.Option(..., "--reference", metavar="DIR", help="Folder of real images (PNG/JPEG/WebP, searched recursively) the generator should cover."),
    n: str = typer.Option("1e4", "--n", metavar="N", help="Generated images to compare; accepts 1e4-style numbers."),
    seed: int = typer.Option(0, "--seed", metavar="SEED", help="Seed of the latents and of the K-means binning."),
    embedder: str = typer.Option("pixel", "--embedder", metavar="NAME", help="Descriptor the bins are made in: pixel, dlib, insightface, or onnx:PATH."),
    embedder_opts: Optional[List[str]] = typer.Option(None, "--embedder-opt", metavar="KEY=VALUE", help="Extra embedder option KEY=VALUE (e.g. size=8 for pixel). Repeatable."),
    bins: Optional[int] = typer.Option(None, "--bins", metavar="K", show_default="one per 50 real images, 2 to 100", help="Number of K-means bins of the real images (each needs 10 real images on average)."),
    alpha: float = typer.Option(0.05, "--alpha", metavar="Q", help="False-discovery rate (Benjamini-Hochberg) below which a bin or attribute counts as different."),
    attributes: Optional[str] = typer.Option(None, "--attributes", metavar="onnx:PATH", help="An ONNX classifier from images to class scores: report each attribute's generated and real frequencies."),
    attribute_names: Optional[str] = typer.Option(None, "--attribute-names", metavar="a,b,c", help="The classifier's outputs in order, comma-separated (required with --attributes)."),
    attribute_kind: str = typer.Option("multiclass", "--attribute-kind", metavar="multiclass|multilabel", help="multiclass: an image has the class of its largest score; multilabel: every attribute whose probability exceeds 0.5."),
    attribute_range: str = typer.Option("-1,1", "--attribute-range", metavar="-1,1|0,1|0,255", help="Pixel value range the classifier expects."),
    out: Path = typer.Option(Path("gancheck-coverage"), "--out", metavar="DIR", help="Folder for coverage.json and coverage.html."),
    as_json: bool = typer.Option(False, "--json", help="Print coverage.json to stdout (and nothing else)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
    batch_size: int = typer.Option(64, "--batch-size", metavar="N", help="Images generated and described per batch; results do not depend on it."),
    device: str = typer.Option("auto", "--device", metavar="auto|cpu|cuda", help="Where the generator, embedder and classifier run."),
    threads: Optional[int] = typer.Option(None, "--threads", metavar="N", show_default="all cores", help="CPU threads for BLAS, FAISS and onnxruntime."),
    calibrator: Optional[Path] = typer.Option(None, "--calibrator", metavar="FILE", help="Draw the generator's latents through this calibrator (from `gancheck calibrate`): what a calibrated sampler covers."),
    force: bool = typer.Option(False, "--force", help="Use --calibrator even though it was built for another generator."),
    layout: str = LAYOUT,
    value_range: str = VALUE_RANGE,
    prior: str = PRIOR,
    truncation: float = TRUNCATION,
    latent_input: Optional[str] = LATENT_INPUT,
    latent_shape: Optional[str] = LATENT_SHAPE,
    inputs: Optional[List[str]] = INPUTS,
):
    """Which kinds of real image the generator does not make: bins of the real images' descriptors,
    each bin's generated share tested against its real share (NDB/K), dropped bins with their most
    typical real images, and, with --attributes, attribute frequencies from your classifier."""
    set_threads(threads)
    positive(batch_size, "--batch-size")
    if bool(attributes) != bool(attribute_names):
        from gancheck.errors import GancheckError

        raise GancheckError("--attributes onnx:PATH and --attribute-names a,b,c go together: the classifier and its outputs' names in order")
    mode = choose_mode(quiet, as_json)
    with Reporter(mode) as rep:
        result = api.coverage(generator, reference, n=parse_count(n, "--n", minimum=2), seed=seed, embedder=embedder, out=out, bins=bins,
                              alpha=alpha, attributes=attributes, attribute_names=attribute_names, attribute_kind=attribute_kind,
                              attribute_range=attribute_range, device=device, threads=threads, batch_size=batch_size, progress=rep.progress,
                              calibrator=calibrator, force=force,
                              generator_options=generator_options(layout, value_range, prior, truncation, latent_input, latent_shape, inputs),
                              embedder_options=parse_pairs(embedder_opts, "--embedder-opt"))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    elif not quiet:
        for line in summary_lines(result):
            typer.echo(line)
    if mode == "lines":
        typer.echo(f"gancheck: finished in {rep.elapsed()}; NDB/K = {num(result['ndb_over_k'])}; page: {result.get('html') or 'not written'}", err=True)


def summary_lines(result: dict, shown: int = 10) -> list[str]:
    """The result in a few plain lines: NDB/K, the dropped bins, the attribute findings."""
    lines = [f"NDB/K = {result['ndb']}/{result['k']} = {num(result['ndb_over_k'])}: {result['under_generated']} bins under-generated, "
             f"{result['over_generated']} over-generated (FDR {format_share(result['alpha'])}; {format_count(result['n_reference'])} real, "
             f"{format_count(result['n_generated'])} generated images)"]
    for d in result["dropped"][:shown]:
        lines.append(f"  dropped bin {d['bin']}: {format_share(d['reference_share'])} of real images, {format_share(d['generated_share'])} generated "
                     f"(q = {num(d['q_value'])}); e.g. {', '.join(d['examples'][:4])}")
    if len(result["dropped"]) > shown:
        lines.append(f"  ... and {len(result['dropped']) - shown} more dropped bins (see coverage.json)")
    for f in (result.get("attributes") or {}).get("findings", []):
        lines.append(f)
    if result.get("attributes"):
        lines.append(f"Fréchet attribute distance: {num(result['attributes']['frechet_attribute_distance'])}")
    if result.get("html"):
        lines.append(f"page: {result['html']}")
    return lines
