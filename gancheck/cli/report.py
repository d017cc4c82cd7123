"""``gancheck report``: re-render a run's report.html and gate the run."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

import gancheck.api as api
from gancheck.analysis.gates import describe
from gancheck.cli.common import EXIT_GATE
from gancheck.render.terminal import verdict_text


def report(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run directory written by `gancheck audit --out`."),
    before: Optional[Path] = typer.Option(None, "--before", metavar="RUN_DIR", help="Another run of the same generator (e.g. without --calibrator) to show side by side as 'before'."),
    reference: Optional[Path] = typer.Option(None, "--reference", metavar="DIR", help="A folder of real images: adds precision, recall, density, coverage and the Fréchet distance (computed now; report.json is not changed)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="FILE", help="Where to write the page (default: RUN_DIR/report.html)."),
    fail_if: Optional[List[str]] = typer.Option(None, "--fail-if", metavar="'KEY>BOUND'", help="Gate the run as `audit --fail-if` does, also on the report's confidence bounds, e.g. 'mccs.mean_ci_high>0.45'; exit 1 when one fails. Repeatable."),
    junit: Optional[Path] = typer.Option(None, "--junit", metavar="FILE", help="Write JUnit XML here: one test case per --fail-if gate."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but failed gates."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    force: bool = typer.Option(False, "--force", help="Show --before even when it was measured differently (another embedder model, theta, r or MCCS form)."),
    allow_inconclusive: bool = typer.Option(False, "--allow-inconclusive", help="Let --fail-if gates pass on an inconclusive run (degenerate inputs)."),
):
    """Re-render RUN_DIR/report.html (one self-contained page with the paper's figures) and optionally gate the run."""
    result = api.report(run_dir, before=before, reference=reference, out=out, gates=fail_if, junit=junit, overwrite=overwrite,
                        force=force, allow_inconclusive=allow_inconclusive)
    path, results = result["html"], result["gates"]
    if not quiet:
        typer.echo(str(path))
        if result.get("verdict"):
            typer.echo(f"gancheck: {verdict_text({'verdict': result['verdict']})}", err=True)
    for g in results:
        if g["failed"] or not quiet:
            typer.echo(describe(g), err=True)
    if any(g["failed"] for g in results):
        raise typer.Exit(EXIT_GATE)
