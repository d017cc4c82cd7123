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
from pathlib import Path

import numpy as np

from gancheck.analysis import intervals
from gancheck.analysis.report import BOX_POINTS, N_SIMS, RunData, enrich_report, load_run, merge_report, ripley
from gancheck.analysis.verdict import SETTLED_CHANGE, before_after, held_out_text, sampling_settled, verdict
from gancheck.numbers import format_change, format_count, format_interval, format_number, format_p, format_share
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


def neighbour_mosaic(anchor: np.ndarray, neighbours: np.ndarray, colour: tuple, distances=None, radius: float | None = None,
                     cell: int = 52, gap: int = 2):
    """The anchor in the centre of a 9 x 9 grid, its (up to 80) nearest neighbours around it, each
    with its distance (Eq. 4) to the anchor written under it: green with ``*`` when within
    ``radius`` (a near-copy counted in N_r), grey beyond."""
    from PIL import Image, ImageDraw, ImageFont

    label = 12 if distances is not None else 0
    side, height = 9 * cell + 10 * gap, 9 * (cell + label) + 10 * gap
    canvas = Image.new("RGB", (side, height), (245, 245, 245))
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=10)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    pos = lambda rc: (gap + rc[1] * (cell + gap), gap + rc[0] * (cell + label + gap))  # noqa: E731
    canvas.paste(_tile(anchor, cell), pos((4, 4)))
    for k, (img, rc) in enumerate(zip(neighbours, spiral_cells(4))):
        x, y = pos(rc)
        canvas.paste(_tile(img, cell), (x, y))
        if distances is not None and k < len(distances):
            d = float(distances[k])
            within = radius is not None and d <= radius
            text = format_number(d) + ("*" if within else "")
            draw.text((x + cell / 2, y + cell + 1), text, fill=(30, 130, 76) if within else (110, 110, 110), font=font, anchor="ma")
    x, y = pos((4, 4))
    draw.rectangle([x - 2, y - 2, x + cell + 1, y + cell + 1], outline=colour, width=3)
    if label:
        draw.text((x + cell / 2, y + cell + 1), "anchor", fill=colour, font=font, anchor="ma")
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


def _legend_below(ax, rows: int = 2, **kw):
    """A legend under the axes, outside the data area: it can never cover a bar, line or marker."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                  ncol=max(1, -(-len(handles) // rows)), **kw)


def distribution_figure(run: RunData, before: RunData | None = None):
    """Figs. 5/6: MCCS over the anchors as histogram and box plot (before/after when given)."""
    plt = _mpl()
    form = f"MCCS (Eq. 7, {run.report['mccs_form']} form; unitless)"
    sets = ([("before", before), ("after", run)] if before is not None else [("this run", run)])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    finite = np.concatenate([r.mccs[np.isfinite(r.mccs)] for _, r in sets])
    bins = np.linspace(finite.min(), finite.max(), 41) if len(finite) and finite.max() > finite.min() else 40
    colours = [GREY, BLUE] if before is not None else [BLUE]
    for (label, r), colour in zip(sets, colours):
        vals = r.mccs[np.isfinite(r.mccs)]
        ax1.hist(vals, bins=bins, alpha=0.55 if before is not None else 0.85, color=colour,
                 label=f"{label}: anchors (mu = {format_number(np.mean(vals))})")
        w = r.report["worst_mode"]["mccs"]
        if w is not None:
            ax1.axvline(w, color=RED if r is run else GREY, ls="--", lw=1.2, label=f"{label}: worst mode I_w ({format_number(w)})")
    ax1.set_xlabel(form)
    ax1.set_ylabel("anchors (count)")
    ax1.set_yscale("log")
    ax1.set_title("MCCS of every anchor")
    _legend_below(ax1)
    rng = np.random.default_rng(0)
    for i, ((label, r), colour) in enumerate(zip(sets, colours)):
        vals = r.mccs[np.isfinite(r.mccs)]
        ax2.boxplot(vals, positions=[i], widths=0.5, showfliers=False, patch_artist=True,
                    boxprops={"facecolor": colour, "alpha": 0.35}, medianprops={"color": "black"})
        pts = rng.choice(vals, size=min(BOX_POINTS, len(vals)), replace=False)
        ax2.scatter(i + rng.uniform(-0.18, 0.18, len(pts)), pts, s=6, color=colour, alpha=0.7, zorder=3,
                    label=f"{BOX_POINTS} random anchors I_r" if i == len(sets) - 1 else None)
        w = r.report["worst_mode"]["mccs"]
        if w is not None:
            ax2.scatter([i], [w], marker="*", s=140, color=RED, zorder=4, label="worst mode I_w" if i == len(sets) - 1 else None)
    ax2.set_xticks(range(len(sets)), [s[0] for s in sets])
    ax2.set_ylabel(form)
    ax2.set_title("box plot (whiskers 1.5 IQR)")
    _legend_below(ax2, rows=1)
    return fig


def plot_distribution(run: RunData, before: RunData | None = None) -> str:
    return _figure_uri(distribution_figure(run, before))


def sampling_figure(run: RunData):
    """Figs. 2/3: the worst mode's MCCS and (mu, sigma) against log10 |C| (recomputed over
    prefixes of the i.i.d. collection) and (mu, sigma) against log10 |A| (random anchor subsets)."""
    plt = _mpl()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.9))
    unit = "MCCS (Eq. 7; unitless)"
    if run.convergence is not None:
        c = run.convergence
        x = np.log10(c["n"])
        ax1.plot(x, c["worst_mccs"], "o-", color=RED, ms=3, label="MCCS(I_w), worst mode")
        ax1.plot(x, c["mccs_mean"], "o-", color=BLUE, ms=3, label="mu (mean over anchors)")
        ax1.plot(x, c["mccs_std"], "o-", color=ORANGE, ms=3, label="sigma (std over anchors)")
        if len(x) > 1:  # the decade the sufficiency rule looks at
            ax1.axvspan(max(x[0], x[-1] - 1.0), x[-1], color=GREY, alpha=0.12, lw=0, label="last tenfold |C| (sufficiency rule)")
        ax1.set_xlabel("log10 |C|  (collection size, samples)")
        ax1.set_ylabel(unit)
        ax1.set_title("vs collection size (Figs. 2, 3)")
        _legend_below(ax1)
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
        _legend_below(ax2)
    else:
        ax2.set_axis_off()
    return fig


def plot_sampling(run: RunData) -> str | None:
    return _figure_uri(sampling_figure(run))


def ripley_figure(run: RunData, rip: dict):
    """Ripley's K around the dense modes against random anchors, and the held-out test."""
    plt = _mpl()
    radii = rip["radii"]
    n = run.report["n_samples"]
    r = run.report["radius"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    # Zero counts have no place on a log axis: they are left out (a curve starts at its first sample).
    local = np.where(rip["local"] > 0, rip["local"], np.nan)
    rng = np.random.default_rng(0)
    shown = rng.choice(len(local), size=min(BOX_POINTS, len(local)), replace=False)
    for k, i in enumerate(shown):
        ax1.plot(radii, local[i], color=GREY, lw=0.6, alpha=0.35, label=f"{len(shown)} random anchors I_r" if k == 0 else None)
    median = np.median(rip["local"], axis=0)
    ax1.plot(radii, np.where(median > 0, median, np.nan), color="black", lw=1, label="median random anchor")
    ax1.plot(radii, rip["k_bar"], "--", color=GREY, label="mean over random anchors")
    modes = [m["sample_index"] for m in run.report.get("modes", [])][1:6]
    for k, s in enumerate(modes):
        pos = np.flatnonzero(run.anchor_index == s)
        if len(pos):
            ax1.plot(radii, local[pos[0]], color=ORANGE, lw=0.8, alpha=0.8, label="modes ranked 2-6" if k == 0 else None)
    ax1.plot(radii, local[run.worst], color=RED, lw=2, label="worst mode I_w")
    ax1.axvline(r, color="black", lw=0.8, ls=":", label=f"r = {format_number(r)}")
    ax1.set_yscale("log")
    ax1.set_ylim(bottom=0.5 / n)
    ax1.set_xlabel("radius (normalised angular distance, Eq. 4)")
    ax1.set_ylabel("K(radius): fraction of |C| within radius")
    ax1.set_title("K function around dense modes (collection)")
    _legend_below(ax1, rows=3)
    # The test looks at the radii up to r only: the right panel shows exactly those, on a scale
    # (symlog: linear near 0, logarithmic above) where a curve far above its envelope stays visible.
    use = radii <= r + 1e-9
    if not use.any():
        use = radii <= radii[0]
    tr = radii[use]
    held = rip["held_out"]
    lo99, hi99 = (e[use] * held for e in rip["envelope99"])
    lo95, hi95 = (e[use] * held for e in rip["envelope95"])
    observed = rip["observed"][use] * held
    ax2.fill_between(tr, lo99, hi99, color=GREY, alpha=0.2, lw=0, step="post", label="99% Monte Carlo envelope (H0)")
    ax2.fill_between(tr, lo95, hi95, color=GREY, alpha=0.35, lw=0, step="post", label="95% Monte Carlo envelope (H0)")
    ax2.step(tr, rip["k_bar"][use] * held, "--", where="post", color=GREY, label="expected under H0")
    ax2.step(tr, observed, where="post", color=RED, lw=2, label="worst mode I_w (observed)")
    above = int((observed > hi99).sum())
    ax2.set_yscale("symlog", linthresh=1.0)
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("radius up to r (the radii tested)")
    ax2.set_ylabel(f"other anchors within radius (of {format_count(held)})")
    ax2.set_title(f"held-out test: {format_p(rip['p_value'], rip['sims'])}; above the 99% envelope at {above} of {len(tr)} radii", fontsize=9)
    _legend_below(ax2)
    return fig


def plot_ripley(run: RunData, rip: dict) -> str:
    return _figure_uri(ripley_figure(run, rip))


# ----------------------------------------------------------------------------- page


def _e(x) -> str:
    return html.escape(str(x), quote=True)


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f4f5f7;color:#1d232a}
main{max-width:1120px;margin:0 auto;padding:24px;box-sizing:border-box}
h1{font-size:22px;margin:0 0 4px;overflow-wrap:anywhere} h2{font-size:17px;margin:0 0 10px;border-bottom:1px solid #e3e5e8;padding-bottom:6px}
.sub{color:#5c6670;font-size:13px;word-break:break-all}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:18px 20px;margin:16px 0;overflow-x:auto}
.verdict{border-left:6px solid;padding:12px 16px;border-radius:6px;margin:12px 0}
.verdict.pass{border-color:#27ae60;background:#eafaf1}.verdict.collapse{border-color:#e67e22;background:#fdf2e9}
.verdict.fail{border-color:#c0392b;background:#fdedec}.verdict.inconclusive{border-color:#8e44ad;background:#f5eef8}
.verdict.change{border-color:#2c6fbb;background:#eaf2fb}
.verdict b{font-size:16px}.verdict p{margin:6px 0 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:10px;margin:12px 0}
.card{background:#f8f9fb;border:1px solid #e3e5e8;border-radius:6px;padding:10px;min-width:0;overflow-wrap:anywhere}
.card .v{font-size:20px;font-weight:600}.card .k{font-size:12px;color:#5c6670}.card .c{font-size:11px;color:#5c6670}
.card .m{font-size:12px;margin-top:6px}
table{border-collapse:collapse;font-size:13px;width:100%} td,th{padding:4px 8px;border-bottom:1px solid #eef0f2;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{color:#5c6670;font-weight:600} td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.failed{color:#c0392b;font-weight:600}.passed{color:#27ae60;font-weight:600}
.pair{display:flex;gap:20px;flex-wrap:wrap;justify-content:center}.pair figure{margin:0;text-align:center;max-width:100%}
.pair img{max-width:100%;height:auto}
figure{margin:0} figure img.plot{max-width:100%;height:auto} figcaption{font-size:12px;color:#5c6670;margin-top:6px;max-width:900px}
.modes{display:grid;grid-template-columns:repeat(auto-fill,minmax(112px,1fr));gap:10px}
.modes figure{margin:0;text-align:center;font-size:11px}.modes img{width:96px;height:96px;border-radius:4px;border:1px solid #ddd}
.modes figure.w img{border:3px solid #c0392b}
.note{font-size:12px;color:#5c6670} code{background:#f0f1f3;padding:1px 4px;border-radius:3px;overflow-wrap:anywhere}
"""

#: how a card's value is written from report.json (the browser test checks each card with these)
FORMATS = {"number": format_number, "share": format_share, "count": format_count}


def _card(label: str, value: str, extra: str = "", meaning: str = "", key: str = "", kind: str = "") -> str:
    """One figure: its name, value, detail and one sentence of what it means. ``key``/``kind``:
    the report.json key and :data:`FORMATS` entry the value was written from."""
    data = f" data-key='{_e(key)}' data-format='{_e(kind)}'" if key else ""
    return (f"<div class='card'><div class='k'>{_e(label)}</div><div class='v'{data}>{_e(value)}</div><div class='c'>{_e(extra)}</div>"
            + (f"<div class='m'>{_e(meaning)}</div>" if meaning else "") + "</div>")


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


def _cards(rep: dict) -> list[str]:
    w, mc, div, sp = rep["worst_mode"], rep["mccs"], rep.get("diversity", {}), rep.get("spatial", {})
    m = div.get("vendi_samples", 0)
    vendi = div.get("vendi")
    vendi_meaning = (f"The generator's identities are as varied as {format_number(vendi)} equally likely ones; one collapsed identity "
                     "lowers it." if vendi else "")
    support, lower = div.get("support_size"), div.get("support_size_lower")
    support_meaning = (f"Two draws are the same identity as often as if the generator had {format_number(support)} equally likely ones "
                       "(birthday paradox); below the Vendi score when a few identities dominate." if support is not None else
                       "No two draws were the same identity: the generator has at least the lower bound's identities.")
    p = sp.get("p_value")
    cards = [
        _card("MCCS mean mu", format_number(mc["mean"]), format_interval(mc.get("mean_ci_low"), mc.get("mean_ci_high")),
              "A random anchor's collapse score: near 0 when no other sample is its identity, higher the more samples repeat it.", "mccs.mean", "number"),
        _card("MCCS std sigma", format_number(mc["std"]), format_interval(mc.get("std_ci_low"), mc.get("std_ci_high")),
              "How much the score varies between anchors: a few collapsed identities among many fine ones make it large.", "mccs.std", "number"),
        _card("worst mode MCCS(I_w)", format_number(w["mccs"]), f"sample {w['sample_index']}",
              "The collapse score of the densest identity found (Eq. 9); compare it with mu.", "worst_mode.mccs", "number"),
        _card("worst mode share", format_share(w["neighbor_fraction"]),
              f"{format_count(w['neighbors'])} of {format_count(rep['n_samples'])} samples. "
              + (held_out_text(w) if w.get("neighbor_fraction_ci_low") is not None else ""),
              f"Share of all samples that are near-copies of the worst mode (within r = {format_number(rep['radius'])}).",
              "worst_mode.neighbor_fraction", "share"),
    ]
    if p is not None:
        cards.append(_card("Ripley test", format_p(p, sp.get("sims", N_SIMS)), "H0: I_w no denser than a random anchor",
                           "Below 0.01: the worst mode is denser than chance allows, so the collapse is real, not noise."))
    if div:
        vendi_ci = format_interval(div.get("vendi_ci_low"), div.get("vendi_ci_high"))
        cards.append(_card("Vendi score", format_number(vendi), vendi_ci or f"effective distinct samples of {format_count(m)} anchors",
                           vendi_meaning, "diversity.vendi", "number"))
        cards.append(_card("support size (birthday)", format_number(support) if support is not None else f"> {format_number(lower)}",
                           f"95% lower bound {format_number(lower)} identities", support_meaning,
                           "diversity.support_size" if support is not None else "", "number" if support is not None else ""))
    det = rep.get("detection") or {}
    if det.get("limit") is not None:
        cards.append(_card("detection limit", format_share(det["limit"]), f"found with {format_share(det.get('power', 0.95))} probability",
                           "The smallest share a single collapsed identity may hold and still be found by this audit; more --anchors lower it.",
                           "detection.limit", "share"))
    ref = rep.get("reference")
    if ref:
        cards += [_card("precision / recall", f"{format_number(ref['precision'])} / {format_number(ref['recall'])}", f"k = {ref['k']}, vs {format_count(ref['embedded'])} real images",
                        "Precision: generated images that look real; recall: real images the generator covers (1 is best)."),
                  _card("density / coverage", f"{format_number(ref['density'])} / {format_number(ref['coverage'])}", "Naeem et al. 2020",
                        "Robust versions of precision and recall; coverage well below 1 means parts of the real data are never generated."),
                  _card("Fréchet distance", format_number(ref["frechet_distance"]), "in descriptor space",
                        "Distance between the real and generated descriptor distributions; 0 when they match.", "reference.frechet_distance", "number")]
    return cards


def _sentence(text: str) -> str:
    """``text`` as one sentence: capitalised, ending with a full stop."""
    text = text.strip()
    return (text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")) if text else ""


def _gates_table(gates: list[dict]) -> str:
    out = ["<h3>Release gates</h3><table><tr><th>gate</th><th class='n'>value</th><th class='n'>bound</th><th class='n'>margin</th><th>result</th></tr>"]
    for g in gates:
        cls = "failed" if g["failed"] else "passed"
        out.append(f"<tr><td><code>{_e(g['gate'])}</code></td><td class='n'>{_e(format_number(g['value']))}</td><td class='n'>{_e(format_number(g['bound']))}</td>"
                   f"<td class='n'>{_e(format_change(g['margin']))}</td><td class='{cls}'>{'FAILED' if g['failed'] else 'passed'}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _settings(run: RunData, rep: dict) -> str:
    gen = rep.get("generator") or run.manifest.get("generator", {})
    cfg = run.manifest.get("config", {})
    nf = rep.get("no_face", {})
    settings = [("generator", gen.get("path", "")), ("generator kind", gen.get("kind", "")), ("sha256", gen.get("sha256", "")),
                ("descriptor (embedder)", rep.get("embedder", cfg.get("embedder", ""))),
                ("collection |C|", format_count(rep["n_samples"])), ("anchors |A|", format_count(rep["n_anchors"])), ("seed", rep.get("seed")),
                ("theta (same identity)", format_number(rep["theta"])), ("r (dense-mode radius)", format_number(rep["radius"])),
                ("MCCS form", f"{rep['mccs_form']}: {rep['mccs_formula']}"),
                ("images without a face", f"{format_count(nf.get('count', 0))} ({nf.get('policy', '')})")]
    if rep.get("calibrator"):
        settings.append(("calibrator audited", f"{rep['calibrator'].get('path')} (sha256 {str(rep['calibrator'].get('sha256') or '')[:16]}...)"))
    versions = run.manifest.get("versions", {})
    if versions:
        settings.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return "<h3>Settings</h3><table>" + _rows(settings) + "</table>"


def _change_block(change: dict) -> str:
    """Before/after: what the calibration did to the modes it targeted, then to the run's worst mode."""
    rows = "".join(f"<tr><th>targeted mode, sample {t['sample_index']}</th><td class='n'>{_e(format_share(t['before']))}</td>"
                   f"<td class='n'>{_e(format_share(t['after']))}</td><td class='n'>{_e(format_change(None if t['after'] is None else t['after'] - t['before'], share=True))}</td></tr>"
                   for t in change["targeted"])
    wb, wa = change["worst_before"], change["worst_after"]
    same = {True: "a targeted identity", False: "another identity", None: "identity not checked"}[wa["same_identity"]]
    rows += (f"<tr><th>worst mode of the run (sample {wb['sample_index']} before; {wa['sample_index']} after, {same})</th>"
             f"<td class='n'>{_e(format_share(wb['share']))}</td><td class='n'>{_e(format_share(wa['share']))}</td>"
             f"<td class='n'>{_e(format_change(wa['share'] - wb['share'], share=True))}</td></tr>")
    return (f"<div class='verdict change' id='calibration-change'><b>{_e(change['headline'])}</b>"
            + "".join(f"<p>{_e(x)}</p>" for x in change["sentences"]) + "</div>"
            + f"<table><tr><th>share of the samples within r0 = {_e(format_number(change['radius']))}</th><th class='n'>before</th>"
            f"<th class='n'>after</th><th class='n'>change</th></tr>{rows}</table>")


def _summary(run: RunData, rep: dict, before: RunData | None) -> str:
    v = rep["verdict"]
    parts = ["<section id='summary'><h2>Summary</h2>"]
    if before is not None:
        parts.append(_change_block(before_after(before.path, run.path, before.report, rep)))
        parts.append("<p class='note'>The verdict below is this (after) run's own.</p>")
    parts.append(f"<div class='verdict {_e(v['status'])}'><b>{_e(v['headline'])}</b>" + "".join(f"<p>{_e(x)}</p>" for x in v["reasons"]) + "</div>")
    parts.append("<div class='cards'>" + "".join(_cards(rep)) + "</div>")
    if rep.get("gates"):
        parts.append(_gates_table(rep["gates"]))
    parts.append(_settings(run, rep) + "</section>")
    return "".join(parts)


def _fig4(run: RunData, rep: dict, images, display: int) -> str:
    parts = ["<section id='worst-mode'><h2>Worst-case dense mode and a random anchor (paper Fig. 4)</h2>"]
    if isinstance(images, str):
        return parts[0] + f"<p class='note'>{_e(images)}</p></section>"
    w, r = rep["worst_mode"], rep["radius"]
    figs = []
    for label, s, colour, mccs_value in (("worst-case dense mode I_w", w["sample_index"], (192, 57, 43), w["mccs"]),
                                        ("random anchor I_r", display, (44, 111, 187), run.mccs[0])):
        idx, dist = run.nearest.get(s, (np.array([], dtype=np.int64), np.array([])))
        mosaic = neighbour_mosaic(images[int(s)], [images[int(i)] for i in idx[:80]], colour, dist[:80], r)
        within = int((dist[:80] <= r).sum())
        far = f", farthest shown at d = {format_number(dist[:80].max())}" if len(dist) else ""
        figs.append(f"<figure style='width:{mosaic.width}px'><img src='{_png(mosaic)}' alt='{_e(label)}' width='{mosaic.width}' height='{mosaic.height}'>"
                    f"<figcaption><b>{_e(label)}</b>, sample {s}: MCCS {_e(format_number(mccs_value))}; its {min(len(idx), 80)} nearest samples of C "
                    f"spiral outwards by distance{_e(far)}; {within} of them lie within r = {_e(format_number(r))}.</figcaption></figure>")
    parts.append("<div class='pair'>" + "".join(figs) + "</div>")
    parts.append(f"<p class='note'>Under each image: its distance to the anchor (Eq. 4, 0 = identical); green with * when within "
                 f"r = {_e(format_number(r))}, i.e. a near-copy counted in N_r. Images are regenerated from (seed, sample index). "
                 "A collapsed mode is surrounded by near-copies of itself; a random anchor's neighbours differ.</p></section>")
    return "".join(parts)


def _fig7(rep: dict, images) -> str:
    modes = rep.get("modes", [])
    parts = [f"<section id='modes'><h2>Top {len(modes)} distinct dense modes (paper Fig. 7)</h2>"]
    if isinstance(images, str):
        return parts[0] + f"<p class='note'>{_e(images)}</p></section>"
    cells = []
    for m in modes:
        cls = " class='w'" if m["rank"] == 1 else ""
        cells.append(f"<figure{cls}><img src='{_png(_tile(images[int(m['sample_index'])], 96))}' alt='mode {m['rank']}'>"
                     f"<figcaption>#{m['rank']}: N_r = {format_count(m['neighbors'])}<br>{format_share(m['neighbor_fraction'])} &middot; MCCS {_e(format_number(m['mccs']))}</figcaption></figure>")
    parts.append("<div class='modes'>" + "".join(cells) + "</div>")
    parts.append(f"<p class='note'>Anchors ranked by N_r, the number of collection samples within r = {_e(format_number(rep['radius']))}; "
                 "an anchor within r of a mode already shown is the same mode and is skipped.</p></section>")
    return "".join(parts)


def _distribution(run: RunData, rep: dict, before: RunData | None) -> str:
    title = "MCCS distribution before and after calibration (paper Figs. 5, 6)" if before is not None else "MCCS distribution (paper Figs. 5, 6)"
    parts = [f"<section id='distribution'><h2>{_e(title)}</h2><figure><img class='plot' src='{plot_distribution(run, before)}' alt='MCCS histogram and box plot'>"
             "<figcaption>Each anchor's MCCS against the collection. The red marker is the worst-case dense mode."
             + (f" Before: {_e(before.path)}." if before is not None else "") + "</figcaption></figure>"]
    if before is not None:
        b = before.report
        parts.append("<table><tr><th>figure (the run's own worst mode on each side)</th><th class='n'>before</th><th class='n'>after</th><th class='n'>change</th></tr>")
        for label, key, fmt in (("MCCS mean mu", ("mccs", "mean"), "number"), ("MCCS std sigma", ("mccs", "std"), "number"),
                                ("worst mode MCCS(I_w)", ("worst_mode", "mccs"), "number"),
                                ("worst mode share within r", ("worst_mode", "neighbor_fraction"), "share")):
            x, y = b[key[0]][key[1]], rep[key[0]][key[1]]
            delta = "" if x is None or y is None else format_change(y - x, share=fmt == "share")
            parts.append(f"<tr><th>{_e(label)}</th><td class='n'>{_e(FORMATS[fmt](x))}</td><td class='n'>{_e(FORMATS[fmt](y))}</td><td class='n'>{_e(delta)}</td></tr>")
        parts.append("</table>")
    parts.append("</section>")
    return "".join(parts)


def _sampling(run: RunData, rep: dict) -> str:
    settled, sentence = sampling_settled(rep)
    rule = (f"The rule: the run's sizes were enough when mu and MCCS(I_w) move by less than {format_share(SETTLED_CHANGE)} over the last "
            "tenfold increase of |C| (the shaded band). " + (sentence if sentence else ""))
    return (f"<section id='sampling'><h2>Sampling efficiency (paper Figs. 2, 3)</h2><figure><img class='plot' src='{plot_sampling(run)}' alt='convergence plots'>"
            "<figcaption>Left: the figures recomputed over the first |C| samples of the collection (i.i.d., so prefixes are random subsamples). "
            f"Right: (mu, sigma) over random subsets of the anchors. {_e(rule)}</figcaption></figure></section>")


def _ripley(run: RunData, rip: dict) -> str:
    return (f"<section id='ripley'><h2>Spatial test: Ripley's K around the dense modes</h2><figure><img class='plot' src='{plot_ripley(run, rip)}' alt='Ripley K plots'>"
            "<figcaption>Left: K(radius), the share of the collection within each radius of a mode, against random anchors (a curve starts at "
            "its first neighbour: zero counts have no place on the log axis). Right: the test of H0 &laquo;the worst mode is no denser than a random "
            f"anchor&raquo; over the radii it uses (up to r). The worst mode was chosen by its collection counts, so it is tested on the "
            f"{format_count(rip['held_out'])} other anchors (drawn independently of the collection) against {rip['sims']} Monte Carlo simulations "
            f"of a random anchor's counts; global extreme-rank test: {_e(format_p(rip['p_value'], rip['sims']))}. A red curve above the grey "
            "envelopes is what a small p-value looks like.</figcaption></figure></section>")


def _diversity(rep: dict) -> str:
    div, ref = rep.get("diversity", {}), rep.get("reference")
    support = div.get("support_size")
    vendi_ci = format_interval(div.get("vendi_ci_low"), div.get("vendi_ci_high"))
    drows = [(f"Vendi score ({div.get('vendi_kernel', 'cosine kernel')})", f"{format_number(div.get('vendi'))} effective identities"
              + (f" ({vendi_ci})" if vendi_ci else f" among {format_count(div.get('vendi_samples', 0))} anchors")),
             ("birthday-paradox support size", (f"{format_number(support)} identities" if support is not None else "no collision seen")
              + f"; 95% lower bound {format_number(div.get('support_size_lower'))} ({format_count(div.get('collisions', 0))} of "
              f"{format_count(div.get('pairs', 0))} {div.get('support_source', '')} pairs within theta = {format_number(div.get('support_threshold'))})")]
    if ref:
        drows += [("reference images", f"{ref['path']} ({format_count(ref['embedded'])} of {format_count(ref['images'])} described)"),
                  ("precision / recall", f"{format_number(ref['precision'])} / {format_number(ref['recall'])}"),
                  ("density / coverage", f"{format_number(ref['density'])} / {format_number(ref['coverage'])} (k = {ref['k']})"),
                  ("Fréchet distance", format_number(ref["frechet_distance"]))]
    meaning = div.get("meaning") or {}
    drows += [(f"what the {name} means", _sentence(text)) for name, text in (("Vendi score", meaning.get("vendi")), ("support size", meaning.get("support_size"))) if text]
    if not ref:
        drows.append(("reference set", "none: pass --reference DIR (a folder of real images) for precision, recall, density, coverage and the Fréchet distance"))
    return "<section id='diversity'><h2>Diversity in descriptor space</h2><table>" + _rows(drows) + "</table></section>"


def render_html(run: RunData, before: RunData | None = None, extra: dict | None = None, shown_dir: str | Path | None = None) -> str:
    """The report page as one HTML string (``extra``: :func:`enrich_report`'s output, computed
    here when None and the report lacks it). The verdict is report.json's (computed here only for
    runs written before it was stored). ``shown_dir``: the run directory the page names, when the
    run is rendered in its staging directory before being moved there."""
    rep = run.report
    shown = Path(shown_dir if shown_dir is not None else run.path).resolve()
    if extra is None:
        extra = {} if "spatial" in rep and "diversity" in rep else enrich_report(run.path)
    rep = merge_report(rep, extra)
    if "verdict" not in rep:
        typical = float(np.mean(run.neighbors) / rep["n_samples"]) if rep["n_samples"] else None
        rep["verdict"] = verdict(dict(rep, typical_fraction=typical))
    rip = ripley(run, seed=rep.get("seed", 0))
    w = rep["worst_mode"]
    display = int(run.anchor_index[0])
    wanted = [w["sample_index"], display] + [m["sample_index"] for m in rep.get("modes", [])]
    for a in (w["sample_index"], display):
        wanted += list(run.nearest.get(a, ([], []))[0])
    images = _images(run, wanted)
    gen = rep.get("generator") or run.manifest.get("generator", {})
    title = Path(str(gen.get("path", "generator"))).name
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width,initial-scale=1'>"
             f"<title>gancheck report: {_e(title)}</title><style>{CSS}</style></head><body><main>",
             f"<h1>gancheck report: {_e(title)}</h1><div class='sub'>{_e(gen.get('path', ''))} &middot; run directory {_e(shown)} "
             f"&middot; created {_e(run.manifest.get('created', ''))}</div>",
             _summary(run, rep, before), _fig4(run, rep, images, display), _fig7(rep, images), _distribution(run, rep, before),
             _sampling(run, rep), _ripley(run, rip), _diversity(rep),
             f"<p class='note'>Written by gancheck from {_e(shown)}; figures from report.json and the run's Parquet tables. Method: Wu et al., "
             "Black-Box Diagnosis and Calibration on GAN Intra-Mode Collapse (ACM TOMM 2021).</p></main></body></html>"]
    return "".join(parts)


def write_html(run_dir: str | Path, before: str | Path | None = None, out: str | Path | None = None, extra: dict | None = None,
               shown_dir: str | Path | None = None) -> Path:
    """Render ``report.html`` into the run directory (or ``out``) and return its path.

    ``before``: another run directory (the same generator without the calibrator) to show side by
    side; ``extra``: :func:`enrich_report`'s result when the caller already has it; ``shown_dir``:
    the directory the page names as the run's (its final place, when ``run_dir`` is the staging one).
    """
    from gancheck.files import atomic_write

    run = load_run(run_dir)
    page = render_html(run, load_run(before) if before is not None else None, extra, shown_dir)
    path = Path(out) if out is not None else run.path / "report.html"
    try:
        atomic_write(path, page)
    except OSError as exc:
        raise GancheckError(f"cannot write {path} ({exc.strerror}); choose a writable --out") from None
    return path
