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
from gancheck.render.junit import write_junit


def compare(
    run_a: Path = typer.Argument(..., help="Baseline run directory (e.g. the released generator's audit)."),
    run_b: Path = typer.Argument(..., help="Candidate run directory, compared against RUN_A."),
    max_increase: Optional[List[str]] = typer.Option(None, "--max-increase", help="KEY=AMOUNT or KEY=PERCENT%: exit 1 when KEY rises by more from A to B, e.g. mccs.mean=0.02. Repeatable."),
    max_decrease: Optional[List[str]] = typer.Option(None, "--max-decrease", help="KEY=AMOUNT or KEY=PERCENT%: exit 1 when KEY falls by more from A to B, e.g. diversity.vendi=10%. Repeatable."),
    fail_if: Optional[List[str]] = typer.Option(None, "--fail-if", help="Gate on run B alone, as in `audit --fail-if`, e.g. 'worst_mode.neighbor_fraction_ci_high>0.02'. Repeatable."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML here: one test case per gate."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON (and nothing else on stdout)."),
    allow_mismatch: bool = typer.Option(False, "--allow-mismatch", help="Compare runs measured with different descriptor, theta, r or MCCS form."),
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


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "inf" if x == float("inf") else f"{x:.6g}"
    return str(x)


def _table_lines(result: dict) -> list[str]:
    rows = [("figure", "A", "B", "change", "relative")]
    for r in result["figures"]:
        rel = "-" if r["relative"] is None else f"{100 * r['relative']:+.1f}%"
        change = "-" if r["change"] is None else f"{r['change']:+.6g}"
        rows.append((r["key"], _fmt(r["a"]), _fmt(r["b"]), change, rel))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    out = [f"A: {result['run_a']}", f"B: {result['run_b']}"]
    out += ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    return out
