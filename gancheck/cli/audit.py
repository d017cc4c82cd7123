"""``gancheck audit``: audit a generator for intra-mode collapse."""

from __future__ import annotations

import functools
import inspect
import json
import sys
from pathlib import Path

import typer

import gancheck.api as api
from gancheck.analysis.gates import describe
from gancheck.analysis.proportions import ALPHA
from gancheck.cli.common import EXIT_GATE, set_threads
from gancheck.cli.declared import declared_command
from gancheck.options import API_ONLY, AUDIT_OPTIONS
from gancheck.cli.progress import Reporter, choose_mode
from gancheck.formatting import format_number as num, format_share
from gancheck.render.terminal import final_line, render_summary


GENERATOR = inspect.Parameter("generator", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str, default=typer.Argument(
    ..., metavar="GENERATOR", help="The generator: an .onnx file, a PyTorch 2 file (.pt2: torch.export program or AOTInductor package), a TorchScript file (.pt), a Python callable package.module:attr, a folder of its images, an inference server's http(s)://HOST:PORT/v2/models/NAME, a JSON service URL with --request-template, or 'cmd:PROGRAM ARGS' (docs/sources.md)."))
#: the options on the command line, in --help's order (every declared option but the API-only ones)
CLI_OPTIONS = [o for name, o in AUDIT_OPTIONS.items() if name not in API_ONLY]


@declared_command(CLI_OPTIONS, [GENERATOR])
def audit(generator: str, **values):
    """Audit a generator for intra-mode collapse: MCCS per anchor, its mean and spread, dense modes."""
    run_audit_command(generator, values)


def run_audit_command(generator: str, values: dict) -> None:
    """``gancheck audit`` with its option ``values`` (by keyword): run, print, exit 1 on a failed gate."""
    values = dict(values)
    as_json, quiet, sweep = values.pop("as_json"), values.pop("quiet"), values.pop("sweep")
    set_threads(values["threads"])
    mode = choose_mode(quiet, as_json)
    with Reporter(mode) as rep:
        call = functools.partial(api.sweep, sweep=sweep) if sweep else api.audit
        report = call(generator, progress=_then_report(rep), log=rep.logger, argv=sys.argv, **values)
    out = Path(values["out"])
    if sweep:
        return _finish_sweep(report, as_json, mode != "off", out)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    elif mode == "rich":
        render_summary(report, out)
    for g in report.get("gates", []):
        if g["failed"] or mode != "off":
            typer.echo(describe(g), err=True)
    if mode == "lines":
        typer.echo(final_line(report, out / "report.html", rep.elapsed()), err=True)
    if any(g["failed"] for g in report.get("gates", [])):
        raise typer.Exit(EXIT_GATE)


def _then_report(rep: Reporter):
    """The progress callback, which also says when the run is being analysed (the last, quiet minute)."""
    if rep.progress is None:
        return None

    def update(stage: str, done: int, total: int) -> None:
        rep.update(stage, done, total)
        if stage == "samples" and done >= total:
            rep.log("analysing the run (confidence intervals, Ripley test, diversity) and drawing report.html")

    return update


def _finish_sweep(table: dict, as_json: bool, show: bool, out: Path) -> None:
    """A class sweep's ranking on stdout (or its JSON), its gates on stderr, exit 1 on a failed gate."""
    if as_json:
        typer.echo(json.dumps(table, indent=2))
    elif show:
        typer.echo(f"class sweep over input {table['input']}: ranked by mean MCCS (bias-corrected, 95% intervals), most collapsed first")
        for line in sweep_lines(table):
            typer.echo(line)
        typer.echo(f"report: {out / 'report.html'}")
    for g in table.get("gates", []):
        if g["failed"] or show:
            typer.echo(describe(g), err=True)
    if any(g["failed"] for g in table.get("gates", [])):
        raise typer.Exit(EXIT_GATE)


def sweep_lines(table: dict) -> list[str]:
    """One line per class, most collapsed first, then the flagged classes and the notes."""
    lines = []
    for label in table["ranking"]:
        r = table["classes"][label]
        m, w = r["mccs"], r["worst_mode"]
        ranks = r.get("rank_ci")
        within = f"(rank {ranks[0]}-{ranks[1]})" if ranks and ranks[0] != ranks[1] else ""
        lines.append(f"  {r['rank']:>3}. class {label:<8} {within:<13} mean {num(m['mean'])} [{num(m['mean_ci_low'])}, {num(m['mean_ci_high'])}]"
                     f"  sigma {num(m['std'])}  worst mode {num(w['mccs'])} ({format_share(w['neighbor_fraction'])} of samples)")
    flagged = table.get("flagged") or []
    lines.append(f"  flagged (mean MCCS above the other classes' median, Benjamini-Hochberg q < {format_share(ALPHA)}): "
                 + (", ".join(f"class {f['label']} (+{num(f['difference'])}, q = {num(f['q_value'])})" for f in flagged) or "none"))
    lines += [f"  note, class {label}: {table['classes'][label]['mccs']['ci_note']}" for label in table["ranking"]
              if table["classes"][label]["mccs"].get("ci_note")]
    return lines
