"""MkDocs hook: the CLI reference page (``cli.md``), generated at build time from the Typer app.

The page is never committed: on every build this hook imports ``gancheck.cli.commands.app``, asks
Typer for the click command (``typer.main.get_command``) and writes one section per command with
its usage line, its help, its arguments and every option (names, value, default, help), and its
examples. A command or option added, renamed or removed in the code is therefore on the page
at the next build, and the docs test (``tests/test_docs.py``) checks that nothing is missing.

It also publishes the repository's ``CHANGELOG.md`` as ``changelog.md``, so the one file at the
root is the one the site shows.

Wired in ``mkdocs.yml`` (``hooks:``); ``docs/hooks/`` is excluded from the pages (``exclude_docs``).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from mkdocs.structure.files import File

#: the generated page's path inside the site (``nav`` in mkdocs.yml names it)
CLI_PAGE = "cli.md"
CHANGELOG_PAGE = "changelog.md"

_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def _plain(text: str | None) -> str:
    """Help text as a terminal shows it: Rich markup removed (the app uses ``rich_markup_mode``)."""
    if not text:
        return ""
    from rich.text import Text

    return Text.from_markup(text).plain


def _escape(text: str) -> str:
    """Markdown-safe text for a table cell or a paragraph, code spans left as they are."""
    out, last = [], 0
    for match in _CODE_SPAN.finditer(text):
        out.append(_escape_plain(text[last:match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_escape_plain(text[last:]))
    return "".join(out).replace("|", "\\|")


def _escape_plain(text: str) -> str:
    text = html.escape(text, quote=False)
    return re.sub(r"([\\*_\[\]])", r"\\\1", text)


def _paragraphs(text: str) -> list[str]:
    """A docstring's paragraphs, each reflowed to one line (as Typer reflows them in ``--help``)."""
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text.strip()) if block.strip()]


def _code(text: str) -> str:
    """``text`` as one inline code span (longer backtick fence when it holds a backtick)."""
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _epilog(text: str) -> list[str]:
    """The epilog (an Examples section of one command per line) as Markdown lines."""
    plain = _plain(text).strip()
    if not plain:
        return []
    lines = [line.strip() for line in plain.splitlines()]
    if lines and lines[0].lower() == "examples":
        commands = [line for line in lines[1:] if line]
        return ["**Examples**", "", "```bash", *commands, "```", ""]
    return [*(_escape(p) + "\n" for p in _paragraphs(plain))]


def _default(param, ctx) -> str:
    """What ``--help`` shows as the option's default, as Markdown ('' when it shows none): a value
    as code, a description in words (``show_default="the embedder's"``) as text."""
    show = getattr(param, "show_default", None)
    if isinstance(show, str):
        return _escape(show)
    value = _default_value(param, ctx, show)
    return _code(value) if value else ""


def _default_value(param, ctx, show) -> str:
    if show is False:
        return ""
    try:
        value = param.get_default(ctx, call=False)
    except TypeError:  # an older click without ``call``
        value = param.get_default(ctx)
    if callable(value):
        return "(computed)"
    if value is None or value == () or value == []:
        return ""
    if getattr(param, "is_flag", False):
        if getattr(param, "secondary_opts", None):
            return (param.opts if value else param.secondary_opts)[0]
        return "on" if value else ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _option_names(param) -> str:
    names = ", ".join(_code(name) for name in param.opts)
    if getattr(param, "secondary_opts", None):
        names += " / " + ", ".join(_code(name) for name in param.secondary_opts)
    return names


def _value(param) -> str:
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return "(flag)"
    metavar = param.metavar or param.name.upper()
    value = _code(str(metavar))
    if getattr(param, "multiple", False):
        value += ", repeatable"
    return value


def _option_help(param) -> str:
    text = " ".join(_paragraphs(_plain(getattr(param, "help", "") or "")))
    notes = []
    if getattr(param, "required", False):
        notes.append("Required.")
    envvar = getattr(param, "envvar", None)
    if envvar:
        notes.append("Environment: " + ", ".join(_code(v) for v in ([envvar] if isinstance(envvar, str) else envvar)) + ".")
    if getattr(param, "hidden", False):
        notes.append("Hidden from `--help`.")
    return " ".join([_escape(text), *notes]).strip()


def _is_argument(param) -> bool:
    # click's own convention, true of click and of the copy recent Typer releases vendor
    # (``typer._click``, which has no ``Argument`` class to test against)
    return getattr(param, "param_type_name", "") == "argument"


def _context(cmd, name: str, parent=None):
    return cmd.context_class(cmd, info_name=name, parent=parent)


def _command_section(cmd, ctx, path: list[str], level: int) -> list[str]:
    """One command's section (and its subcommands', for a group)."""
    name = " ".join(path)
    heading = "#" * level + " " + _code(name)
    lines = [heading, ""]
    if getattr(cmd, "hidden", False):
        lines += ["*Hidden from `gancheck --help`.*", ""]
    if getattr(cmd, "deprecated", False):
        lines += ["*Deprecated.*", ""]
    usage = " ".join([name, *cmd.collect_usage_pieces(ctx)])
    lines += ["```text", usage, "```", ""]
    for paragraph in _paragraphs(_plain(cmd.help or "")):
        lines += [_escape(paragraph), ""]

    params = cmd.get_params(ctx)
    arguments = [p for p in params if _is_argument(p)]
    options = [p for p in params if not _is_argument(p)]
    if arguments:
        lines += ["**Arguments**", "", "| argument | help |", "| --- | --- |"]
        for arg in arguments:
            metavar = arg.metavar or arg.name.upper()
            help_text = _escape(" ".join(_paragraphs(_plain(getattr(arg, "help", "") or ""))))
            if not arg.required:
                help_text = (help_text + " Optional.").strip()
            lines.append(f"| {_code(metavar)} | {help_text} |")
        lines.append("")
    if options:
        lines += ["**Options**", "", "| option | value | default | help |", "| --- | --- | --- | --- |"]
        for opt in options:
            default = _default(opt, ctx)
            lines.append(f"| {_option_names(opt)} | {_value(opt)} | {default} | {_option_help(opt)} |")
        lines.append("")
    lines += _epilog(getattr(cmd, "epilog", None) or "")

    for sub_name, sub in getattr(cmd, "commands", {}).items():  # a group's subcommands
        lines += _command_section(sub, _context(sub, sub_name, ctx), [*path, sub_name], min(level + 1, 6))
    return lines


def cli_reference_markdown() -> str:
    """The whole CLI reference page, as Markdown, from ``gancheck.cli.commands.app``."""
    import typer
    from mkdocs.exceptions import PluginError

    try:
        from gancheck.cli.commands import app
    except Exception as exc:  # the page must never be built from a stale or partial app
        raise PluginError(f"the CLI reference needs the Typer app gancheck.cli.commands.app, which did not import: "
                          f"{type(exc).__name__}: {exc}") from exc

    root = typer.main.get_command(app)
    ctx = _context(root, "gancheck")
    lines = [
        "# CLI reference",
        "",
        "Generated from the Typer app (`gancheck.cli.commands.app`) each time the documentation is built,",
        "so it lists exactly the commands and options of this version. `gancheck COMMAND --help` prints",
        "the same text on a terminal.",
        "",
    ]
    for paragraph in _paragraphs(_plain(root.help or "")):
        lines += [_escape(paragraph), ""]
    commands = getattr(root, "commands", {})
    lines += ["| command | what it does |", "| --- | --- |"]
    for name, cmd in commands.items():
        summary = cmd.get_short_help_str(limit=300) if hasattr(cmd, "get_short_help_str") else (cmd.short_help or "")
        lines.append(f"| [{_code('gancheck ' + name)}](#{_anchor('gancheck ' + name)}) | {_escape(_plain(summary))} |")
    lines.append("")
    lines += _epilog(getattr(root, "epilog", None) or "")
    # the group's own options (--version, --help)
    group_options = [p for p in root.get_params(ctx) if not _is_argument(p)]
    if group_options:
        lines += ["**Options of `gancheck` itself**", "", "| option | help |", "| --- | --- |"]
        for opt in group_options:
            lines.append(f"| {_option_names(opt)} | {_option_help(opt)} |")
        lines.append("")
    for name, cmd in commands.items():
        sub_ctx = _context(cmd, name, ctx)
        lines += _command_section(cmd, sub_ctx, ["gancheck", name], 2)
    return "\n".join(lines).rstrip() + "\n"


def _anchor(title: str) -> str:
    """The id MkDocs' ``toc`` extension gives a heading (its default ``slugify``)."""
    from markdown.extensions.toc import slugify

    return slugify(title, "-")


def on_files(files, config):
    """Add the generated CLI reference and the root CHANGELOG.md to the site's files."""
    files.append(File.generated(config, CLI_PAGE, content=cli_reference_markdown()))
    changelog = Path(config.config_file_path).parent / "CHANGELOG.md"
    if changelog.is_file():
        files.append(File.generated(config, CHANGELOG_PAGE, content=changelog.read_text(encoding="utf-8")))
    return files
