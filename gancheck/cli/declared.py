"""Typer parameters built from the one declaration of each option (:mod:`gancheck.options`), so a
flag, its default and its help are written once for the CLI, the Python API and the run's settings."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Callable, List, Optional

import typer

from gancheck.options import Option

_TYPES = {"count": str, "int": int, "float": float, "str": str, "path": Path, "flag": bool, "list": List[str]}


def cli_default(opt: Option):
    """What Typer fills in when the flag is not given. A generator's or embedder's option stays None
    (not given), so that the plug-in's own default applies and a plug-in that does not take the
    option is only told about it when the user gave it."""
    if opt.target in ("generator", "embedder") or opt.kind == "list":
        return None
    value = opt.cli_default if opt.cli_default is not None else opt.default
    return f"{value:g}" if opt.kind == "count" and value is not None else value


def parameter(opt: Option) -> inspect.Parameter:
    """``opt`` as a keyword parameter carrying its ``typer.Option``."""
    default = cli_default(opt)
    show = opt.show_default
    if show is True and default is None and opt.default is not None and opt.kind != "list":
        show = str(opt.default)  # the plug-in's default, written in the declaration
    kind = _TYPES[opt.kind]
    annotation = kind if default is not None or opt.kind == "flag" else Optional[kind]
    info = typer.Option(default, *opt.flags, metavar=opt.metavar, help=opt.help, show_default=show, envvar=opt.envvar)
    return inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)


def declared_command(options: list[Option], leading: list[inspect.Parameter] = ()) -> Callable:
    """Give ``fn(*leading, **values)`` the signature Typer reads: ``leading`` (the arguments), then
    one parameter per declared option, in declaration order."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def command(*args, **values):
            return fn(*args, **values)

        command.__signature__ = inspect.Signature([*leading, *(parameter(o) for o in options)])
        command.__annotations__ = {}
        return command

    return decorate


def defaults(options: list[Option]) -> dict:
    """Every declared option at the value the command line gives it when the flag is left out."""
    return {o.name: cli_default(o) for o in options}
