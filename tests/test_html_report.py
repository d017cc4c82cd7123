"""report.html: self-contained, escaped, showing the paper's figures, rendered by a real browser."""

import base64
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from gancheck.formatting import format_number  # the report's one formatting rule

NASTY = 'gen<b>&"x\'.onnx'  # a model file name that is also HTML


@pytest.fixture(scope="module")
def run_dir(planted_onnx, tmp_path_factory):
    from gancheck import api

    folder = tmp_path_factory.mktemp("html")
    model = folder / NASTY
    shutil.copy(planted_onnx, model)
    api.audit(str(model), n=2000, anchors=200, seed=1, out=folder / "run", gates=["mccs.mean>0.9"])
    proc = run_cli("report", folder / "run")
    assert proc.returncode == 0, proc.stderr
    return folder / "run"


@pytest.fixture(scope="module")
def page(run_dir):
    return (run_dir / "report.html").read_text()


def test_report_is_one_self_contained_file(page):
    external = re.findall(r"""(?:src|href)\s*=\s*["'](?!data:)([^"']*)""", page)
    assert external == []
    assert "<script" not in page and "@import" not in page and "url(" not in page
    uris = re.findall(r"""src=["']data:image/png;base64,([A-Za-z0-9+/=]+)["']""", page)
    # two Fig. 4 mosaics, one thumbnail per listed mode, three plots
    assert len(uris) >= 2 + 3 + 5
    for uri in uris:
        with Image.open(io.BytesIO(base64.b64decode(uri))) as im:
            im.load()
            assert im.width > 8 and im.height > 8


def test_report_escapes_text_from_file_names(page):
    assert "gen<b>" not in page and NASTY not in page
    assert "gen&lt;b&gt;&amp;&quot;x&#x27;.onnx" in page


def test_report_shows_verdict_figures_and_gates(run_dir, page):
    report = json.loads((run_dir / "report.json").read_text())
    assert "Collapse detected" in page or "collapses onto this identity" in page
    assert str(report["worst_mode"]["sample_index"]) in page
    assert format_number(report['mccs']['mean']) in page
    for section in ("paper Fig. 4", "paper Fig. 7", "paper Figs. 5, 6", "paper Figs. 2, 3", "Ripley", "Vendi score"):
        assert section in page, section
    gate_row = re.search(r"<tr><td><code>mccs\.mean&gt;0\.9</code>(?:(?!</tr>).)*</tr>", page)
    assert gate_row and "passed" in gate_row.group(0) and "FAILED" not in gate_row.group(0)  # the audit's gate and its result


def test_report_before_after_and_reference_set(run_dir, planted_onnx, tmp_path):
    from gancheck import api
    from gancheck.sources.planted import build_planted_generator
    from gancheck.analysis.report import analyse, load_run

    calm = build_planted_generator(tmp_path / "calm.onnx", fraction=0.01)
    api.audit(str(calm), n=2000, anchors=200, seed=1, out=tmp_path / "after")
    real = tmp_path / "real"
    real.mkdir()
    _, source, _ = api.open_run(tmp_path / "after")
    for i, img in enumerate(source.images(np.arange(10_000, 10_060))):
        Image.fromarray((img * 255).round().astype(np.uint8)).save(real / f"{i}.png")
    proc = run_cli("report", tmp_path / "after", "--before", run_dir, "--reference", real, "--out", tmp_path / "r.html")
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "r.html").read_text()
    assert "before and after calibration" in page and "precision / recall" in page
    ref = analyse(load_run(tmp_path / "after"), reference_dir=real).report["reference"]
    assert ref["embedded"] == 60 and all(0 <= ref[k] <= 1 for k in ("precision", "recall", "coverage"))
    assert ref["recall"] > 0.5  # real images drawn from the same generator are mostly recalled


def test_report_command_names_a_missing_run(tmp_path):
    proc = run_cli("report", tmp_path / "nothing")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "audit" in proc.stderr


# ----------------------------------------------------------------------------- headless browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium); .ci/run installs it")


def chromium(args, tmp_path, timeout=120):
    profile = tmp_path / f"profile{len(list(tmp_path.iterdir()))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


@needs_chromium
def test_console_check_detects_a_page_error(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>x</p><script>undefined_function();</script></body></html>")
    proc = chromium(["--dump-dom", bad.as_uri()], tmp_path)
    assert any("undefined_function" in line for line in console_messages(proc.stderr))


@needs_chromium
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    report = json.loads((run_dir / "report.json").read_text())
    url = (run_dir / "report.html").as_uri()
    proc = chromium(["--dump-dom", url], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_messages(proc.stderr) == []
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", proc.stdout))
    assert "Summary" in text and "Release gates" in text
    assert format_number(report['mccs']['mean']) in text
    assert "Worst-case dense mode and a random anchor" in text

    shot = tmp_path / "shot.png"
    proc = chromium(["--hide-scrollbars", "--window-size=1200,900", f"--screenshot={shot}", url], tmp_path)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    assert console_messages(proc.stderr) == []
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (900, 1200)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # text and cards, not a blank page
    # The summary's verdict banner: its border colour is orange (collapse) or green/red.
    banner = [np.array(c) for c in ((230, 126, 34), (39, 174, 96), (192, 57, 43))]
    assert any((np.abs(pixels - c).sum(axis=2) < 30).sum() > 200 for c in banner)
