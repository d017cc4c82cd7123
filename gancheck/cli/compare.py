"""``gancheck compare``: the change of every key figure between two runs, gated for CI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List, Optional

import typer

import gancheck.api as api
from gancheck.analysis.compare import describe_change
from gancheck.analysis.gates import describe
from gancheck.cli.common import EXIT_GATE
from gancheck.formatting import format_change, format_number, format_share
from gancheck.render.junit import write_junit


def compare(
    run_a: Path = typer.Argument(..., metavar="RUN_A", help="Baseline run directory (e.g. the released generator's audit)."),
    run_b: Path = typer.Argument(..., metavar="RUN_B", help="Candidate run directory, compared against RUN_A."),
    max_increase: Optional[List[str]] = typer.Option(None, "--max-increase", metavar="KEY=AMOUNT", help="KEY=AMOUNT or KEY=PERCENT%: exit 1 when KEY rises by more from A to B, e.g. mccs.mean=0.02. Repeatable."),
    max_decrease: Optional[List[str]] = typer.Option(None, "--max-decrease", metavar="KEY=AMOUNT", help="KEY=AMOUNT or KEY=PERCENT%: exit 1 when KEY falls by more from A to B, e.g. diversity.vendi=10%. Repeatable."),
    fail_if: Optional[List[str]] = typer.Option(None, "--fail-if", metavar="'KEY>BOUND'", help="Gate on run B alone, as in `audit --fail-if`, e.g. 'worst_mode.neighbor_fraction_ci_high>0.02'. Repeatable."),
    junit: Optional[Path] = typer.Option(None, "--junit", metavar="FILE", help="Write JUnit XML here: one test case per gate."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON (and nothing else on stdout)."),
    allow_mismatch: bool = typer.Option(False, "--allow-mismatch", "--force", help="Compare runs measured differently (another embedder model file or options, theta, r or MCCS form)."),
):
    """Print the change in every key figure from RUN_A to RUN_B and gate on regressions (exit 1 when a gate fails)."""
    result = api.compare(run_a, run_b, max_increase=max_increase, max_decrease=max_decrease, fail_if=fail_if,
                         allow_mismatch=allow_mismatch)
    lines = [describe(g) if g["kind"] == "fail_if" else describe_change(g) for g in result["gates"]]
    if junit is not None:
        cases = [{"name": g["gate"], "failed": g["failed"], "message": line} for g, line in zip(result["gates"], lines)]
        props = {"run_a": Path(run_a).resolve(), "run_b": Path(run_b).resolve()}
        props.update({f"change.{row['key']}": row["change"] for row in result["figures"] if row["change"] is not None})
        write_junit(junit, "gancheck.compare", cases, props, output="\n".join(_table_lines(result)))
    if as_json:
        typer.echo(json.dumps(_finite(result), indent=2, allow_nan=False))
    else:
        typer.echo("\n".join(_table_lines(result)))
        for line in result["mismatch"]:
            typer.echo(f"warning: settings differ: {line}", err=True)
    for g, line in zip(result["gates"], lines):
        if g["failed"] or not as_json:
            typer.echo(line, err=True)
    if any(g["failed"] for g in result["gates"]):
        raise typer.Exit(EXIT_GATE)


def _finite(x):
    """JSON has no infinity: infinite figures (the reference MCCS form at m = 1) become null."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _share(key: str) -> bool:
    """Whether a report key holds a share of a whole (written as a percentage)."""
    return "fraction" in key or key.endswith("rate")


def _fmt(x, share: bool = False) -> str:
    """A figure in the one formatting rule (exact values: --json)."""
    if x is None:
        return "-"
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return format_share(x) if share else format_number(x)
    return str(x)


def _table_lines(result: dict) -> list[str]:
    rows = [("figure", "A", "B", "change", "relative")]
    for r in result["figures"]:
        share = _share(r["key"])
        rel = "-" if r["relative"] is None else ("+" if r["relative"] > 0 else "-" if r["relative"] < 0 else "\u00b1") + format_share(abs(r["relative"]))
        change = "-" if r["change"] is None else format_change(r["change"], share=share)
        rows.append((r["key"], _fmt(r["a"], share), _fmt(r["b"], share), change, rel))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    out = [f"A: {result['run_a']}", f"B: {result['run_b']}"]
    out += ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    d = result.get("mean_difference")
    if d is not None:
        out.append(f"mean MCCS B - A: {format_change(d['difference'])} (95% CI {format_number(d['ci_low'])} to {format_number(d['ci_high'])}); "
                   f"B collapses more than A: {'yes' if d['b_worse'] else 'not shown'} (one-sided p = {format_number(d['p_value'])})")
    return out
