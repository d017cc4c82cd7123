"""``gancheck demo``: audit the generator that ships with the package."""

from __future__ import annotations

from pathlib import Path

import typer

from gancheck.cli.audit import CLI_OPTIONS, run_audit_command
from gancheck.cli.declared import defaults
from gancheck.sources.planted import DEMO_MODEL


def demo(
    out: Path = typer.Option(Path("gancheck-demo"), "--out", metavar="DIR", help="Run directory for the demo audit."),
    n: str = typer.Option("2e4", "--n", metavar="N", help="Size of the collection C, in samples; accepts 1e6-style numbers."),
    anchors: str = typer.Option("1000", "--anchors", metavar="N", help="Number of anchors A whose MCCS is computed."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors (no progress, no summary)."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json to stdout (and nothing else)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run in --out that is not a demo run (an earlier demo run is always replaced)."),
):
    """Audit the built-in demo generator (ships with the package; 6% of its draws collapse onto one image)."""
    run_audit_command(str(DEMO_MODEL), dict(defaults(CLI_OPTIONS), n=n, anchors=anchors, out=out, overwrite=overwrite or _holds_demo(out),
                                            quiet=quiet, as_json=as_json))


def _holds_demo(out: Path) -> bool:
    """Whether ``out`` holds an earlier demo run (which a new demo may replace; any other run is kept)."""
    import json

    try:
        generator = json.loads((Path(out) / "manifest.json").read_text())["config"]["generator"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return Path(str(generator)).name == Path(DEMO_MODEL).name
