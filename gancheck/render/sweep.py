"""A class sweep's page, ``OUT/report.html``: the ranking table (mean MCCS and spread with their
confidence intervals, the worst mode's MCCS and share) and one small figure per class, the
distribution of its anchors' MCCS, all on one scale. Each class's own report is linked."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from gancheck.analysis.proportions import ALPHA
from gancheck.files import atomic_write
from gancheck.formatting import format_number, format_share
from gancheck.render.html import BLUE, RED, _figure_uri, _mpl


def class_figure(scores: np.ndarray, label: str, top: float, collapsed: bool, mean: float | None) -> str:
    """A small histogram of one class's per-anchor MCCS, with its mu (the table's), as a data URI."""
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(2.4, 1.5))
    finite = scores[np.isfinite(scores)]
    ax.hist(finite, bins=np.linspace(0, top, 25), color=RED if collapsed else BLUE)
    if mean is not None:
        ax.axvline(mean, color="black", lw=1)
    ax.set_title(f"class {label}", fontsize=8)
    ax.set_yticks([])
    ax.tick_params(labelsize=7)
    return _figure_uri(fig)


def _f(x) -> str:
    return format_number(x)


def _flag(test: dict | None) -> str:
    return "" if test is None else f"+{_f(test['difference'])} (q = {_f(test['q_value'])})"


def render_sweep(table: dict, scores: dict[str, np.ndarray]) -> str:
    top = max([float(np.nanmax(s[np.isfinite(s)])) for s in scores.values() if np.isfinite(s).any()] + [1e-6]) * 1.05
    rows, figures = [], []
    flagged = {f["label"]: f for f in table.get("flagged", [])}
    for label in table["ranking"]:
        r = table["classes"][label]
        m, w = r["mccs"], r["worst_mode"]
        ranks = r.get("rank_ci")
        f = flagged.get(label)
        rows.append(f"<tr><td>{r['rank']}</td><td>{'' if not ranks else f'{ranks[0]}&ndash;{ranks[1]}'}</td>"
                    f"<td><a href='class-{html.escape(label)}/report.html'>{html.escape(label)}</a></td>"
                    f"<td>{_f(m['mean'])} [{_f(m['mean_ci_low'])}, {_f(m['mean_ci_high'])}]</td>"
                    f"<td>{_f(m['std'])} [{_f(m['std_ci_low'])}, {_f(m['std_ci_high'])}]</td><td>{_f(w['mccs'])}</td>"
                    f"<td>{format_share(w['neighbor_fraction'])} [{format_share(w['neighbor_fraction_ci_low'])}, "
                    f"{format_share(w['neighbor_fraction_ci_high'])}]</td>"
                    f"<td>{_flag(f)}</td></tr>")
        figures.append(f"<img alt='class {html.escape(label)}' src='{class_figure(scores[label], label, top, r['rank'] == 1, m['mean'])}'>")
    notes = "".join(f"<li>class {html.escape(label)}: {html.escape(table['classes'][label]['mccs']['ci_note'])}</li>"
                    for label in table["ranking"] if table["classes"][label]["mccs"].get("ci_note"))
    gates = "".join(f"<li>{html.escape(g['gate'])}: {'FAILED' if g['failed'] else 'passed'} (value {format_number(g['value'])})</li>" for g in table.get("gates", []))
    flagged_text = ", ".join(html.escape(x) for x in flagged) or "none"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>gancheck sweep over {html.escape(table['input'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:3px 10px;text-align:left}}tr:nth-child(even){{background:#f4f4f4}}</style></head><body>
<h1>Collapse by class: input <code>{html.escape(table['input'])}</code></h1>
<p>Each class was audited as its own run with the same seeds and embedder, and the classes are ranked by their mean MCCS,
corrected for the collection's bias, most collapsed first. A rank's interval holds 95% of the ranks over resampled anchors and
collection noise. Flagged: classes whose mean MCCS is above the median of the other classes' (one-sided test,
Benjamini-Hochberg q &lt; {format_share(ALPHA)}): {flagged_text}.</p>
<table><tr><th>rank</th><th>rank 95% CI</th><th>class</th><th>mean MCCS [95% CI]</th><th>sigma [95% CI]</th><th>worst mode MCCS</th>
<th>worst mode share [95% CI]</th><th>flagged: above the median class</th></tr>
{''.join(rows)}</table>{f'<h2>Notes</h2><ul>{notes}</ul>' if notes else ''}{f'<h2>Gates</h2><ul>{gates}</ul>' if gates else ''}
<h2>Per-anchor MCCS by class (ranked; line: the class's mu)</h2><div>{''.join(figures)}</div></body></html>"""


def write_sweep_html(out: str | Path, table: dict, scores: dict[str, np.ndarray]) -> Path:
    path = Path(out) / "report.html"
    atomic_write(path, render_sweep(table, scores))
    return path
