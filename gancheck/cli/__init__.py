"""The ``gancheck`` command line: parses, calls :mod:`gancheck.api`, renders. One module per command;
nothing is computed here, and Typer is imported nowhere else."""

from __future__ import annotations

import typer

from gancheck.cli import audit, calibrate, compare, demo, report, theta
from gancheck.cli.common import handle_errors

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Black-box diagnosis and calibration of GAN intra-mode collapse (Wu et al.).")
for _name, _command in [("audit", audit.audit), ("demo", demo.demo), ("theta", theta.theta_command), ("report", report.report),
                        ("compare", compare.compare), ("calibrate", calibrate.calibrate), ("sample", calibrate.sample)]:
    app.command(_name)(handle_errors(_command))


def main():
    app(prog_name="gancheck")


if __name__ == "__main__":
    main()
