"""The ``gancheck calibrate`` and ``gancheck sample`` commands (registered in :mod:`gancheck.cli`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

import gancheck.api as api
from gancheck.cli.common import (EXIT_GATE, INPUTS, LATENT_INPUT, LATENT_SHAPE, LAYOUT, PRIOR, TRUNCATION, VALUE_RANGE,
                                 finite, generator_options, parse_count, positive, set_threads)
from gancheck.cli.progress import Reporter, choose_mode
from gancheck.formatting import format_change, format_count, format_number, format_share


def calibrate(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="An audit's run directory (`gancheck audit GENERATOR --out RUN_DIR`)."),
    method: str = typer.Option("is", "--method", metavar="gmm|is|cascade|rejection|drs", help="gmm: thin latents where Gaussian mixtures of each mode's latents outweigh the rest (Alg. 1; --region cells: reweight K-means cells of the prior); is: thin a learned latent region around each dense mode, its model family chosen on held-out samples (Alg. 2); cascade: the is (or gmm) region as a screen, the candidates it doubts generated, described and thinned exactly (needs the embedder at sampling time for those only); rejection: thin generated images near the modes (exact; needs the embedder at sampling time for every candidate); drs: discriminator rejection sampling (needs --discriminator, and the discriminator at sampling time)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="FILE", help="Calibrator file to write; default: calibrator-METHOD.safetensors in RUN_DIR."),
    modes: int = typer.Option(1, "--modes", metavar="K", help="Calibrate the top K distinct dense modes of the run (1: the worst-case mode)."),
    r0: Optional[float] = typer.Option(None, "--r0", metavar="D", show_default="the run's radius r", help="Radius r0 around a dense mode whose images count as that mode, as a normalised angular distance (Eq. 4, 0 to 1)."),
    clusters: Optional[int] = typer.Option(None, "--clusters", metavar="K", show_default="one per 20 run samples, at most 4096", help="gmm: number of K-means clusters."),
    max_draws: Optional[float] = typer.Option(None, "--max-draws", metavar="X", show_default="1.5 for learned regions, 3 for gmm cells", help="Most prior draws per kept sample the calibrator may cost; it stops short of an ordinary mode's share when reaching it would cost more."),
    max_frechet: Optional[float] = typer.Option(None, "--max-frechet", metavar="X", show_default="0.35", help="is/gmm with a learned region: how far thinning may move the off-mode descriptor distribution, as a share of the proof's Fréchet noise floor (predicted on held-out samples; the proof's Fréchet ratio is then about 1 + X). Larger removes more of the modes' excess and changes the other samples more."),
    region: Optional[str] = typer.Option(None, "--region", metavar="KIND", show_default="auto for is, mixture for gmm", help="is: auto (the candidate with the best held-out score among logistic, boosting, mlp, knn and ensemble, the product of logistic, mlp and boosting), one of those, linear (logistic on z and |z|^2, no budget) or hull (the paper's exact convex hull, latents of at most 6 values); gmm: mixture (Gaussian mixtures of each mode's latents against the other latents' mixture or the prior's density, chosen on held-out samples) or cells (K-means cells of the prior)."),
    screen: Optional[str] = typer.Option(None, "--screen", metavar="is|gmm", show_default="is", help="cascade: the latent method whose fitted region model screens the candidates (its --region, --max-draws and --max-frechet apply)."),
    describe_share: Optional[float] = typer.Option(None, "--describe-share", metavar="Q", show_default="the smallest share predicted to remove 90% of what describing every candidate removes", help="cascade: the share of candidates (0 < Q <= 1) the screen sends to the embedder, those it ranks most likely in a mode; 1 describes every candidate (rejection)."),
    max_descriptor_calls: Optional[float] = typer.Option(None, "--max-descriptor-calls", metavar="C", help="cascade: choose the largest describe share whose predicted embedder calls per kept sample stay within C (instead of --describe-share)."),
    budget: Optional[int] = typer.Option(None, "--budget", metavar="N", show_default="the audit's |C|", help="is/gmm with a learned region, cascade: extra samples to generate and describe around the modes' boundaries (half local perturbations of the modes' latents, half prior draws near the current region); stored in RUN_DIR and reused when calibrate runs again."),
    export_onnx: Optional[Path] = typer.Option(None, "--export-onnx", metavar="FILE", help="Also write the calibrated sampler's decision as a small ONNX graph (latent z in, keep_probability out) to ship next to the generator; for a cascade the graph also outputs screen_scores and describe, and the embedder's network is written beside it as FILE-embedder.onnx where it has an ONNX export (dlib)."),
    discriminator: Optional[Path] = typer.Option(None, "--discriminator", metavar="D.onnx", help="drs: the discriminator (an ONNX model from an image batch to one logit or probability per image) trained against this generator."),
    discriminator_range: str = typer.Option("-1,1", "--discriminator-range", metavar="-1,1|0,1|0,255", help="drs: the pixel value range the discriminator takes."),
    proof_dir: Optional[Path] = typer.Option(None, "--proof-dir", metavar="DIR", show_default="RUN_DIR/calibration-METHOD", help="Run directory of the re-audit that proves the calibrator, with calibration.json and a before/after report.html."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file and --proof-dir run."),
    resume: bool = typer.Option(False, "--resume", help="Finish a stopped or killed calibration: refit (the fit is seeded) and continue its proof audit from its finished shards."),
    as_json: bool = typer.Option(False, "--json", help="Print calibration.json to stdout (and nothing else); progress lines still go to stderr unless --quiet."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors (no progress, no before/after table)."),
    device: str = typer.Option("auto", "--device", metavar="auto|cpu|cuda", help="Where the generator and the embedder run (auto: CUDA when present)."),
    threads: Optional[int] = typer.Option(None, "--threads", metavar="N", show_default="all cores", help="CPU threads for BLAS, FAISS and onnxruntime."),
):
    """Fit a latent calibrator on an audit run, write it as one portable file, and prove it by re-auditing.
    Exits 1 when the dense modes' share did not drop."""
    set_threads(threads)
    positive(clusters, "--clusters"), positive(modes, "--modes")
    finite(r0, "--r0", 0.0, 1.0), finite(max_draws, "--max-draws", 1.0), finite(max_frechet, "--max-frechet", 0.0)
    mode = choose_mode(quiet, as_json)
    with Reporter(mode) as rep:
        result = api.calibrate(run_dir, method=method, out=out, modes=modes, r0=r0, proof_dir=proof_dir, overwrite=overwrite, resume=resume,
                               device=device, progress=rep.progress, log=rep.logger, clusters=clusters,
                               max_draws=max_draws, max_frechet=max_frechet, region=region, budget=budget, export_onnx=export_onnx,
                               screen=screen, describe_share=describe_share, max_descriptor_calls=max_descriptor_calls,
                               **({"discriminator": discriminator, "discriminator_range": discriminator_range} if discriminator else {}))
    if as_json:
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "change"}, indent=2))
    elif not quiet:
        for line in before_after_lines(result):
            typer.echo(line)
    if mode == "lines":
        typer.echo(f"gancheck: finished in {rep.elapsed()}. {result['change']['headline']}. "
                   f"Report: {Path(result['proof_run']) / 'report.html'}", err=True)
    if not result["improved"]:
        b, a = result["before"]["dense_share"], result["after"]["dense_share"]
        typer.echo(f"gancheck: the dense modes' share did not drop ({format_share(b)} before, {format_share(a)} after, "
                   f"not {format_number(result['share_drop']['required_z'])} standard errors): this calibrator does not help; "
                   f"{result.get('advice') or 'try another --method, more --modes, or a larger audit'}", err=True)
        raise typer.Exit(EXIT_GATE)


def before_after_lines(result: dict) -> list[str]:
    """The proof as plain text, led by the targeted modes' shares; one figure per line, before and after."""
    b, a, fd, change = result["before"], result["after"], result["frechet"], result["change"]
    rows = [(f"targeted mode {t['sample_index']}: share within r0", format_share(t["before"]), format_share(t["after"]),
             format_change(None if t["after"] is None else t["after"] - t["before"], share=True)) for t in change["targeted"]]
    if len(change["targeted"]) > 1:
        rows.append(("targeted modes together: share within r0", format_share(b["dense_share"]), format_share(a["dense_share"]),
                     format_change(a["dense_share"] - b["dense_share"], share=True)))
    wa = change["worst_after"]
    identity = {True: "a targeted identity", False: "another identity", None: "identity not checked"}[wa["same_identity"]]
    rows += [
        ("worst mode of the run: sample", str(change["worst_before"]["sample_index"]), f"{wa['sample_index']} ({identity})", ""),
        ("worst mode of the run: share within r", format_share(b["worst_mode"]["neighbor_fraction"]), format_share(a["worst_mode"]["neighbor_fraction"]),
         format_change(a["worst_mode"]["neighbor_fraction"] - b["worst_mode"]["neighbor_fraction"], share=True)),
        (f"worst mode of the run: MCCS ({result['mccs_form']} form)", format_number(b["worst_mode"]["mccs"]), format_number(a["worst_mode"]["mccs"]), _delta(b["worst_mode"]["mccs"], a["worst_mode"]["mccs"])),
        ("MCCS mean mu", format_number(b["mccs"]["mean"]), format_number(a["mccs"]["mean"]), _delta(b["mccs"]["mean"], a["mccs"]["mean"])),
        ("MCCS std sigma", format_number(b["mccs"]["std"]), format_number(a["mccs"]["std"]), _delta(b["mccs"]["std"], a["mccs"]["std"])),
        ("draws per kept sample", format_number(b["draws_per_sample"]), format_number(a["draws_per_sample"]), ""),
        ("Frechet distance off the modes", f"{format_number(fd['noise_floor'])} (noise floor)", format_number(fd["calibrated_vs_original"])
         + (f" ({format_number(fd['ratio'])}x floor)" if fd.get("ratio") is not None else ""), ""),
    ]
    width = max(len(r[0]) for r in rows)
    cols = [max(len(r[i]) for r in rows + [("", "before", "after", "change")]) for i in (1, 2, 3)]
    lines = [f"gancheck calibrate ({result['method']}): {format_count(result['n_samples'])} samples, {format_count(result['n_anchors'])} anchors, "
             f"r0 = {format_number(result['r0'])}", change["headline"] + "."]
    lines += change["sentences"]
    lines.append(f"{'':<{width}}  {'before':>{cols[0]}}  {'after':>{cols[1]}}  {'change':>{cols[2]}}")
    lines += [f"{name:<{width}}  {x:>{cols[0]}}  {y:>{cols[1]}}  {d:>{cols[2]}}" for name, x, y, d in rows]
    if result.get("region"):
        lines.append(f"latent regions: {region_model(result.get('params') or {})}")
    for i, r in enumerate(result.get("region") or []):
        lines.append(f"latent region of mode {i + 1}: precision {format_number(r['precision'])}, recall {format_number(r['recall'])} "
                     f"on {format_count(r['held_out'])} held-out samples ({format_count(r['held_out_in_mode'])} in the mode)")
    lines += excess_lines(result)
    lines += [f"note: {n}" for n in result.get("notes", [])]
    lines.append(f"calibrator: {result['calibrator']['path']}")
    lines.append(f"proof: {Path(result['proof_run']) / 'calibration.json'}; before/after report: {Path(result['proof_run']) / 'report.html'}")
    return lines


def region_model(params: dict) -> str:
    """The fitted region model in words (gmm states its score; is names the family it selected)."""
    if params.get("score"):
        return params["score"]
    chosen = str(params.get("region"))
    if params.get("selected_from"):
        chosen += f" (the best of {', '.join(params['selected_from'])} by {params.get('selection')})"
    return chosen


def excess_lines(result: dict) -> list[str]:
    """Per targeted mode, on fresh samples: share before and after (95% intervals), the floor, the
    fraction of the excess removed; then the total and the cost."""
    def share(x):
        return f"{format_share(x['share'])} [{format_share(x['low'])}, {format_share(x['high'])}]"

    def removed(x):
        return "n/a (no excess)" if x is None else format_share(x)

    lines = []
    for i, m in enumerate(result.get("modes") or []):
        lines.append(f"mode {i + 1} on fresh samples: {share(m['before'])} -> {share(m['after'])}; typical anchor {format_share(m['floor'])}; "
                     f"excess removed {removed(m['excess_removed'])}")
    t, cost = result.get("total"), result.get("cost") or {}
    if t and len(result.get("modes") or []) > 1:
        lines.append(f"modes together: {format_share(t['before'])} -> {format_share(t['after'])}; excess removed {removed(t['excess_removed'])}")
    if cost.get("embedder_calls"):
        calls = cost["embedder_calls"]
        lines.append(f"cost: {format_number(cost['draws_per_kept_sample'])} prior draws per kept sample; embedder calls: "
                     f"{format_count(calls['audit'])} audit, {format_count(calls['budget'])} calibration budget, {format_count(calls['proof'])} proof")
    return lines


def _delta(before, after) -> str:
    return "" if before is None or after is None else format_change(after - before)


def sample(
    generator: str = typer.Argument(..., metavar="GENERATOR", help="The generator: an .onnx file, a PyTorch 2 file (.pt2), a TorchScript file (.pt) or a Python callable package.module:attr."),
    calibrator: Optional[Path] = typer.Option(None, "--calibrator", metavar="FILE", show_default="the plain prior", help="Draw latents with this calibrator (from `gancheck calibrate`)."),
    n: str = typer.Option("64", "--n", metavar="N", help="Number of images (sample indices 0..n-1)."),
    out: Path = typer.Option(Path("samples.png"), "--out", metavar="FILE", help="PNG file for the grid of images."),
    seed: int = typer.Option(0, "--seed", metavar="SEED", help="Seed; each image is reproducible from (seed, sample index)."),
    columns: Optional[int] = typer.Option(None, "--columns", metavar="N", show_default="a square grid", help="Images per row."),
    force: bool = typer.Option(False, "--force", help="Use --calibrator even though it was built for another generator."),
    batch_size: int = typer.Option(64, "--batch-size", metavar="N", help="Images generated per batch; the images do not depend on it."),
    device: str = typer.Option("auto", "--device", metavar="auto|cpu|cuda", help="Where the generator (and a rejection calibrator's embedder) run (auto: CUDA when present)."),
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

    positive(columns, "--columns")
    count = parse_count(n, "--n")
    path = api.sample(generator, out, n=count, columns=columns, seed=seed, calibrator=calibrator, force=force, device=device,
                      batch_size=batch_size, **generator_options(layout, value_range, prior, truncation, latent_input, latent_shape, inputs))
    if not quiet:
        typer.echo(f"{count} images{' through ' + str(calibrator) if calibrator else ''}: {path}")
