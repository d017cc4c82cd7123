"""``ldr.html``: the training images the discriminator says the generator under-represents, as a row
of pictures with their LDRM, LDRV and discrepancy score (highest first). It computes no statistic:
it takes :func:`gancheck.api.ldr`'s summary."""

from __future__ import annotations

from pathlib import Path

from gancheck.formatting import format_count, format_number as num
from gancheck.render.coverage import CSS, _e, _thumb, write_page


def render_ldr(summary: dict, data_dir: Path) -> str:
    """The page's HTML."""
    cells = "".join(f"<figure><img src='{_thumb(data_dir / t['file'])}' alt='{_e(t['file'])}'><figcaption>{_e(t['file'])}<br>"
                    f"s {num(t['score'])} · M {num(t['ldrm'])} · V {num(t['ldrv'])}</figcaption></figure>" for t in summary["top"])
    rows = "".join(f"<tr><td>{i + 1}</td><td>{_e(t['file'])}</td><td>{num(t['score'])}</td><td>{num(t['ldrm'])}</td><td>{num(t['ldrv'])}</td>"
                   f"<td>{num(t['weight'])}</td></tr>" for i, t in enumerate(summary["top"]))
    discs = "".join(f"<li>{_e(d['path'])} <span class='sub'>({_e(d['output'])}, input {_e(d['input_range'])})</span></li>" for d in summary["discriminators"])
    return ("<!doctype html><html><head><meta charset='utf-8'><title>gancheck ldr</title>"
            f"<style>{CSS}</style></head><body><main><h1>The discriminator's view: under-represented training images</h1>"
            f"<p class='sub'>{_e(summary['data'])}: {format_count(summary['images'])} images, {summary['checkpoints']} checkpoints</p>"
            f"<section><h2>Highest discrepancy score LDRM + {num(summary['k'])} sqrt(LDRV) first</h2><div class='row'>{cells}</div></section>"
            "<section><h2>Scores</h2><table><tr><th>rank</th><th>file</th><th>score</th><th>LDRM</th><th>LDRV</th><th>sampling weight</th></tr>"
            f"{rows}</table><p class='sub'>Checkpoints:</p><ul>{discs}</ul></section></main></body></html>")


def write_ldr_html(summary: dict, data_dir: str | Path, path: str | Path) -> Path:
    """Write ldr.html to ``path`` (atomically)."""
    return write_page(path, render_ldr(summary, Path(data_dir)))
