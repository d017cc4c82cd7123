"""Property-based (hypothesis): whatever option values and whatever damaged run directory the
command line is given, it answers with exit status 0, 1 or 2, never a traceback, and never changes
an earlier run it was not asked to replace.

The command line runs in this process (``gancheck.cli.common.run_app``, the real entry point) so
that many examples fit in the time of a few subprocesses."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli

NUMBERS = st.one_of(st.sampled_from(["0", "1", "2", "-1", "1e99", "inf", "-inf", "nan", "1.5", "1e3", "abc", "", "0x10", "2_000",
                                     "1e-300", "9" * 40]),
                    st.integers(-10, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr))
OPTIONS = ["--n", "--anchors", "--seed", "--theta", "--radius", "--batch-size", "--chunk-size", "--top-k", "--shard-size",
           "--retries", "--workers", "--timeout", "--truncation", "--latent-shape", "--mccs-form", "--on-nan", "--no-face",
           "--executor", "--backend", "--layout", "--range", "--prior", "--embedder", "--fail-if", "--input", "--embedder-opt"]


def cli(*args) -> tuple[int, str]:
    """``gancheck ARGS`` in this process: (exit status, stderr)."""
    from gancheck.cli import app
    from gancheck.cli.common import run_app

    err = io.StringIO()
    argv, handlers = sys.argv, {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    sys.argv = ["gancheck", *map(str, args)]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            run_app(app)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    finally:
        sys.argv = argv
        os.environ.pop("GANCHECK_DEBUG", None)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return code, err.getvalue()


def digest(path: Path) -> dict:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def earlier_run(planted_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("earlier") / "run"
    proc = run_cli("audit", planted_onnx, "--n", "300", "--anchors", "30", "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(OPTIONS), st.one_of(NUMBERS, st.text(max_size=12))), max_size=4))
def test_any_option_values_give_a_clean_exit_and_leave_the_earlier_run_alone(planted_onnx, earlier_run, options):
    before = digest(earlier_run)
    args = [a for pair in options for a in pair]
    code, err = cli("audit", planted_onnx, "--out", earlier_run, "--quiet", *args)
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err and "╭" not in err, err
    if code == 2:
        assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    assert digest(earlier_run) == before


DAMAGE = {
    "state.json": ["", "{", "[]", '{"fingerprint": null}', '{"fingerprint": {}, "shards": {"0": {"file": 1}}}', "null"],
    "report.json": ["", "{", "[]", '{"n_samples": "x"}', "null", '{"mccs": 3}'],
    "manifest.json": ["", "{", "[]", '{"config": 1}', "null"],
    "anchors.parquet": ["", "PAR1garbage"],
}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(DAMAGE)).flatmap(lambda f: st.tuples(st.just(f), st.sampled_from(DAMAGE[f]) | st.none())),
       st.sampled_from(["report", "compare", "resume", "calibrate"]))
def test_damaged_run_directories_give_a_clean_exit(planted_onnx, earlier_run, tmp_path_factory, damage, command):
    run = Path(shutil.copytree(earlier_run, tmp_path_factory.mktemp("damaged") / "run"))
    name, content = damage
    if content is None:
        (run / name).unlink()
    else:
        (run / name).write_text(content)
    args = {"report": ("report", run, "--quiet"), "compare": ("compare", earlier_run, run),
            "resume": ("audit", planted_onnx, "--n", "300", "--anchors", "30", "--out", run, "--resume", "--quiet"),
            "calibrate": ("calibrate", run, "--method", "gmm", "--quiet")}[command]
    before = digest(earlier_run)
    code, err = cli(*args)
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err, err
    assert digest(earlier_run) == before
    if command == "resume" and code == 0:
        assert json.loads((run / "report.json").read_text())["n_samples"] > 0
