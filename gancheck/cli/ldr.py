"""``gancheck ldr``: the discriminator's view of a training set (Self-Diagnosing GAN: LDRM, LDRV)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

import gancheck.api as api
from gancheck.formatting import format_count, format_number as num
from gancheck.cli.common import positive, set_threads
from gancheck.cli.progress import Reporter, choose_mode


def ldr(
    discriminators: List[Path] = typer.Option(..., "--discriminator", metavar="D.onnx", help="Discriminator checkpoints D_1.onnx ... D_T.onnx (one input: an image batch; one output per image: a logit or a probability). Give the flag once followed by every file, or repeat it."),
    data: Path = typer.Option(..., "--data", metavar="DIR", help="Folder of training images (PNG/JPEG/WebP, searched recursively)."),
    extra: Optional[List[Path]] = typer.Argument(None, metavar="D.onnx ...", help="More checkpoints (what a shell glob after --discriminator expands to)."),
    out: Path = typer.Option(Path("ldr.parquet"), "--out", metavar="FILE", help="Parquet table: file, ldrm, ldrv, score and each checkpoint's LDR, one row per image."),
    weights_out: Optional[Path] = typer.Option(None, "--weights-out", metavar="FILE", help="Also write per-image sampling weights proportional to the score (phase 2, for your training loader): file, weight; CSV if FILE ends in .csv, else Parquet."),
    k: float = typer.Option(1.0, "-k", metavar="K", help="Weight of sqrt(LDRV) in the discrepancy score LDRM + k sqrt(LDRV)."),
    input_range: str = typer.Option("-1,1", "--input-range", metavar="-1,1|0,1|0,255", help="Pixel value range the discriminator takes (a GAN's tanh images: -1,1)."),
    output: str = typer.Option("auto", "--output", metavar="auto|logit|probability", help="What the discriminator returns; auto: probability when its graph ends in a Sigmoid, else logit."),
    top: int = typer.Option(16, "--top", metavar="N", help="How many of the most under-represented images to list (and draw with --sheet)."),
    html: Optional[Path] = typer.Option(None, "--html", metavar="FILE", show_default="ldr.html next to --out", help="Page showing the --top most under-represented images with their scores."),
    sheet: Optional[Path] = typer.Option(None, "--sheet", metavar="FILE.png", help="Also draw the --top most under-represented images as a PNG grid."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON to stdout (and nothing else)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
    batch_size: int = typer.Option(64, "--batch-size", metavar="N", help="Images scored per batch; results do not depend on it."),
    device: str = typer.Option("auto", "--device", metavar="auto|cpu|cuda", help="Where the discriminators run."),
    threads: Optional[int] = typer.Option(None, "--threads", metavar="N", show_default="all cores", help="CPU threads for onnxruntime."),
):
    """Score every training image under each discriminator checkpoint: log density ratio, LDRM, LDRV
    and the discrepancy score; the highest scores are the images the generator under-represents."""
    set_threads(threads)
    positive(batch_size, "--batch-size")
    paths = list(discriminators) + list(extra or [])
    mode = choose_mode(quiet, as_json)
    with Reporter(mode) as rep:
        result = api.ldr(paths, data, out=out, weights_out=weights_out, top=top, html=html or Path(out).with_name("ldr.html"), k=k, input_range=input_range, output=output,
                         device=device, threads=threads, batch_size=batch_size, progress=rep.progress)
    if sheet is not None:
        from gancheck.analysis.coverage import load_reference
        from gancheck.render.images import save_grid

        files = [Path(data) / t["file"] for t in result["top"]]
        folder = load_reference(data, "--data")
        index = {p: i for i, p in enumerate(folder.files)}
        result["sheet"] = str(save_grid(folder.images([index[f] for f in files]), sheet))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    elif not quiet:
        for line in ldr_lines(result):
            typer.echo(line)
        typer.echo(f"table: {result['out']}" + (f"; weights: {result['weights_out']}" if result["weights_out"] else "")
                   + (f"; sheet: {result['sheet']}" if result.get("sheet") else "") + f"; page: {result['html']}")
    if mode == "lines":
        typer.echo(f"gancheck: finished in {rep.elapsed()}; highest discrepancy score {num(result['score']['max'])}; page: {result['html']}", err=True)


def ldr_lines(result: dict) -> list[str]:
    """The summary and the most under-represented images, in gancheck.formatting' one rule."""
    lines = [f"{format_count(result['images'])} images x {result['checkpoints']} checkpoints; discrepancy score LDRM + {num(result['k'])} sqrt(LDRV): "
             f"mean {num(result['score']['mean'])}, max {num(result['score']['max'])}",
             "most under-represented (highest score first):"]
    lines += [f"  {num(t['score']):>9}  LDRM {num(t['ldrm']):>8}  LDRV {num(t['ldrv']):>8}  {t['file']}" for t in result["top"]]
    return lines
