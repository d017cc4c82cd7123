"""The audit's summary on a terminal (Rich) and its last line in a log; both read the verdict
computed in :mod:`gancheck.analysis.verdict`, and format numbers with :mod:`gancheck.formatting`."""

from __future__ import annotations

from pathlib import Path

from gancheck.formatting import format_count, format_interval, format_number, format_share

#: Rich style of each verdict status
STATUS_STYLE = {"pass": "bold green", "collapse": "bold yellow", "fail": "bold red", "inconclusive": "bold magenta"}


def verdict_text(report: dict) -> str:
    """``COLLAPSE: Collapse detected: ...``, or the figures' summary for a report without a verdict."""
    v = report.get("verdict")
    if not v:
        w = report.get("worst_mode")
        return f"Worst mode holds {format_share(w['neighbor_fraction'])} of the samples" if w else "Figures in report.json"
    return f"{v['status'].upper()}: {v['headline']}"


def final_line(report: dict, html: Path, elapsed: str) -> str:
    """The last line of an audit in a CI log: time taken, verdict and where the report is."""
    return f"gancheck: finished in {elapsed}. {verdict_text(report)}. Report: {html}"


def summary_rows(report: dict) -> list[tuple[str, str]]:
    w, mc = report["worst_mode"], report["mccs"]
    rows = [(f"MCCS mean mu (form: {report['mccs_form']}, {report['mccs_formula']})", _with_interval(mc, "mean"))]
    if mc.get("mean_raw") is not None and mc["mean_raw"] != mc["mean"]:
        rows.append(("MCCS mean on this collection, before the bias correction", format_number(mc["mean_raw"])))
    rows += [("MCCS std sigma", _with_interval(mc, "std")), ("worst mode MCCS(I_w)", format_number(w["mccs"])),
             ("worst mode neighbours within r", f"{format_count(w['neighbors'])} ({format_share(w['neighbor_fraction'])})")]
    if w.get("share_ci_low") is not None:
        rows.append(("worst mode share on the other anchors",
                     f"{format_share(w['held_out_fraction'])} ({format_interval(w['share_ci_low'], w['share_ci_high'], share=True)})"))
    rows += [("worst mode sample index", str(w["sample_index"])),
             ("theta / r (normalised angular distance)", f"{format_number(report['theta'])} / {format_number(report['radius'])}")]
    if report.get("skipped_nan"):
        rows.append(("images skipped for NaN/Inf", format_count(report["skipped_nan"])))
    nf = report.get("no_face") or {}
    if nf.get("count"):
        rows.append(("images with no face", f"{format_count(nf['count'])} ({format_share(nf['rate'])}, {nf['policy']}d)"))
    return rows


def _with_interval(mc: dict, key: str) -> str:
    """``0.213 (95% CI 0.201 to 0.226)``: a figure with the interval of the same quantity."""
    value = format_number(mc[key])
    if mc.get(f"{key}_ci_low") is None:
        return value
    return f"{value} ({format_interval(mc[f'{key}_ci_low'], mc[f'{key}_ci_high'])})"


def render_summary(report: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"gancheck audit: {format_count(report['n_samples'])} samples, {format_count(report['n_anchors'])} anchors", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in summary_rows(report):
        table.add_row(name, value)
    modes = Table(title="distinct dense modes", title_justify="left")
    for col in ("rank", "sample", "N_r", "share", "MCCS"):
        modes.add_column(col, justify="right")
    for m in report["modes"][:10]:
        modes.add_row(str(m["rank"]), str(m["sample_index"]), format_count(m["neighbors"]), format_share(m["neighbor_fraction"]), format_number(m["mccs"]))
    console = Console()
    console.print(table)
    if report["mccs"].get("ci_note"):
        console.print(f"note: {report['mccs']['ci_note']}", style="yellow", highlight=False, markup=False)
    console.print(modes)
    v = report.get("verdict")
    if v:
        console.print(f"verdict: {v['status'].upper()}: {v['headline']}", style=STATUS_STYLE.get(v["status"], "bold"), highlight=False, markup=False)
        for reason in v.get("reasons", []):
            console.print(f"  {reason}", highlight=False, markup=False)
    console.print(f"report: {Path(out) / 'report.html'}  (run directory {out})", highlight=False, markup=False)
