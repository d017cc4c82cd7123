"""A new user's first hour: --version, --help that reads cleanly, progress in CI logs and on a
terminal, one verdict (report.json, terminal, log, gates), one number format, and calibrate saying
in seconds when a fit cannot help."""

import json
import os
import pty
import re
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_cli
from gancheck.version import __version__

from gancheck.cli import app as APP

COMMANDS = tuple(c.name for c in APP.registered_commands if not c.hidden)  # every command, those added later too
WIDE = {"COLUMNS": "200"}  # Rich wraps help at the terminal width; a wide one keeps each option on one line
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def logged_run(planted_onnx, tmp_path_factory):
    """An audit whose stdout is not a terminal (a CI job), progress lines at every batch."""
    out = tmp_path_factory.mktemp("ci") / "run"
    proc = run_cli("audit", planted_onnx, "--out", out, "--n", "4000", "--anchors", "200", "--seed", "2", "--batch-size", "256",
                   env={"GANCHECK_PROGRESS_INTERVAL": "0"})
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_version_prints_the_package_version():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"gancheck {__version__}"


@pytest.fixture(scope="module")
def helps():
    """Every command's --help as a person reads it (in-process: the same app ``gancheck`` runs)."""
    from typer.testing import CliRunner

    runner, out = CliRunner(), {}
    for command in ("",) + COMMANDS:
        result = runner.invoke(APP, [command, "--help"] if command else ["--help"], env=WIDE, prog_name="gancheck")
        assert result.exit_code == 0, result.output
        out[command] = result.output
    return out


@pytest.mark.parametrize("command", ("",) + COMMANDS)
def test_help_has_no_type_labels_and_an_examples_section(helps, command):
    text = helps[command]
    for label in ("<bool>", "<str>", "<int>", "<float>", "<path>", "list[", "{"):
        assert label not in text, f"{command or 'gancheck'} --help shows {label!r}"
    assert "Examples" in text and f"gancheck {command}".strip() in text.split("Examples", 1)[1]
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "<" not in usage


@pytest.mark.parametrize("command, option, choices, default", [
    ("audit", "--mccs-form", "paper|reference", "paper"),
    ("audit", "--no-face", "exclude|keep", "exclude"),
    ("audit", "--align", "detect|fixed", "detect"),
    ("audit", "--prior", "normal|uniform|truncnormal", "normal"),
    ("audit", "--device", "auto|cpu|cuda", "auto"),
    ("calibrate", "--method", "gmm|is|cascade|rejection", "is"),
    ("sample", "--prior", "normal|uniform|truncnormal", "normal"),
])
def test_help_shows_choices_and_defaults(helps, command, option, choices, default):
    text = helps[command]
    line = next(line for line in text.splitlines() if re.search(rf"{option}\s", line))
    assert choices in line
    block = " ".join(text[text.index(line):].split("│ --", 2)[1].split())  # the option's own rows, up to the next option
    assert f"[default: {default}]" in block or f"[default: ({default})]" in block


def test_ci_log_shows_stages_progress_and_a_last_line_with_verdict_and_report(logged_run):
    out, proc = logged_run
    lines = proc.stderr.strip().splitlines()
    assert proc.stdout == ""  # a log job's stdout stays clean
    for stage in ("anchor images", "collection samples"):
        assert any(line.startswith(f"gancheck: {stage}: started") for line in lines), proc.stderr
        assert any(line.startswith(f"gancheck: {stage}: finished") for line in lines), proc.stderr
    progress = [line for line in lines if re.match(r"gancheck: collection samples: [\d,]+ of 4,000 \(\d+%\), [\d,.]+ images/s, about .* left", line)]
    assert progress, proc.stderr
    report = json.loads((out / "report.json").read_text())
    last = lines[-1]
    assert last.startswith("gancheck: finished in ") and str(out / "report.html") in last
    assert report["verdict"]["headline"] in last and report["verdict"]["status"].upper() in last


def test_verdict_is_stored_once_and_gated(logged_run, tmp_path):
    out, _ = logged_run
    report = json.loads((out / "report.json").read_text())
    v = report["verdict"]
    assert v["status"] == "collapse" and v["collapse"] is True and v["headline"].startswith("Collapse detected")
    assert all(isinstance(r, str) and r for r in v["reasons"])
    assert v["headline"] in (out / "report.html").read_text()
    # gates can read it, and a failed gate decides the status
    proc = run_cli("report", out, "--fail-if", "verdict.collapse>0", "--out", tmp_path / "r.html")
    assert proc.returncode == 1 and "verdict.collapse>0 FAILED" in proc.stderr
    assert json.loads((out / "report.json").read_text())["verdict"]["status"] == "fail"


def test_progress_lines_are_throttled_to_the_interval():
    from gancheck.cli.progress import LogLines

    class Clock:
        t = 0.0

        def __call__(self):
            return self.t

    import io

    clock, stream = Clock(), io.StringIO()
    log = LogLines(stream=stream, interval=30.0, clock=clock)
    log.update("samples", 0, 1000)
    for done in range(10, 1001, 10):  # 100 batches, one second apart
        clock.t += 1.0
        log.update("samples", done, 1000)
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("started, 1,000 to process") and "finished 1,000 in 1 min 40 s" in lines[-1]
    assert len(lines) - 2 == 3  # at t = 30, 60, 90 s: never two progress lines within 30 s
    assert "about 1 min 10 s left" in lines[1]


def test_a_resumed_stage_counts_only_its_own_images_and_an_interrupted_one_says_stopped():
    import io

    from gancheck.cli.progress import LogLines

    class Clock:
        t = 0.0

        def __call__(self):
            return self.t

    clock, stream = Clock(), io.StringIO()
    log = LogLines(stream=stream, interval=10.0, clock=clock)
    log.update("samples", 600, 1000)  # resumed: 600 were checkpointed before
    for done in range(610, 810, 10):  # 10 images/s for 20 s
        clock.t += 1.0
        log.update("samples", done, 1000)
    log.close()  # interrupted at 800
    lines = stream.getvalue().splitlines()
    assert "700 of 1,000 (70%), 10.0 images/s, about 30.0 s left" in lines[1]
    assert "stopped at 800 of 1,000 after 20" in lines[-1] and lines[-1].endswith("(10.0 images/s)"), lines[-1]


def test_quiet_prints_nothing(planted_onnx, tmp_path):
    proc = run_cli("audit", planted_onnx, "--out", tmp_path / "q", "--n", "500", "--anchors", "30", "--quiet")
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""


def _run_in_terminal(args, timeout=300) -> str:
    """Run ``python -m gancheck ARGS`` with stdout and stderr on a pseudo-terminal; the screen text."""
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120", TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "gancheck", *map(str, args)], stdout=slave, stderr=slave, stdin=slave, cwd=ROOT, env=env)
    os.close(slave)
    chunks, deadline = [], time.time() + timeout
    while time.time() < deadline:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=30)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def test_terminal_shows_notice_on_its_own_line_then_summary_with_verdict(planted_onnx, tmp_path):
    out = tmp_path / "tty"
    screen = _run_in_terminal(["audit", planted_onnx, "--out", out, "--n", "3000", "--anchors", "200"])
    lines = [segment for line in screen.splitlines() for segment in line.split("\r") if segment.strip()]
    notices = [line for line in lines if "MiB when finished" in line]
    assert notices and all(line.lstrip().startswith("run directory") for line in notices), notices  # not glued to a bar
    verdict = json.loads((out / "report.json").read_text())["verdict"]
    assert f"verdict: {verdict['status'].upper()}: " in screen
    assert f"report: {out / 'report.html'}" in screen
    assert "MCCS mean mu" in screen and "distinct dense modes" in screen


def test_numbers_follow_one_rule():
    from gancheck.formatting import format_change, format_count, format_interval, format_number, format_p, format_share

    assert [format_number(x) for x in (0.41234, 0.13081234567, 2.0, 1234.5, -0.0005481, None, float("inf"))] == \
        ["0.412", "0.131", "2.00", "1,234", "-0.000548", "n/a", "inf"]
    assert [format_share(x) for x in (0.026, 0.00267, 0.022, 1.0)] == ["2.60%", "0.267%", "2.20%", "100%"]
    assert format_count(1208) == "1,208" and format_change(-0.0005481) == "-0.000548"
    assert format_change(0.00267 - 0.026, share=True) == "-2.33 pp"
    assert format_interval(0.0209, 0.0323, share=True) == "95% CI 2.09% to 3.23%"
    assert format_p(0.001, 999) == "p \u2264 0.001" and format_p(0.0412, 999) == "p = 0.0412"


def _report(p=0.001, gates=None, degenerate=None, change=0.01):
    return {"n_samples": 10000, "radius": 0.2, "worst_mode": {"sample_index": 7, "neighbors": 260, "neighbor_fraction": 0.026, "mccs": 0.3},
            "spatial": {"p_value": p, "sims": 999}, "sampling": {"mccs_mean_change": change, "worst_mccs_change": change / 2, "from_n": 1000, "to_n": 10000},
            "gates": gates or [], "degenerate": degenerate or {}}


def test_verdict_statuses():
    from gancheck.analysis.verdict import verdict

    assert verdict(_report())["status"] == "collapse"
    assert verdict(_report(p=0.3))["status"] == "pass"
    failed = [{"gate": "mccs.mean>0.1", "failed": True}]
    assert verdict(_report(p=0.3, gates=failed))["status"] == "fail"
    v = verdict(_report(degenerate={"inconclusive": True, "reasons": ["all descriptor vectors are equal"]}))
    assert v["status"] == "inconclusive" and "all descriptor vectors are equal" in v["headline"]
    held = verdict(_report(gates=[{"gate": "mccs.mean>0.9", "failed": False}]))
    assert held["status"] == "collapse" and "release gate holds" in held["headline"]


def test_one_sufficiency_rule_for_verdict_and_figure(tmp_path):
    from gancheck.analysis.verdict import SETTLED_CHANGE, sampling_settled, verdict

    for change, settled in ((SETTLED_CHANGE / 2, True), (SETTLED_CHANGE * 1.5, False)):
        rep = _report(change=change)
        ok, sentence = sampling_settled(rep)
        assert ok is settled and sentence in verdict(rep)["reasons"]
        assert ("provisional" in sentence) is (not settled) and ("enough" in sentence) is settled


def test_terminal_summary_prints_the_verdict(capsys, tmp_path):
    from gancheck.analysis.verdict import verdict
    from gancheck.render.terminal import render_summary

    rep = dict(_report(), n_anchors=200, theta=0.3, mccs_form="paper", mccs_formula="1/(1-ln m)",
               mccs={"mean": 0.1234567, "std": 0.0456789}, modes=[{"rank": 1, "sample_index": 7, "neighbors": 260, "neighbor_fraction": 0.026, "mccs": 0.3}])
    rep["verdict"] = verdict(rep)
    render_summary(rep, tmp_path)
    text = capsys.readouterr().out
    assert "verdict: COLLAPSE: Collapse detected: 2.60% of the samples" in text
    assert "0.123" in text and "0.1234567" not in text and "2.60%" in text


def test_fit_outlook_predicts_a_hopeless_is_fit():
    from gancheck.calibration.fitdata import fit_outlook

    warning = fit_outlook("is", "linear", [47], 1800, 100)
    assert "47 within r0" in warning and "100-dimensional" in warning and "--method rejection" in warning and "--n 6,600" in warning
    assert fit_outlook("is", "linear", [750], 5000, 32) is None
    assert fit_outlook("rejection", "linear", [47], 1800, 100) is None and fit_outlook("gmm", "linear", [47], 1800, 100) is None
    assert fit_outlook("is", "auto", [47], 1800, 100) is None  # learned families add samples around the mode
    assert "nothing to learn" in fit_outlook("is", "auto", [0], 1800, 100)


def test_calibrate_warns_in_seconds_before_a_fit_that_cannot_generalise(tmp_path):
    from gancheck.sources.planted import build_planted_generator

    model = build_planted_generator(tmp_path / "wide.onnx", latent_dim=100, fraction=0.03)
    assert run_cli("audit", model, "--out", tmp_path / "run", "--n", "2000", "--anchors", "300", "--quiet").returncode == 0
    assert json.loads((tmp_path / "run" / "report.json").read_text())["worst_mode"]["neighbors"] > 20  # the planted mode was found
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "gancheck", "calibrate", str(tmp_path / "run"), "--method", "is", "--region", "linear"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        first = proc.stderr.readline()
        took = time.time() - start
    finally:
        proc.kill()  # the warning is what is tested; the fit itself is not
        proc.wait()
    assert first.startswith("gancheck: warning: ") and "100-dimensional" in first, first
    assert "--method rejection" in first and "--n " in first and "102 parameters" in first
    assert took < 30, f"the warning came after {took:.0f} s"


def test_calibrate_names_the_region_model_it_fitted():
    from gancheck.cli.calibrate import region_model

    gmm = {"kind": "mixture", "score": "log density ratio of the mode's 1-component full-covariance Gaussian mixture over the prior's density"}
    assert region_model(gmm) == gmm["score"]
    chosen = region_model({"region": "ensemble", "selected_from": ["logistic", "mlp", "ensemble"], "selection": "mean validation average precision"})
    assert chosen == "ensemble (the best of logistic, mlp, ensemble by mean validation average precision)"
    assert region_model({"region": "linear"}) == "linear"
