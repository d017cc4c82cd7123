"""How the commands read in ``--help``: choices, defaults and units in words, no Python type labels
(``<bool>``, ``<list[str]>``), plain usage lines (``gancheck audit [OPTIONS] GENERATOR``), an
examples section per command, and ``gancheck --version``."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from gancheck.version import __version__

#: what an option's value is called in help when it names no choices and no metavar of its own
_METAVARS = {int: "N", float: "NUMBER", Path: "PATH", str: "TEXT"}


def _metavar(param) -> str | None:
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""  # a flag takes no value: nothing to show
    desc = getattr(param, "type_descriptor", None)
    if desc is None:  # an older Typer: keep its own label
        return None
    if desc.is_choice:
        return "|".join(str(c) for c in desc.choices or ())
    annotation = desc.annotation
    if desc.is_list:
        args = getattr(annotation, "__args__", (str,))
        annotation = args[0] if args else str
    return _METAVARS.get(annotation, "VALUE")


def _plain(params) -> None:
    for param in params:
        if isinstance(param, TyperArgument):
            param.metavar = param.metavar or param.name.upper()
            param.display_type_rich = lambda ctx: None  # the name says what it is
        elif param.metavar is None:
            param.metavar = _metavar(param)


class Command(TyperCommand):
    """A command whose help shows value names (``N``, ``PATH``, ``paper|reference``), not types, and
    whose line in ``gancheck --help`` is its docstring's first paragraph reflowed (a docstring's own
    line breaks would otherwise cut that line mid-sentence)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.short_help and self.help:
            self.short_help = " ".join(self.help.strip().split("\n\n")[0].split())

    def get_params(self, ctx):
        params = super().get_params(ctx)
        _plain(params)
        return params

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                pieces.append(param.metavar if param.required else f"[{param.metavar}]")
        return pieces


class Group(TyperGroup):
    """The top-level command group, with the same plain help."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        _plain(params)
        return params


def examples(*lines: str) -> str:
    """A command's ``--help`` epilog: an Examples section, one command per line."""
    return "[bold]Examples[/bold]\n\n" + "\n\n".join(f"  [cyan]{line}[/cyan]" for line in lines)


def print_version(value: bool) -> None:
    if value:
        typer.echo(f"gancheck {__version__}")
        raise typer.Exit()


VERSION = typer.Option(False, "--version", callback=print_version, is_eager=True, help="Print gancheck's version and exit.")
