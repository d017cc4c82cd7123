"""``gancheck leakage``: whether a generator reproduces its training images, tested against held-out ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

import gancheck.api as api
from gancheck.analysis.gates import describe
from gancheck.cli.common import (EXIT_GATE, INPUTS, LATENT_INPUT, LATENT_SHAPE, LAYOUT, PRIOR, TRUNCATION, VALUE_RANGE, finite,
                                 generator_options, parse_count, parse_pairs, positive, set_threads)
from gancheck.cli.progress import Reporter, choose_mode
from gancheck.formatting import format_count, format_number as num, format_p, format_share


def leakage(
    generator: str = typer.Argument(..., metavar="GENERATOR", help="The generator: an .onnx file, a TorchScript file (.pt), a Python callable package.module:attr, or a folder of its images."),
    train: Path = typer.Option(..., "--train", metavar="DIR", help="Folder of the images the generator was trained on (PNG/JPEG/WebP, searched recursively)."),
    holdout: Path = typer.Option(..., "--holdout", metavar="DIR", help="Folder of held-out images of the same distribution that the generator never saw."),
    n: str = typer.Option("1e4", "--n", metavar="N", help="Generated images to compare; accepts 1e4-style numbers."),
    seed: int = typer.Option(0, "--seed", metavar="SEED", help="Seed of the latents and of the subsample that equalises the two sets' sizes."),
    embedder: Optional[str] = typer.Option(None, "--embedder", metavar="NAME", show_default="the --run's, else pixel", help="Identity descriptor: pixel, dlib, insightface, or onnx:PATH."),
    embedder_opts: Optional[List[str]] = typer.Option(None, "--embedder-opt", metavar="KEY=VALUE", help="Extra embedder option KEY=VALUE (e.g. size=8 for pixel). Repeatable."),
    theta: Optional[float] = typer.Option(None, "--theta", "--threshold", metavar="D", show_default="the embedder's", help="Same-identity threshold, a normalised angular distance (Eq. 4, 0 to 1)."),
    run: Optional[Path] = typer.Option(None, "--run", metavar="DIR", help="An audit's run directory: match its dense modes against the training set."),
    fail_if: Optional[List[str]] = typer.Option(None, "--fail-if", metavar="'KEY>BOUND'", help="Gate on leakage.json, e.g. 'excess_share_ci_high>0.01'; exit 1 when one fails. Repeatable."),
    junit: Optional[Path] = typer.Option(None, "--junit", metavar="FILE", help="Write JUnit XML here: the verdict and one test case per --fail-if gate."),
    out: Path = typer.Option(Path("gancheck-leakage"), "--out", metavar="DIR", help="Folder for leakage.json and leakage.html."),
    as_json: bool = typer.Option(False, "--json", help="Print leakage.json to stdout (and nothing else)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors and failed gates."),
    batch_size: int = typer.Option(64, "--batch-size", metavar="N", help="Images generated and described per batch; results do not depend on it."),
    device: str = typer.Option("auto", "--device", metavar="auto|cpu|cuda", help="Where the generator and embedder run."),
    threads: Optional[int] = typer.Option(None, "--threads", metavar="N", show_default="all cores", help="CPU threads for BLAS, FAISS and onnxruntime."),
    calibrator: Optional[Path] = typer.Option(None, "--calibrator", metavar="FILE", help="Draw the generator's latents through this calibrator (from `gancheck calibrate`)."),
    force: bool = typer.Option(False, "--force", help="Use --calibrator even though it was built for another generator."),
    layout: str = LAYOUT,
    value_range: str = VALUE_RANGE,
    prior: str = PRIOR,
    truncation: float = TRUNCATION,
    latent_input: Optional[str] = LATENT_INPUT,
    latent_shape: Optional[str] = LATENT_SHAPE,
    inputs: Optional[List[str]] = INPUTS,
):
    """Whether generated images are training images: each sample's nearest training and held-out
    image, the excess of training matches within theta (interval, p-value), a distance test, the
    strongest matches, and the verdict leak or pass (exit 1 on leak or a failed gate)."""
    set_threads(threads)
    positive(batch_size, "--batch-size")
    finite(theta, "--theta", 0.0, 1.0)
    mode = choose_mode(quiet, as_json)
    with Reporter(mode) as rep:
        result = api.leakage(generator, train, holdout, n=parse_count(n, "--n", minimum=2), seed=seed, out=out, gates=fail_if, junit=junit,
                             embedder=embedder, theta=theta, run=run, device=device, threads=threads, batch_size=batch_size,
                             progress=rep.progress, calibrator=calibrator, force=force,
                             generator_options=generator_options(layout, value_range, prior, truncation, latent_input, latent_shape, inputs),
                             embedder_options=parse_pairs(embedder_opts, "--embedder-opt"))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    elif not quiet:
        for line in summary_lines(result):
            typer.echo(line)
    for g in result["gates"]:
        if g["failed"] or mode != "off":
            typer.echo(describe(g), err=True)
    if mode == "lines":
        typer.echo(f"gancheck: finished in {rep.elapsed()}; {result['verdict']['status']}; page: {result.get('html') or 'not written'}", err=True)
    if result["verdict"]["status"] == "leak" or any(g["failed"] for g in result["gates"]):
        raise typer.Exit(EXIT_GATE)


def summary_lines(result: dict, shown: int = 10) -> list[str]:
    """The result in a few plain lines: the verdict, the shares, the strongest matches, the run's worst mode."""
    lines = [result["verdict"]["headline"],
             f"within theta = {num(result['theta'])}: {format_share(result['train_share'])} of {format_count(result['n_generated'])} samples "
             f"match a training image, {format_share(result['holdout_share'])} a held-out one; distance test {format_p(result['distance_p_value'], result['permutations'])}"]
    for m in result["matches"][:shown]:
        lines.append(f"  {m['train_image']}: matched by {format_count(m['count'])} sample{'s' if m['count'] != 1 else ''} (closest d = {num(m['distance'])}, sample {m['sample']}; "
                     f"nearest held-out {m['holdout_image']} at {num(m['holdout_distance'])})")
    if len(result["matches"]) > shown:
        lines.append(f"  ... and {len(result['matches']) - shown} more matched training images (see leakage.json)")
    if result.get("run"):
        lines.append(result["run"]["sentence"])
    if result.get("html"):
        lines.append(f"page: {result['html']}")
    return lines
