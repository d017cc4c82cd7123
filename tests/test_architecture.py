"""The package's layers hold: no module imports one above it, none imports in a circle (imports
inside functions count), and Typer stays in the CLI. The contracts are in .importlinter."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint(config: Path) -> subprocess.CompletedProcess:
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename=sys.argv[1]))"
    return subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, cwd=ROOT)


def test_layers_and_typer_contracts_are_kept():
    result = lint(ROOT / ".importlinter")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    # The same layers over a copy of the package in which the maths imports the CLI: the check must see it.
    import shutil

    copy = tmp_path / "src"
    for package in ("gancheck", "embedders"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__", "data"))
    maths = copy / "gancheck" / "maths.py"
    maths.write_text(maths.read_text() + "\n\ndef _upward():\n    import gancheck.cli  # noqa: F401\n")
    config = tmp_path / ".importlinter"
    config.write_text((ROOT / ".importlinter").read_text())
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename=sys.argv[1]))")
    result = subprocess.run([sys.executable, "-c", code, str(config), str(copy)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0
    assert "gancheck.maths -> gancheck.cli" in result.stdout
