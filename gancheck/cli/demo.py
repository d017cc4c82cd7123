"""``gancheck demo``: audit the generator that ships with the package."""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from gancheck.cli.audit import audit
from gancheck.sources.planted import DEMO_MODEL


def demo(
    out: Path = typer.Option(Path("gancheck-demo"), "--out", help="Run directory for the demo audit."),
    n: str = typer.Option("2e4", "--n", help="Collection size."),
    anchors: str = typer.Option("1000", "--anchors", help="Number of anchors."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary table."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json to stdout."),
):
    """Audit the built-in demo generator (ships with the package; 6% of its draws collapse onto one image)."""
    audit(generator=str(DEMO_MODEL), n=n, anchors=anchors, out=out, overwrite=True, quiet=quiet, as_json=as_json,
          **_audit_defaults(exclude={"generator", "n", "anchors", "out", "overwrite", "quiet", "as_json"}))


def _audit_defaults(exclude: set) -> dict:
    """The audit command's defaults, for commands that call it with a few values changed."""
    return {k: (p.default.default if hasattr(p.default, "default") else p.default)
            for k, p in inspect.signature(audit.__wrapped__).parameters.items() if k not in exclude}
