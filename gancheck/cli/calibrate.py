"""The ``gancheck calibrate`` and ``gancheck sample`` commands (registered in :mod:`gancheck.cli`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

import gancheck.api as api
from gancheck.cli.common import (EXIT_GATE, INPUTS, LATENT_INPUT, LATENT_SHAPE, LAYOUT, PRIOR, TRUNCATION, VALUE_RANGE,
                                 generator_options, interactive, parse_count, progress_bar, set_threads)
from gancheck.render.images import save_grid


def calibrate(
    run_dir: Path = typer.Argument(..., help="An audit's run directory (`gancheck audit GENERATOR --out RUN_DIR`)."),
    method: str = typer.Option("is", "--method", help="gmm: reweight K-means cells of the prior (Alg. 1); is: thin a learned latent region around each dense mode (Alg. 2); rejection: thin generated images near the modes (exact; needs the descriptor at sampling time)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Calibrator file to write (default: RUN_DIR/calibrator-METHOD.safetensors)."),
    modes: int = typer.Option(1, "--modes", help="Calibrate the top K distinct dense modes of the run (default 1: the worst-case mode)."),
    r0: Optional[float] = typer.Option(None, "--r0", help="Radius r0 (Eq. 4 distance) around a dense mode whose images count as that mode; default: the run's radius."),
    clusters: Optional[int] = typer.Option(None, "--clusters", help="gmm: number of K-means clusters (default: one per 20 run samples, at most 4096)."),
    max_draws: float = typer.Option(3.0, "--max-draws", help="gmm: most prior draws per kept sample the calibrator may cost; it stops short of an ordinary mode's share when reaching it would cost more."),
    region: str = typer.Option("linear", "--region", help="is: linear (a learned region that works at any latent size) or hull (the paper's exact convex hull, latents of at most 6 values)."),
    proof_dir: Optional[Path] = typer.Option(None, "--proof-dir", help="Run directory of the re-audit that proves the calibrator, with calibration.json (default: RUN_DIR/calibration-METHOD)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file and --proof-dir run."),
    as_json: bool = typer.Option(False, "--json", help="Print calibration.json to stdout (and nothing else)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no before/after table."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda: where the generator and the descriptor run."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for BLAS, FAISS and onnxruntime (default: all cores)."),
):
    """Fit a latent calibrator on an audit run, write it as one portable file, and prove it by re-auditing.
    Exits 1 when the dense modes' share did not drop."""
    set_threads(threads)
    with progress_bar(interactive(quiet) and not as_json) as on_progress:
        result = api.calibrate(run_dir, method=method, out=out, modes=modes, r0=r0, proof_dir=proof_dir, overwrite=overwrite,
                               device=device, progress=on_progress, clusters=clusters, max_draws=max_draws, region=region)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    elif not quiet:
        for line in before_after_lines(result):
            typer.echo(line)
    if not result["improved"]:
        b, a = result["before"]["dense_share"], result["after"]["dense_share"]
        typer.echo(f"gancheck: the dense modes' share did not drop ({100 * b:.2f}% before, {100 * a:.2f}% after, "
                   f"not {result['share_drop']['required_z']:g} standard errors): this calibrator does not help; "
                   "try another --method, more --modes, or a larger audit", err=True)
        raise typer.Exit(EXIT_GATE)


def before_after_lines(result: dict) -> list[str]:
    """The proof as plain text: one figure per line, before and after."""
    b, a, fd = result["before"], result["after"], result["frechet"]

    def pct(x):
        return f"{100 * x:.3f}%"

    def num(x):
        return "inf" if x is None else f"{x:.4f}"

    rows = [
        ("dense mode share (images within r0)", pct(b["dense_share"]), pct(a["dense_share"])),
        ("worst mode neighbour fraction", pct(b["worst_mode"]["neighbor_fraction"]), pct(a["worst_mode"]["neighbor_fraction"])),
        (f"worst mode MCCS ({result['mccs_form']} form)", num(b["worst_mode"]["mccs"]), num(a["worst_mode"]["mccs"])),
        ("MCCS (mu, sigma)", f"({num(b['mccs']['mean'])}, {num(b['mccs']['std'])})", f"({num(a['mccs']['mean'])}, {num(a['mccs']['std'])})"),
        ("draws per kept sample", f"{b['draws_per_sample']:.3f}", f"{a['draws_per_sample']:.3f}"),
        ("Frechet distance off the modes", f"{fd['noise_floor']:.5f} (noise floor)", f"{fd['calibrated_vs_original']:.5f}"
         + (f" ({fd['ratio']:.2f}x floor)" if fd.get("ratio") is not None else "")),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"gancheck calibrate ({result['method']}): {result['n_samples']:,} samples, {result['n_anchors']:,} anchors, r0 = {result['r0']:.4f}",
             f"{'':<{width}}  {'before':>24}  {'after':>24}"]
    lines += [f"{name:<{width}}  {x:>24}  {y:>24}" for name, x, y in rows]
    for i, r in enumerate(result.get("region") or []):
        lines.append(f"latent region of mode {i + 1}: precision {r['precision']:.3f}, recall {r['recall']:.3f} "
                     f"on {r['held_out']:,} held-out samples ({r['held_out_in_mode']:,} in the mode)")
    lines += [f"note: {n}" for n in result.get("notes", [])]
    lines.append(f"calibrator: {result['calibrator']['path']}")
    lines.append(f"proof: {Path(result['proof_run']) / 'calibration.json'}")
    return lines


def sample(
    generator: str = typer.Argument(..., help="The generator: an .onnx file, a TorchScript file (.pt) or a Python callable package.module:attr."),
    calibrator: Optional[Path] = typer.Option(None, "--calibrator", help="Draw latents with this calibrator (from `gancheck calibrate`); default: the plain prior."),
    n: str = typer.Option("64", "--n", help="Number of images (sample indices 0..n-1)."),
    out: Path = typer.Option(Path("samples.png"), "--out", help="PNG file for the grid of images."),
    seed: int = typer.Option(0, "--seed", help="Seed; each image is reproducible from (seed, sample index)."),
    columns: Optional[int] = typer.Option(None, "--columns", help="Images per row (default: a square grid)."),
    force: bool = typer.Option(False, "--force", help="Use --calibrator even though it was built for another generator."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images generated per batch."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda: where the generator (and a rejection calibrator's descriptor) run."),
    layout: str = LAYOUT,
    value_range: str = VALUE_RANGE,
    prior: str = PRIOR,
    truncation: float = TRUNCATION,
    latent_input: Optional[str] = LATENT_INPUT,
    latent_shape: Optional[str] = LATENT_SHAPE,
    inputs: Optional[List[str]] = INPUTS,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing."),
):
    """Write a PNG grid of the generator's images, drawn through a calibrator when one is given."""

    images = api.sample_images(generator, n=parse_count(n, "--n"), seed=seed, calibrator=calibrator, force=force, device=device,
                           batch_size=batch_size, **generator_options(layout, value_range, prior, truncation, latent_input, latent_shape, inputs))
    path = save_grid(images, out, columns)
    if not quiet:
        typer.echo(f"{len(images)} images{' through ' + str(calibrator) if calibrator else ''}: {path}")
