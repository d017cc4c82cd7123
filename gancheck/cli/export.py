"""``gancheck export-embedder``: an embedder's network as an ONNX file, for use elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

import gancheck.api as api


def export_embedder(
    name: str = typer.Argument(..., metavar="NAME", help="Embedder to export: dlib (dlib's ResNet face embedder)."),
    out: Path = typer.Option(..., "--out", metavar="FILE.onnx", help="Where to write the ONNX graph."),
    model: Optional[Path] = typer.Option(None, "--model", metavar="FILE.dat", show_default="face-recognition-models' file",
                                         help="The dlib .dat network to convert."),
):
    """Write an embedder's network as ONNX: input (N, 150, 150, 3) RGB 0..255 chips, output (N, 128) raw descriptors."""
    path = api.export_embedder(name, out, model)
    print(f"wrote {path}")


def export_descriptor(
    name: str = typer.Argument(..., metavar="NAME", help="Embedder to export: dlib."),
    out: Path = typer.Option(..., "--out", metavar="FILE.onnx", help="Where to write the ONNX graph."),
    model: Optional[Path] = typer.Option(None, "--model", metavar="FILE.dat", help="The dlib .dat network to convert."),
):
    """Deprecated name of export-embedder (kept for one release)."""
    typer.echo("gancheck: export-descriptor is now export-embedder; the old name goes in the next release", err=True)
    export_embedder(name, out, model)
