"""``leakage.html``: whether generated images are training images, against held-out ones.

One self-contained page in coverage.html's style (images embedded as base64 PNG, the curves as
inline SVG, no scripts): the verdict, the two distance curves (share of generated samples within
``d`` of a training and of a held-out image), the strongest matches as a gallery (generated image,
its training image, its nearest held-out image, with distances), and an audit run's modes when
given. It computes no statistic: it takes :func:`gancheck.analysis.leakage.measure_leakage`'s output.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from gancheck.formatting import format_count, format_number as num, format_p, format_share
from gancheck.render.coverage import CSS, _e, _thumb, write_page

PAGE_CSS = CSS + """
.match{display:inline-block;margin:0 14px 14px 0;padding:6px;border:1px solid #e3e5e8;border-radius:6px;vertical-align:top}
.match figure{display:inline-block;margin:0 4px;text-align:center;font-size:10px;color:#5c6670;max-width:84px;word-break:break-all}
.match img{width:72px;height:72px;image-rendering:pixelated;border:1px solid #ddd}
svg{max-width:100%;height:auto} .leak{color:#b3261e} .pass{color:#1b7f3b}
"""
W, H, PAD = 640, 300, 44


def _array_uri(image: np.ndarray, size: int = 72) -> str:
    """A float (H, W, 3) image in [0, 1] as a data: URI, scaled up (nearest) towards ``size``."""
    from PIL import Image

    im = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    scale = max(1, size // max(im.size))
    im = im.resize((im.size[0] * scale, im.size[1] * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def curves_svg(curve: dict, theta: float) -> str:
    """The two shares against distance as an inline SVG line chart, theta marked."""
    d = np.asarray(curve["distance"])
    top = float(d[-1]) or 1.0
    x = lambda v: PAD + (W - 2 * PAD) * v / top  # noqa: E731
    y = lambda s: H - PAD - (H - 2 * PAD) * s  # noqa: E731
    line = lambda s, colour: (f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='"  # noqa: E731
                              + " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(d, s)) + "'/>")
    ticks = "".join(f"<text x='{PAD - 6}' y='{y(s) + 4:.1f}' text-anchor='end' font-size='11'>{s:.0%}</text>"
                    f"<line x1='{PAD}' x2='{W - PAD}' y1='{y(s):.1f}' y2='{y(s):.1f}' stroke='#eef0f2'/>" for s in (0, 0.25, 0.5, 0.75, 1))
    xt = "".join(f"<text x='{x(v):.1f}' y='{H - PAD + 16}' text-anchor='middle' font-size='11'>{v:.2g}</text>" for v in np.linspace(0, top, 5))
    mark = (f"<line x1='{x(theta):.1f}' x2='{x(theta):.1f}' y1='{PAD}' y2='{H - PAD}' stroke='#888' stroke-dasharray='4 3'/>"
            f"<text x='{x(theta) + 4:.1f}' y='{PAD + 10}' font-size='11'>theta</text>") if theta <= top else ""
    legend = ("<text x='{0}' y='18' font-size='12' fill='#b3261e'>training set</text><text x='{1}' y='18' font-size='12' fill='#1f5fa8'>held-out set</text>"
              .format(PAD, PAD + 110))
    return (f"<svg viewBox='0 0 {W} {H}' role='img' aria-label='share of generated samples within distance d'>{ticks}{xt}{mark}"
            f"{line(curve['train_share'], '#b3261e')}{line(curve['holdout_share'], '#1f5fa8')}{legend}"
            f"<text x='{W / 2}' y='{H - 8}' text-anchor='middle' font-size='12'>distance d to the nearest image (Eq. 4)</text></svg>")


def _gallery(result: dict, images: dict, train_dir: Path, holdout_dir: Path) -> str:
    cards = []
    for m in result["matches"]:
        if m["sample"] not in images:
            continue
        cards.append(f"<div class='match'><figure><img src='{_array_uri(images[m['sample']])}' alt='sample {m['sample']}'>"
                     f"<figcaption>sample {m['sample']}<br>{format_count(m['count'])}&times; matched</figcaption></figure>"
                     f"<figure><img src='{_thumb(train_dir / m['train_image'])}' alt='{_e(m['train_image'])}'>"
                     f"<figcaption>train {_e(m['train_image'])}<br>d = {num(m['distance'])}</figcaption></figure>"
                     f"<figure><img src='{_thumb(holdout_dir / m['holdout_image'])}' alt='{_e(m['holdout_image'])}'>"
                     f"<figcaption>held-out {_e(m['holdout_image'])}<br>d = {num(m['holdout_distance'])}</figcaption></figure></div>")
    return "".join(cards) or "<p>No training image is matched within theta closer than every held-out image.</p>"


def _run_section(run: dict) -> str:
    rows = "".join(f"<tr><td>{r['rank']}</td><td>{r['sample_index']}</td><td>{format_share(r['neighbor_fraction'])}</td>"
                   f"<td>{_e(r['train_image'])}</td><td>{num(r['distance'])}</td><td>{'yes' if r['is_training_image'] else 'no'}</td></tr>"
                   for r in run["modes"])
    return (f"<section id='modes'><h2>The audit's dense modes against the training set</h2><p>{_e(run['sentence'])}.</p>"
            "<table><tr><th>rank</th><th>sample</th><th>share of samples</th><th>nearest training image</th><th>distance</th>"
            f"<th>within theta</th></tr>{rows}</table></section>")


def render_leakage(result: dict, images: dict, train_dir: Path, holdout_dir: Path) -> str:
    """The page's HTML."""
    v = result["verdict"]
    parts = [f"<h1>Are generated images training images?</h1><p class='sub'>{_e(result['generator'])}: training set {_e(result['train'])}, "
             f"held-out set {_e(result['holdout'])}</p>",
             f"<section id='summary'><h2>Verdict</h2><p class='big {v['status']}'>{_e(v['status'])}</p><p>{_e(v['headline'])}</p>"
             f"<p>Within theta = {num(result['theta'])}: {format_share(result['train_share'])} of {format_count(result['n_generated'])} "
             f"generated samples match a training image, {format_share(result['holdout_share'])} a held-out image. Distance test "
             f"{format_p(result['distance_p_value'], result['permutations'])}.</p><p class='sub'>{_e(result['equalised'][:1].upper() + result['equalised'][1:])}. {_e(result['tests']['excess'])}; "
             f"{_e(result['tests']['distance'])}.</p></section>",
             f"<section id='curves'><h2>Share of generated samples within d of an image of each set</h2>{curves_svg(result['curve'], result['theta'])}"
             "<p class='sub'>Where the training curve rises above the held-out one, the generator is closer to its training images than "
             "to images of the same distribution it never saw.</p></section>",
             f"<section id='matches'><h2>Strongest matches: generated, training, nearest held-out</h2>{_gallery(result, images, train_dir, holdout_dir)}</section>"]
    if result.get("run"):
        parts.append(_run_section(result["run"]))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>gancheck leakage</title>"
            f"<style>{PAGE_CSS}</style></head><body><main>{''.join(parts)}</main></body></html>")


def write_leakage_html(result: dict, images: dict, train_dir: str | Path, holdout_dir: str | Path, path: str | Path) -> Path:
    """Write leakage.html to ``path`` (atomically)."""
    return write_page(path, render_leakage(result, images, Path(train_dir), Path(holdout_dir)))
