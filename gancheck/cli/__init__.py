"""The ``gancheck`` command line: parses, calls :mod:`gancheck.api`, renders. One module per command
(registered in :mod:`gancheck.cli.commands`); nothing is computed here, and Typer is imported
nowhere else.

This module stays light on purpose: the entry point :func:`main` imports the commands (numpy,
onnxruntime, Typer: seconds) inside its own Ctrl-C guard, so an interrupt at any point, the imports
included, ends in one line and exit status 130, never a traceback.
"""

from __future__ import annotations

import signal
import sys

#: exit status after SIGINT (128 + 2), as shells report it
EXIT_SIGINT = 128 + int(signal.SIGINT)


def _interrupted() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the exit itself
    try:
        sys.stderr.write("gancheck: stopped by SIGINT\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    sys.exit(EXIT_SIGINT)


def main() -> None:
    """The ``gancheck`` command (``python -m gancheck``): one-line errors, signals and --debug
    (:func:`gancheck.cli.common.run_app`)."""
    try:
        from gancheck.cli.commands import app
        from gancheck.cli.common import run_app

        run_app(app)
    except KeyboardInterrupt:  # during the imports, or a Ctrl-C that outran run_app's own handling
        _interrupted()


def __getattr__(name: str):
    if name == "app":  # ``from gancheck.cli import app``: the Typer app, loaded on first use
        from gancheck.cli.commands import app

        return app
    raise AttributeError(f"module 'gancheck.cli' has no attribute {name!r}")


if __name__ == "__main__":
    main()
