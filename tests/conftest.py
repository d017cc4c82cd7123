import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLANTED_FRACTION = 0.05


@pytest.fixture(scope="session")
def planted_onnx(tmp_path_factory):
    """A generator built by the test: 5% of latents (z[0] > t) map onto one image."""
    from gancheck.sources.planted import build_planted_generator

    return build_planted_generator(tmp_path_factory.mktemp("gen") / "planted.onnx", fraction=PLANTED_FRACTION)


def run_cli(*args, env=None, timeout=600):
    """Run ``python -m gancheck ARGS`` in a subprocess; returns CompletedProcess with text output."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "gancheck", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=ROOT, timeout=timeout)


def audited_run(model, out, *args):
    """Audit ``model`` into ``out`` with its embeddings saved (what calibration fits on); returns ``out``."""
    proc = run_cli("audit", model, "--out", out, *args, "--save-embeddings")
    assert proc.returncode == 0, proc.stderr
    return out
