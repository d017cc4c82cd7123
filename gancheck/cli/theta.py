"""``gancheck theta``: estimate a descriptor's theta and r from labelled image pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from gancheck.analysis.thresholds import build_embedder, estimate_from_folder


def theta_command(
    pairs_dir: Annotated[Path, typer.Argument(metavar="PAIRS_DIR", help="Folder with same/<pair>/ and different/<pair>/ sub-folders of two images each.")],
    embedder: Annotated[str, typer.Option("--embedder", "-e", metavar="NAME", help="Descriptor: dlib, insightface, pixel or onnx:PATH.")] = "dlib",
    align: Annotated[Optional[str], typer.Option("--align", metavar="detect|fixed|detect-cnn", show_default="detect", help="Face descriptors: detect (find the face), fixed (pre-aligned crops) or, for dlib, detect-cnn (dlib's CNN face detector).")] = None,
    insightface_dir: Annotated[Optional[Path], typer.Option("--insightface-dir", envvar="GANCHECK_INSIGHTFACE_DIR", metavar="DIR", help="Directory holding the InsightFace model pack.")] = None,
    device: Annotated[str, typer.Option("--device", metavar="auto|cpu|cuda", help="Where the descriptor runs (auto: CUDA when present).")] = "auto",
    threads: Annotated[Optional[int], typer.Option("--threads", metavar="N", show_default="all cores", help="CPU threads / worker processes.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON (and nothing else).")] = False,
):
    """Estimate a descriptor's theta and r (normalised angular distances, Eq. 4) from image pairs."""
    model = build_embedder(embedder, align, insightface_dir, device, threads)
    result = estimate_from_folder(pairs_dir, model)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    s, d = result["same_distance"], result["different_distance"]
    print(f"descriptor {embedder}: {result['n_same']} same-identity and {result['n_different']} different-identity pairs")
    print(f"  same pairs      d: min {s['min']:.4f}  median {s['median']:.4f}  max {s['max']:.4f}")
    print(f"  different pairs d: min {d['min']:.4f}  median {d['median']:.4f}  max {d['max']:.4f}")
    print(
        f"  theta = {result['theta']:.4f}  (best accuracy {result['accuracy_at_theta']:.3f}; "
        f"TAR {result['at_theta']['tar']:.3f}, FAR {result['at_theta']['far']:.3f})"
    )
    print(
        f"  r     = {result['radius']:.4f}  (theta x 0.25/0.3; TAR {result['at_radius']['tar']:.3f}, "
        f"FAR {result['at_radius']['far']:.3f})"
    )
    defaults = result["descriptor_defaults"]
    print(f"  descriptor defaults: theta {defaults['theta']:.4f}, r {defaults['radius']:.4f}")
    if result["skipped_pairs_no_face"]:
        print(f"  skipped (no face found): {', '.join(result['skipped_pairs_no_face'])}")
