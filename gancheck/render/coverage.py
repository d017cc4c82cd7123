"""``coverage.html``: what the generator does not make, as rows of real images (Bau et al.'s figures).

One self-contained page (images embedded as base64 PNG, no scripts): the NDB/K summary, one row
per dropped bin with its shares and its most typical reference images, the per-bin table, and the
attribute table when a classifier was given. It computes no statistic: it takes
:func:`gancheck.analysis.coverage.measure_coverage`'s output.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from gancheck.files import atomic_write
from gancheck.formatting import format_change, format_count, format_number as num, format_share

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f4f5f7;color:#1d232a}
main{max-width:1120px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:0 0 10px;border-bottom:1px solid #e3e5e8;padding-bottom:6px}
.sub{color:#5c6670;font-size:13px;word-break:break-all}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:18px 20px;margin:16px 0;overflow-x:auto}
table{border-collapse:collapse;font-size:13px;width:100%} td,th{padding:4px 8px;border-bottom:1px solid #eef0f2;text-align:left;vertical-align:middle}
.row img{width:72px;height:72px;image-rendering:pixelated;margin-right:4px;border:1px solid #ddd}
.row figure{display:inline-block;margin:0 6px 0 0;text-align:center;font-size:10px;color:#5c6670}
.big{font-size:20px;font-weight:600}
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _thumb(path: Path, size: int = 72) -> str:
    """The image file as a data: URI, scaled to ``size`` pixels (nearest: small images stay sharp)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = max(1, size // max(im.size))
        im = im.resize((im.size[0] * scale, im.size[1] * scale), Image.NEAREST)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pct(x: float) -> str:
    return format_share(x)


def _dropped_rows(result: dict, reference_dir: Path) -> str:
    rows = []
    for d in result["dropped"]:
        figures = "".join(f'<figure><img src="{_thumb(reference_dir / name)}" alt="{_e(name)}"><figcaption>{_e(name)}</figcaption></figure>'
                          for name in d["examples"])
        lo, hi = d["generated_ci"]
        rows.append(f"<tr><td>bin {d['bin']}</td><td>{_pct(d['reference_share'])}</td><td>{_pct(d['generated_share'])} "
                    f"<span class='sub'>[{_pct(lo)}, {_pct(hi)}]</span></td><td>{num(d['q_value'])}</td><td class='row'>{figures}</td></tr>")
    if not rows:
        return "<p>No bin is under-generated at this false-discovery rate.</p>"
    return ("<table><tr><th>bin</th><th>real share</th><th>generated share [95% CI]</th><th>q</th><th>most typical real images</th></tr>"
            + "".join(rows) + "</table>")


def _bins_table(result: dict) -> str:
    rows = "".join(f"<tr><td>{b['bin']}</td><td>{format_count(b['reference_count'])}</td><td>{_pct(b['reference_share'])}</td><td>{format_count(b['generated_count'])}</td>"
                   f"<td>{_pct(b['generated_share'])} <span class='sub'>[{_pct(b['generated_ci'][0])}, {_pct(b['generated_ci'][1])}]</span></td>"
                   f"<td>{format_change(b['z'])}</td><td>{num(b['q_value'])}</td></tr>" for b in result["bins"])
    return ("<table><tr><th>bin</th><th>real images</th><th>real share</th><th>generated images</th><th>generated share [95% CI]</th>"
            "<th>z</th><th>q</th></tr>" + rows + "</table>")


def _attributes_table(att: dict) -> str:
    lines = "".join(f"<li>{_e(f)}</li>" for f in att["findings"]) or "<li>no attribute differs at this false-discovery rate</li>"
    rows = "".join(f"<tr><td>{_e(a['attribute'])}</td><td>{_pct(a['reference'])}</td><td>{_pct(a['generated'])}</td>"
                   f"<td>{format_change(a['difference'], share=True)} <span class='sub'>[{format_change(a['difference_ci'][0], share=True)}, {format_change(a['difference_ci'][1], share=True)}]</span></td>"
                   f"<td>{num(a['q_value'])}</td></tr>" for a in att["attributes"])
    return (f"<ul>{lines}</ul><p>Fréchet attribute distance (FSD form): <b>{num(att['frechet_attribute_distance'])}</b></p>"
            "<table><tr><th>attribute</th><th>real</th><th>generated</th><th>difference [95% CI]</th><th>q</th></tr>" + rows + "</table>")


def render_coverage(result: dict, reference_dir: Path) -> str:
    """The page's HTML."""
    att = result.get("attributes")
    parts = [
        f"<h1>What the generator does not make</h1><p class='sub'>{_e(result['generator'])} against {_e(result['reference'])}</p>",
        f"<section><h2>Summary</h2><p><span class='big'>NDB/K = {result['ndb']}/{result['k']} = {num(result['ndb_over_k'])}</span> "
        f"bins differ (false-discovery rate {_pct(result['alpha'])}): {result['under_generated']} under-generated, "
        f"{result['over_generated']} over-generated.</p><p class='sub'>{_e(result['binning'])}. {_e(result['test'])}. "
        f"{format_count(result['n_reference'])} real and {format_count(result['n_generated'])} generated images described.</p></section>",
        f"<section><h2>Dropped bins: real images the generator under-produces, strongest first</h2>{_dropped_rows(result, reference_dir)}</section>",
    ]
    if att:
        parts.append(f"<section><h2>Attributes ({_e(att['kind'])} classifier)</h2>{_attributes_table(att)}</section>")
    parts.append(f"<section><h2>Every bin</h2>{_bins_table(result)}</section>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>gancheck coverage</title>"
            f"<style>{CSS}</style></head><body><main>{''.join(parts)}</main></body></html>")


def write_page(path: str | Path, page: str) -> Path:
    """Write one page to ``path`` (atomically, its folder made if needed); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, page)
    return path


def write_coverage_html(result: dict, reference_dir: str | Path, path: str | Path) -> Path:
    """Write coverage.html to ``path`` (atomically)."""
    return write_page(path, render_coverage(result, Path(reference_dir)))
