"""The audit's summary table on a terminal (Rich)."""

from __future__ import annotations

from pathlib import Path


def render_summary(report: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    w = report["worst_mode"]
    table = Table(title=f"gancheck audit: {report['n_samples']:,} samples, {report['n_anchors']:,} anchors", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    fmt = lambda x: "inf" if x is None else f"{x:.4f}"  # noqa: E731
    table.add_row(f"MCCS mean (form: {report['mccs_form']}, {report['mccs_formula']})", fmt(report["mccs"]["mean"]))
    if report["mccs"].get("mean_ci_low") is not None:
        table.add_row("MCCS mean, 95% bootstrap interval", f"{fmt(report['mccs']['mean_ci_low'])} - {fmt(report['mccs']['mean_ci_high'])}")
    table.add_row("MCCS std (sample)", fmt(report["mccs"]["std"]))
    table.add_row("worst mode MCCS", fmt(w["mccs"]))
    table.add_row("worst mode neighbours within r", f"{w['neighbors']:,} ({100 * w['neighbor_fraction']:.2f}%)")
    table.add_row("worst mode sample index", str(w["sample_index"]))
    table.add_row("theta / r", f"{report['theta']:.4f} / {report['radius']:.4f}")
    if report.get("skipped_nan"):
        table.add_row("images skipped for NaN/Inf", f"{report['skipped_nan']:,}")
    if report.get("no_face", {}).get("count"):
        table.add_row("images with no face", f"{report['no_face']['count']:,} ({100 * report['no_face']['rate']:.1f}%, {report['no_face']['policy']}d)")
    modes = Table(title="distinct dense modes", title_justify="left")
    for col in ("rank", "sample", "N_r", "fraction", "MCCS"):
        modes.add_column(col, justify="right")
    for m in report["modes"][:10]:
        modes.add_row(str(m["rank"]), str(m["sample_index"]), f"{m['neighbors']:,}", f"{100 * m['neighbor_fraction']:.2f}%", fmt(m["mccs"]))
    console = Console()
    console.print(table)
    console.print(modes)
    console.print(f"run directory: {out}  (open {out / 'report.html'} to see the modes)")
