"""The run's human report, ``report.html``: one self-contained file (images embedded as base64
PNG, static matplotlib plots, no scripts) that opens offline, in the paper's own figures.

:func:`enrich_report` computes the extra report figures (confidence intervals, diversity,
Ripley test, reference-set metrics) from the run directory's files; :func:`write_html` renders
the page. Both read only the run directory (and regenerate images through
:func:`gancheck.api.open_run`).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from gancheck.analysis import intervals
from gancheck.analysis.report import BOX_POINTS, N_SIMS, RunData, enrich_report, load_run, merge_report, ripley
from gancheck.analysis.verdict import verdict
from gancheck.numbers import format_p, format_share
from gancheck.errors import GancheckError
from gancheck.run.directory import open_run
from gancheck.defaults import BATCH_SIZE
from gancheck.images import to_uint8

# ----------------------------------------------------------------------------- images


def _png(image) -> str:
    """A PIL image or an (H, W, 3) float array in [0, 1] as a data: URI."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(to_uint8(np.asarray(image)))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _tile(image: np.ndarray, size: int):
    from PIL import Image

    im = Image.fromarray(to_uint8(image))
    return im.resize((size, size), Image.BICUBIC if im.width < size else Image.LANCZOS)


def spiral_cells(rings: int = 4) -> list[tuple[int, int]]:
    """Grid cells (row, col) of a (2 rings + 1)^2 square around its centre, ring by ring
    outwards, each ring clockwise from its top-left corner: rank k sits in the k-th cell, so
    the nearest neighbours hug the anchor as in the paper's Fig. 4."""
    c = rings
    cells = []
    for r in range(1, rings + 1):
        top = [(c - r, c - r + i) for i in range(2 * r)]
        right = [(c - r + i, c + r) for i in range(2 * r)]
        bottom = [(c + r, c + r - i) for i in range(2 * r)]
        left = [(c + r - i, c - r) for i in range(2 * r)]
        cells += top + right + bottom + left
    return cells


def neighbour_mosaic(anchor: np.ndarray, neighbours: np.ndarray, colour: tuple, cell: int = 52, gap: int = 2):
    """The anchor in the centre of a 9 x 9 grid, its (up to 80) nearest neighbours around it."""
    from PIL import Image, ImageDraw

    side = 9 * cell + 10 * gap
    canvas = Image.new("RGB", (side, side), (245, 245, 245))
    pos = lambda rc: (gap + rc[1] * (cell + gap), gap + rc[0] * (cell + gap))  # noqa: E731
    canvas.paste(_tile(anchor, cell), pos((4, 4)))
    for img, rc in zip(neighbours, spiral_cells(4)):
        canvas.paste(_tile(img, cell), pos(rc))
    x, y = pos((4, 4))
    ImageDraw.Draw(canvas).rectangle([x - 2, y - 2, x + cell + 1, y + cell + 1], outline=colour, width=3)
    return canvas


# ----------------------------------------------------------------------------- plots


def _figure_uri(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _mpl():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
                         "grid.alpha": 0.3, "figure.facecolor": "white"})
    return plt


RED, BLUE, GREY, ORANGE = "#c0392b", "#2c6fbb", "#7f8c8d", "#e67e22"


def plot_distribution(run: RunData, before: RunData | None = None) -> str:
    """Figs. 5/6: MCCS over the anchors as histogram and box plot (before/after when given)."""
    plt = _mpl()
    form = f"MCCS (Eq. 7, {run.report['mccs_form']} form; unitless)"
    sets = ([("before", before), ("after", run)] if before is not None else [("this run", run)])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [3, 2]})
    finite = np.concatenate([r.mccs[np.isfinite(r.mccs)] for _, r in sets])
    bins = np.linspace(finite.min(), finite.max(), 41) if len(finite) and finite.max() > finite.min() else 40
    colours = [GREY, BLUE] if before is not None else [BLUE]
    for (label, r), colour in zip(sets, colours):
        ax1.hist(r.mccs[np.isfinite(r.mccs)], bins=bins, alpha=0.55 if before is not None else 0.85, color=colour,
                 label=f"{label}: anchors (mu={np.mean(r.mccs):.3f})")
        w = r.report["worst_mode"]["mccs"]
        if w is not None:
            ax1.axvline(w, color=RED if r is run else GREY, ls="--", lw=1.2, label=f"{label}: worst mode I_w ({w:.3f})")
    ax1.set_xlabel(form)
    ax1.set_ylabel("anchors (count)")
    ax1.set_yscale("log")
    ax1.set_title("MCCS of every anchor")
    ax1.legend(fontsize=7, frameon=False)
    rng = np.random.default_rng(0)
    for i, ((label, r), colour) in enumerate(zip(sets, colours)):
        vals = r.mccs[np.isfinite(r.mccs)]
        ax2.boxplot(vals, positions=[i], widths=0.5, showfliers=False, patch_artist=True,
                    boxprops={"facecolor": colour, "alpha": 0.35}, medianprops={"color": "black"})
        pts = rng.choice(vals, size=min(BOX_POINTS, len(vals)), replace=False)
        ax2.scatter(i + rng.uniform(-0.18, 0.18, len(pts)), pts, s=6, color=colour, alpha=0.7, zorder=3,
                    label="100 random anchors I_r" if i == len(sets) - 1 else None)
        w = r.report["worst_mode"]["mccs"]
        if w is not None:
            ax2.scatter([i], [w], marker="*", s=140, color=RED, zorder=4, label="worst mode I_w" if i == len(sets) - 1 else None)
    ax2.set_xticks(range(len(sets)), [s[0] for s in sets])
    ax2.set_ylabel(form)
    ax2.set_title("box plot (whiskers 1.5 IQR)")
    ax2.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    return _figure_uri(fig)


def plot_sampling(run: RunData) -> str | None:
    """Figs. 2/3: the worst mode's MCCS and (mu, sigma) against log10 |C| (recomputed over
    prefixes of the i.i.d. collection) and (mu, sigma) against log10 |A| (random anchor subsets)."""
    plt = _mpl()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    unit = "MCCS (Eq. 7; unitless)"
    if run.convergence is not None:
        c = run.convergence
        x = np.log10(c["n"])
        ax1.plot(x, c["worst_mccs"], "o-", color=RED, ms=3, label="MCCS(I_w), worst mode")
        ax1.plot(x, c["mccs_mean"], "o-", color=BLUE, ms=3, label="mu (mean over anchors)")
        ax1.plot(x, c["mccs_std"], "o-", color=ORANGE, ms=3, label="sigma (std over anchors)")
        ax1.set_xlabel("log10 |C|  (collection size, samples)")
        ax1.set_ylabel(unit)
        ax1.set_title("vs collection size (Figs. 2, 3)")
        ax1.legend(fontsize=7, frameon=False)
    else:
        ax1.text(0.5, 0.5, "no convergence.parquet in this run", ha="center", va="center", transform=ax1.transAxes)
        ax1.set_axis_off()
    finite = run.mccs[np.isfinite(run.mccs)]
    if len(finite) >= 4:
        sizes = intervals.log_sizes(min(10, len(finite)), len(finite), 12)
        sizes = sizes[sizes >= 2]
        curve = intervals.anchor_subsample_curve(finite, sizes, reps=200, seed=0)
        x = np.log10(curve["size"])
        for name, colour, label in (("mean", BLUE, "mu"), ("std", ORANGE, "sigma")):
            ax2.plot(x, curve[f"{name}_mid"], "o-", color=colour, ms=3, label=f"{label} (median of 200 subsets)")
            ax2.fill_between(x, curve[f"{name}_low"], curve[f"{name}_high"], color=colour, alpha=0.2, lw=0, label=f"{label}: 95% of subsets")
        ax2.set_xlabel("log10 |A|  (anchors, subsampled from this run)")
        ax2.set_ylabel(unit)
        ax2.set_title("vs anchor count (Fig. 3)")
        ax2.legend(fontsize=7, frameon=False)
    else:
        ax2.set_axis_off()
    return _figure_uri(fig)


def plot_ripley(run: RunData, rip: dict) -> str:
    """Ripley's K around the dense modes against random anchors, and the held-out test."""
    plt = _mpl()
    radii = rip["radii"]
    n = run.report["n_samples"]
    floor = 0.5 / n  # a zero count is drawn at half a sample so the log axis can show it
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    local = np.maximum(rip["local"], floor)
    # 100 random anchors as thin lines (as the paper's box plots show 100 I_r): a band would hide
    # that a collapsed mode's own members are among the random anchors too.
    rng = np.random.default_rng(0)
    shown = rng.choice(len(local), size=min(BOX_POINTS, len(local)), replace=False)
    for k, i in enumerate(shown):
        ax1.plot(radii, local[i], color=GREY, lw=0.6, alpha=0.35, label=f"{len(shown)} random anchors I_r" if k == 0 else None)
    ax1.plot(radii, np.maximum(np.median(local, axis=0), floor), color="black", lw=1, label="median random anchor")
    ax1.plot(radii, np.maximum(rip["k_bar"], floor), "--", color=GREY, label="mean over random anchors")
    modes = [m["sample_index"] for m in run.report.get("modes", [])][1:6]
    for k, s in enumerate(modes):
        pos = np.flatnonzero(run.anchor_index == s)
        if len(pos):
            ax1.plot(radii, local[pos[0]], color=ORANGE, lw=0.8, alpha=0.8, label="modes ranked 2-6" if k == 0 else None)
    ax1.plot(radii, local[run.worst], color=RED, lw=2, label="worst mode I_w")
    ax1.axvline(run.report["radius"], color="black", lw=0.8, ls=":", label=f"r = {run.report['radius']:.3g}")
    ax1.set_yscale("log")
    ax1.set_xlabel("radius (normalised angular distance, Eq. 4)")
    ax1.set_ylabel("K(radius): fraction of |C| within radius")
    ax1.set_title("K function around dense modes (collection)")
    ax1.legend(fontsize=7, frameon=True, framealpha=0.9, loc="center left")
    lo99, hi99 = rip["envelope99"]
    lo95, hi95 = rip["envelope95"]
    held = rip["held_out"]
    ax2.fill_between(radii, lo99 * held, hi99 * held, color=GREY, alpha=0.2, lw=0, label="99% Monte Carlo envelope (H0)")
    ax2.fill_between(radii, lo95 * held, hi95 * held, color=GREY, alpha=0.35, lw=0, label="95% Monte Carlo envelope (H0)")
    ax2.plot(radii, rip["k_bar"] * held, "--", color=GREY, label="expected under H0")
    ax2.step(radii, rip["observed"] * held, where="post", color=RED, lw=2, label="worst mode I_w (observed)")
    ax2.axvspan(radii[0], run.report["radius"], color=BLUE, alpha=0.05, label="radii tested (<= r)")
    ax2.set_xlabel("radius (normalised angular distance, Eq. 4)")
    ax2.set_ylabel(f"other anchors within radius (of {held})")
    ax2.set_title(f"held-out test: {format_p(rip['p_value'], rip['sims'])}")
    ax2.legend(fontsize=7, frameon=True, framealpha=0.9, loc="center right")
    return _figure_uri(fig)


# ----------------------------------------------------------------------------- page


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _num(x, digits: int = 4) -> str:
    if x is None:
        return "inf"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    x = float(x)
    if x != 0 and (abs(x) < 10 ** -(digits - 1) or abs(x) >= 1e6):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}" if abs(x) >= 1 else f"{x:.{digits}f}"


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f4f5f7;color:#1d232a}
main{max-width:1120px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:0 0 10px;border-bottom:1px solid #e3e5e8;padding-bottom:6px}
.sub{color:#5c6670;font-size:13px;word-break:break-all}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:18px 20px;margin:16px 0}
.verdict{border-left:6px solid;padding:12px 16px;border-radius:6px;margin:12px 0}
.verdict.pass{border-color:#27ae60;background:#eafaf1}.verdict.warn{border-color:#e67e22;background:#fdf2e9}.verdict.fail{border-color:#c0392b;background:#fdedec}
.verdict b{font-size:16px}.verdict p{margin:6px 0 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px;margin:12px 0}
.card{background:#f8f9fb;border:1px solid #e3e5e8;border-radius:6px;padding:10px}
.card .v{font-size:20px;font-weight:600}.card .k{font-size:12px;color:#5c6670}.card .c{font-size:11px;color:#5c6670}
table{border-collapse:collapse;font-size:13px;width:100%} td,th{padding:4px 8px;border-bottom:1px solid #eef0f2;text-align:left;vertical-align:top}
th{color:#5c6670;font-weight:600} td.n{text-align:right;font-variant-numeric:tabular-nums}
.failed{color:#c0392b;font-weight:600}.passed{color:#27ae60;font-weight:600}
.pair{display:flex;gap:20px;flex-wrap:wrap;justify-content:center}.pair figure{margin:0;text-align:center}
figure img.plot{max-width:100%} figcaption{font-size:12px;color:#5c6670;margin-top:6px;max-width:900px}
.modes{display:grid;grid-template-columns:repeat(auto-fill,minmax(112px,1fr));gap:10px}
.modes figure{margin:0;text-align:center;font-size:11px}.modes img{width:96px;height:96px;border-radius:4px;border:1px solid #ddd}
.modes figure.w img{border:3px solid #c0392b}
.note{font-size:12px;color:#5c6670} code{background:#f0f1f3;padding:1px 4px;border-radius:3px}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:20px} @media (max-width:800px){.cols{grid-template-columns:1fr}}
"""


def _card(label: str, value: str, extra: str = "") -> str:
    return f'<div class="card"><div class="k">{_e(label)}</div><div class="v">{_e(value)}</div><div class="c">{_e(extra)}</div></div>'


def _ci(lo, hi) -> str:
    return "" if lo is None or hi is None else f"95% CI {_num(lo)} to {_num(hi)}"


def _rows(pairs) -> str:
    return "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in pairs)


def _images(run: RunData, indices: list[int]) -> dict | str:
    """Regenerate samples by index through the run's generator; a message if that fails."""
    try:
        _, source, _ = open_run(run.path)
        wanted = np.unique(np.asarray(indices, dtype=np.int64))
        images = np.concatenate([source.images(wanted[i : i + BATCH_SIZE]) for i in range(0, len(wanted), BATCH_SIZE)]) if len(wanted) else []
        return {int(i): img for i, img in zip(wanted, images)}
    except GancheckError as exc:
        return f"Images could not be regenerated: {exc}"
    except Exception as exc:  # the generator file moved or its runtime is missing: the report still renders
        return f"Images could not be regenerated ({type(exc).__name__}: {exc}); keep the generator at the path in manifest.json to see them."


def render_html(run: RunData, before: RunData | None = None, extra: dict | None = None) -> str:
    """The report page as one HTML string (``extra``: :func:`enrich_report`'s output, computed
    here when None and the report lacks it)."""
    rep = run.report
    if extra is None:
        extra = {} if "spatial" in rep and "diversity" in rep else enrich_report(run.path)
    rep = merge_report(rep, extra)
    rep["_typical_fraction"] = float(np.mean(run.neighbors) / rep["n_samples"]) if rep["n_samples"] else None
    level, headline, lines = verdict(rep)
    rip = ripley(run, seed=rep.get("seed", 0))
    w, mc = rep["worst_mode"], rep["mccs"]
    display = int(run.anchor_index[0])
    modes = rep.get("modes", [])
    wanted = [w["sample_index"], display] + [m["sample_index"] for m in modes]
    for a in (w["sample_index"], display):
        wanted += list(run.nearest.get(a, ([], []))[0])
    images = _images(run, wanted)

    gen = rep.get("generator") or run.manifest.get("generator", {})
    cfg = run.manifest.get("config", {})
    title = Path(str(gen.get("path", "generator"))).name
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width,initial-scale=1'>"
             f"<title>gancheck report: {_e(title)}</title><style>{CSS}</style></head><body><main>"]
    parts.append(f"<h1>gancheck report: {_e(title)}</h1><div class='sub'>{_e(gen.get('path', ''))} &middot; run directory {_e(run.path.resolve())} &middot; created {_e(run.manifest.get('created', ''))}</div>")
    # --- summary
    parts.append("<section id='summary'><h2>Summary</h2>")
    parts.append(f"<div class='verdict {level}'><b>{_e(headline)}</b>" + "".join(f"<p>{_e(s)}</p>" for s in lines) + "</div>")
    div = rep.get("diversity", {})
    cards = [
        _card("MCCS mean mu", _num(mc["mean"]), _ci(mc.get("mean_ci_low"), mc.get("mean_ci_high"))),
        _card("MCCS std sigma", _num(mc["std"]), _ci(mc.get("std_ci_low"), mc.get("std_ci_high"))),
        _card("worst mode MCCS(I_w)", _num(w["mccs"]), f"sample {w['sample_index']}"),
        _card("worst mode neighbours", f"{w['neighbors']:,} ({format_share(w['neighbor_fraction'])})", _ci(w.get("neighbor_fraction_ci_low"), w.get("neighbor_fraction_ci_high"))),
        _card("Ripley test", format_p(rep["spatial"]["p_value"], rep["spatial"].get("sims", N_SIMS)), "H0: I_w no denser than a random anchor"),
        _card("Vendi score", _num(div.get("vendi"), 4), f"effective distinct samples of {div.get('vendi_samples', 0):,}"),
        _card("support size (birthday)", "> " + _num(div.get("support_size_lower"), 3) if div.get("support_size") is None else _num(div.get("support_size"), 4),
              f"lower bound {_num(div.get('support_size_lower'), 3)} identities"),
    ]
    ref = rep.get("reference")
    if ref:
        cards += [_card("precision / recall", f"{ref['precision']:.3f} / {ref['recall']:.3f}", f"k = {ref['k']}, vs {ref['embedded']:,} real images"),
                  _card("density / coverage", f"{ref['density']:.3f} / {ref['coverage']:.3f}", "Naeem et al. 2020"),
                  _card("Fréchet distance", _num(ref["frechet_distance"]), "in descriptor space")]
    parts.append("<div class='cards'>" + "".join(cards) + "</div>")
    if rep.get("gates"):
        parts.append("<h3>Release gates</h3><table><tr><th>gate</th><th>value</th><th>bound</th><th>margin</th><th>result</th></tr>")
        for g in rep["gates"]:
            cls = "failed" if g["failed"] else "passed"
            margin = f"{g['margin']:+.4g}"
            parts.append(f"<tr><td><code>{_e(g['gate'])}</code></td><td class='n'>{_e(_num(g['value']))}</td><td class='n'>{_e(_num(g['bound']))}</td>"
                         f"<td class='n'>{_e(margin)}</td><td class='{cls}'>{'FAILED' if g['failed'] else 'passed'}</td></tr>")
        parts.append("</table>")
    settings = [("generator", gen.get("path", "")), ("generator kind", gen.get("kind", "")), ("sha256", gen.get("sha256", "")),
                ("descriptor (embedder)", rep.get("embedder", cfg.get("embedder", ""))),
                ("collection |C|", f"{rep['n_samples']:,}"), ("anchors |A|", f"{rep['n_anchors']:,}"), ("seed", rep.get("seed")),
                ("theta (same identity)", rep["theta"]), ("r (dense-mode radius)", rep["radius"]),
                ("MCCS form", f"{rep['mccs_form']}: {rep['mccs_formula']}"), ("images without a face", f"{rep.get('no_face', {}).get('count', 0):,} ({rep.get('no_face', {}).get('policy', '')})")]
    if rep.get("calibrator"):
        settings.append(("calibrator audited", f"{rep['calibrator'].get('path')} (sha256 {rep['calibrator'].get('sha256', '')[:16]}...)"))
    versions = run.manifest.get("versions", {})
    if versions:
        settings.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    parts.append("<h3>Settings</h3><table>" + _rows(settings) + "</table></section>")

    # --- Fig. 4
    parts.append("<section id='worst-mode'><h2>Worst-case dense mode and a random anchor (paper Fig. 4)</h2>")
    if isinstance(images, str):
        parts.append(f"<p class='note'>{_e(images)}</p>")
    else:
        figs = []
        for label, s, colour, mccs_value in (("worst-case dense mode I_w", w["sample_index"], (192, 57, 43), w["mccs"]),
                                            ("random anchor I_r", display, (44, 111, 187), run.mccs[0])):
            idx, dist = run.nearest.get(s, (np.array([], dtype=np.int64), np.array([])))
            mosaic = neighbour_mosaic(images[int(s)], [images[int(i)] for i in idx[:80]], colour)
            far = f", farthest shown at d = {dist[:80].max():.3f}" if len(dist) else ""
            within = "" if s == display else f" (neighbours found within max(theta, r) = {max(rep['theta'], rep['radius']):.3g})"
            figs.append(f"<figure style='width:{mosaic.width}px'><img src='{_png(mosaic)}' alt='{_e(label)}' width='{mosaic.width}'><figcaption><b>{_e(label)}</b>, sample {s}: "
                        f"MCCS {_e(_num(mccs_value))}; its {min(len(idx), 80)} nearest samples of C spiral outwards by distance{_e(within)}{_e(far)}.</figcaption></figure>")
        parts.append("<div class='pair'>" + "".join(figs) + "</div>")
        parts.append("<p class='note'>Images are regenerated from (seed, sample index). A collapsed mode is surrounded by near-copies of itself; a random anchor's neighbours differ.</p>")
    parts.append("</section>")

    # --- Fig. 7
    parts.append(f"<section id='modes'><h2>Top {len(modes)} distinct dense modes (paper Fig. 7)</h2>")
    if isinstance(images, str):
        parts.append(f"<p class='note'>{_e(images)}</p>")
    else:
        cells = []
        for m in modes:
            cls = " class='w'" if m["rank"] == 1 else ""
            cells.append(f"<figure{cls}><img src='{_png(_tile(images[int(m['sample_index'])], 96))}' alt='mode {m['rank']}'>"
                         f"<figcaption>#{m['rank']}: N_r = {m['neighbors']:,}<br>{format_share(m['neighbor_fraction'])} &middot; MCCS {_num(m['mccs'], 3)}</figcaption></figure>")
        parts.append("<div class='modes'>" + "".join(cells) + "</div>")
        parts.append(f"<p class='note'>Anchors ranked by N_r, the number of collection samples within r = {rep['radius']:.3g}; an anchor within r of a mode already shown is the same mode and is skipped.</p>")
    parts.append("</section>")

    # --- Figs. 5/6
    title56 = "MCCS distribution before and after calibration (paper Figs. 5, 6)" if before is not None else "MCCS distribution (paper Figs. 5, 6)"
    parts.append(f"<section id='distribution'><h2>{_e(title56)}</h2><figure><img class='plot' src='{plot_distribution(run, before)}' alt='MCCS histogram and box plot'>"
                 f"<figcaption>Each anchor's MCCS against the collection. The red marker is the worst-case dense mode."
                 + (f" Before: {_e(before.path)}." if before is not None else "") + "</figcaption></figure>")
    if before is not None:
        b = before.report
        parts.append("<table><tr><th></th><th>before</th><th>after</th><th>change</th></tr>")
        for label, key in (("MCCS mean mu", ("mccs", "mean")), ("MCCS std sigma", ("mccs", "std")), ("MCCS(I_w)", ("worst_mode", "mccs")),
                           ("worst mode neighbour fraction", ("worst_mode", "neighbor_fraction"))):
            x, y = b[key[0]][key[1]], rep[key[0]][key[1]]
            delta = "" if x is None or y is None else f"{y - x:+.4g}"
            parts.append(f"<tr><th>{_e(label)}</th><td class='n'>{_e(_num(x))}</td><td class='n'>{_e(_num(y))}</td><td class='n'>{_e(delta)}</td></tr>")
        parts.append("</table>")
    parts.append("</section>")

    # --- Figs. 2/3
    parts.append(f"<section id='sampling'><h2>Sampling efficiency (paper Figs. 2, 3)</h2><figure><img class='plot' src='{plot_sampling(run)}' alt='convergence plots'>"
                 "<figcaption>Left: the figures recomputed over the first |C| samples of the collection (i.i.d., so prefixes are random subsamples). "
                 "Right: (mu, sigma) over random subsets of the anchors. Flat curves at the right end mean the run's sizes were enough.</figcaption></figure></section>")

    # --- Ripley
    parts.append(f"<section id='ripley'><h2>Spatial test: Ripley's K around the dense modes</h2><figure><img class='plot' src='{plot_ripley(run, rip)}' alt='Ripley K plots'>"
                 f"<figcaption>Left: K(radius), the share of the collection within each radius of a mode, against the band of random anchors. "
                 f"Right: the test of H0 &laquo;the worst mode is no denser than a random anchor&raquo;. The worst mode was chosen by its collection counts, "
                 f"so it is tested on the {rip['held_out']:,} other anchors (drawn independently of the collection) against {rip['sims']} Monte Carlo simulations "
                 f"of a random anchor's counts; global extreme-rank test over the radii up to r: {_e(format_p(rip['p_value'], rip['sims']))}.</figcaption></figure></section>")

    # --- diversity
    parts.append("<section id='diversity'><h2>Diversity in descriptor space</h2><table>")
    drows = [("Vendi score (cosine kernel)", f"{_num(div.get('vendi'))} effective distinct samples among {div.get('vendi_samples', 0):,} anchors"),
             ("birthday-paradox support size", (f"{_num(div.get('support_size'))} identities" if div.get("support_size") is not None else "no collision seen")
              + f"; 95% lower bound {_num(div.get('support_size_lower'))} ({div.get('collisions', 0):,} of {div.get('pairs', 0):,} {div.get('support_source', '')} pairs within theta = {_num(div.get('support_threshold'))})")]
    if ref:
        drows += [("reference images", f"{ref['path']} ({ref['embedded']:,} of {ref['images']:,} described)"),
                  ("precision / recall", f"{ref['precision']:.4f} / {ref['recall']:.4f}"), ("density / coverage", f"{ref['density']:.4f} / {ref['coverage']:.4f} (k = {ref['k']})"),
                  ("Fréchet distance", _num(ref["frechet_distance"]))]
    else:
        drows.append(("reference set", "none: pass --reference DIR (a folder of real images) for precision, recall, density, coverage and the Fréchet distance"))
    parts.append(_rows(drows) + "</table></section>")
    parts.append(f"<p class='note'>Written by gancheck from {_e(run.path.resolve())}; figures from report.json and the run's Parquet tables. Method: Wu et al., "
                 "Black-Box Diagnosis and Calibration on GAN Intra-Mode Collapse (ACM TOMM 2021).</p></main></body></html>")
    return "".join(parts)


def write_html(run_dir: str | Path, before: str | Path | None = None, out: str | Path | None = None, extra: dict | None = None) -> Path:
    """Render ``report.html`` into the run directory (or ``out``) and return its path.

    ``before``: another run directory (the same generator without the calibrator) to show side by
    side; ``extra``: :func:`enrich_report`'s result when the caller already has it.
    """
    from gancheck.files import atomic_write

    run = load_run(run_dir)
    page = render_html(run, load_run(before) if before is not None else None, extra)
    path = Path(out) if out is not None else run.path / "report.html"
    try:
        atomic_write(path, page)
    except OSError as exc:
        raise GancheckError(f"cannot write {path} ({exc.strerror}); choose a writable --out") from None
    return path
