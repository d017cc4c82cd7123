"""The documentation builds, and says what the code does.

The site (mkdocs.yml, docs/) is built with ``mkdocs build --strict``: a broken link, a missing
anchor, a page left out of the navigation or any other warning fails the build and this test. The
CLI reference page is generated at build time from the Typer app (docs/hooks/cli_reference.py);
the commands and options it must show are read here from the same app, not from a list. The
README stays an on-ramp: short, with the two commands that install and run everything."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parents[1]


def _click_command():
    from gancheck.cli.commands import app

    return typer.main.get_command(app)


def _options(command) -> list[str]:
    """Every option name of a click command (``--n``, ``--quiet``, ``-q``, ...)."""
    names = []
    for param in command.params:
        if getattr(param, "param_type_name", "") == "option":
            names += [*param.opts, *getattr(param, "secondary_opts", [])]
    return names


def _section(page: str, anchor: str) -> str:
    """The HTML of one command's section: from its heading to the next heading of its level."""
    start = page.index(f'id="{anchor}"')
    end = page.find("<h2", start)
    return page[start:] if end < 0 else page[start:end]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")  # Material's banner about MkDocs 2.0, not a build warning
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert "WARNING" not in result.stderr, result.stderr
    return out


def test_the_site_builds_strictly_with_every_page(site):
    for page in ("index.html", "cli/index.html", "changelog/index.html", "calibration/index.html",
                 "sources/index.html", "validity/index.html", "benchmarks/index.html", "run-directory/index.html",
                 "calibrator-format/index.html", "report/index.html", "architecture/index.html"):
        assert (site / page).is_file(), page
    assert not (site / "hooks").exists(), "the build's hook is not a page of the site"


def test_the_cli_reference_lists_every_command_and_every_audit_option(site):
    page = (site / "cli" / "index.html").read_text(encoding="utf-8")
    group = _click_command()
    assert group.commands, "the Typer app registers no command"
    for name in group.commands:
        assert f'id="gancheck-{name}"' in page, f"command {name} has no section in the CLI reference"
        assert f"<code>gancheck {name}</code>" in page, name
    audit = _section(page, "gancheck-audit")
    options = _options(group.commands["audit"])
    assert "--n" in options and "--fail-if" in options
    missing = [opt for opt in options if f"<code>{opt}</code>" not in audit]
    assert not missing, f"audit options missing from the CLI reference: {missing}"
    for name, command in group.commands.items():  # every other command's options too, each in its own section
        section = _section(page, f"gancheck-{name}")
        assert not [opt for opt in _options(command) if f"<code>{opt}</code>" not in section], name


def test_the_cli_reference_shows_help_and_defaults_from_the_app(site):
    page = (site / "cli" / "index.html").read_text(encoding="utf-8")
    audit = _section(page, "gancheck-audit")
    command = _click_command().commands["audit"]
    batch = next(p for p in command.params if "--batch-size" in getattr(p, "opts", ()))
    assert f"<code>{batch.default}</code>" in audit
    first_words = " ".join(batch.help.split()[:4])
    assert first_words in audit


def test_the_readme_is_an_on_ramp():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    assert "bash scripts/test.sh" in readme
    assert "bash scripts/main.sh" in readme
    assert "pip install torch==2.13.0" in readme
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme):  # relative links point at files that exist
        if not re.match(r"[a-z]+:", target):
            assert (ROOT / target).exists(), f"README links to a missing file: {target}"


def test_the_changelog_has_an_unreleased_section():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert changelog.startswith("# Changelog")
    assert "## [Unreleased]" in changelog
