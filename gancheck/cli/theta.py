"""``gancheck theta``: estimate an embedder's theta and r from labelled image pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from gancheck.analysis.thresholds import build_embedder, estimate_from_folder
from gancheck.formatting import format_count, format_number as num, format_share


def theta_command(
    pairs_dir: Annotated[Path, typer.Argument(metavar="PAIRS_DIR", help="Folder with same/<pair>/ and different/<pair>/ sub-folders of two images each.")],
    embedder: Annotated[str, typer.Option("--embedder", "-e", metavar="NAME", help="Embedder: dlib, insightface, pixel or onnx:PATH.")] = "dlib",
    align: Annotated[Optional[str], typer.Option("--align", metavar="detect|fixed|detect-cnn", show_default="detect", help="Face embedders: detect (find the face), fixed (pre-aligned crops) or, for dlib, detect-cnn (dlib's CNN face detector).")] = None,
    insightface_dir: Annotated[Optional[Path], typer.Option("--insightface-dir", envvar="GANCHECK_INSIGHTFACE_DIR", metavar="DIR", help="Directory holding the InsightFace model pack.")] = None,
    device: Annotated[str, typer.Option("--device", metavar="auto|cpu|cuda", help="Where the embedder runs (auto: CUDA when present).")] = "auto",
    threads: Annotated[Optional[int], typer.Option("--threads", metavar="N", show_default="all cores", help="CPU threads / worker processes.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON (and nothing else).")] = False,
):
    """Estimate an embedder's theta and r (normalised angular distances, Eq. 4) from image pairs."""
    model = build_embedder(embedder, align, insightface_dir, device, threads)
    result = estimate_from_folder(pairs_dir, model)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for line in theta_lines(embedder, result):
        print(line)
    if result["skipped_pairs_no_face"]:
        print(f"  skipped (no face found): {', '.join(result['skipped_pairs_no_face'])}")


def theta_lines(embedder: str, result: dict) -> list[str]:
    """The estimate in plain lines, every figure in gancheck.formatting' one rule (distances to three
    significant digits, accuracies and acceptance rates as percentages)."""
    s, d = result["same_distance"], result["different_distance"]
    defaults = result["embedder_defaults"]
    return [
        f"embedder {embedder}: {format_count(result['n_same'])} same-identity and {format_count(result['n_different'])} different-identity pairs",
        f"  same pairs      d: min {num(s['min'])}  median {num(s['median'])}  max {num(s['max'])}",
        f"  different pairs d: min {num(d['min'])}  median {num(d['median'])}  max {num(d['max'])}",
        f"  theta = {num(result['theta'])}  (best accuracy {format_share(result['accuracy_at_theta'])}; "
        f"TAR {format_share(result['at_theta']['tar'])}, FAR {format_share(result['at_theta']['far'])})",
        f"  r     = {num(result['radius'])}  (theta x 5/6, gancheck's convention for r; TAR {format_share(result['at_radius']['tar'])}, "
        f"FAR {format_share(result['at_radius']['far'])})",
        f"  embedder defaults: theta {num(defaults['theta'])}, r {num(defaults['radius'])}",
    ]
