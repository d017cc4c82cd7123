"""report.html in a real browser (headless Chromium through Playwright): every figure renders, no
element overflows the page, cards show report.json's numbers in the one formatting rule, legends sit
outside the data, and a before/after report leads with the calibration's targeted modes.

Uses Debian's chromium (``apt-get install chromium``; CI's .ci/run installs it): nothing is
downloaded (``playwright install`` is never run)."""

import json
import re
import shutil

import pytest

from conftest import run_cli

playwright = pytest.importorskip("playwright.sync_api", reason="the browser tests need the playwright package (test extra)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium); the browser tests need it")
WIDTHS = (1280, 760)  # a laptop and a narrow window


@pytest.fixture(scope="module")
def runs(planted_onnx, tmp_path_factory):
    """A planted-collapse audit and its calibration's proof run (a before/after report)."""
    root = tmp_path_factory.mktemp("browser")
    run = root / "run"
    proc = run_cli("audit", planted_onnx, "--out", run, "--n", "3000", "--anchors", "200", "--seed", "5", "--quiet",
                   "--fail-if", "mccs.mean>0.9")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("calibrate", run, "--method", "rejection", "--quiet", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    return run, run / "calibration-rejection"


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def open_page(browser, path, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page


def lookup(report: dict, key: str):
    from gancheck.analysis.gates import lookup as find

    return find(report, key)


@pytest.mark.parametrize("which", ["plain", "before_after"])
@pytest.mark.parametrize("width", WIDTHS)
def test_every_figure_renders_and_nothing_overflows(runs, browser, which, width):
    html = (runs[0] if which == "plain" else runs[1]) / "report.html"
    page = open_page(browser, html, width)
    images = page.eval_on_selector_all("img", "els => els.map(e => ({alt: e.alt, ok: e.complete && e.naturalWidth > 8 && e.naturalHeight > 8, "
                                              "w: e.getBoundingClientRect().width, h: e.getBoundingClientRect().height}))")
    assert len(images) >= 2 + 3 + 5, images  # two Fig. 4 mosaics, three plots, mode thumbnails
    broken = [i["alt"] for i in images if not i["ok"] or i["w"] < 8 or i["h"] < 8]
    assert not broken, f"broken or empty images: {broken}"
    for section in ("summary", "worst-mode", "modes", "distribution", "sampling", "ripley", "diversity"):
        assert page.locator(f"section#{section}").inner_text().strip(), section
    page_width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= page_width, "the page scrolls sideways"
    wide = page.evaluate("""w => [...document.querySelectorAll('main *')].filter(e => {
        const r = e.getBoundingClientRect(); return r.width > 0 && (r.right > w + 1 || r.left < -1); }).map(e => e.tagName + '.' + e.className)""", page_width)
    assert not wide, f"elements past the page's edge at {width} px: {wide[:10]}"
    clipped = page.evaluate("[...document.querySelectorAll('section, .card')].filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.id || e.className)")
    assert not clipped, f"content wider than its box at {width} px: {clipped}"
    page.close()


def test_cards_show_report_json_numbers_in_the_formatting_rule(runs, browser):
    from gancheck.render.html import FORMATS

    run = runs[0]
    report = json.loads((run / "report.json").read_text())
    page = open_page(browser, run / "report.html", WIDTHS[0])
    cards = page.eval_on_selector_all(".card .v[data-key]", "els => els.map(e => [e.dataset.key, e.dataset.format, e.innerText.trim()])")
    keys = {key for key, _, _ in cards}
    assert {"mccs.mean", "mccs.std", "worst_mode.mccs", "worst_mode.neighbor_fraction", "diversity.vendi"} <= keys
    for key, kind, shown in cards:
        assert shown == FORMATS[kind](lookup(report, key)), f"card {key}: page shows {shown!r}, report.json has {lookup(report, key)!r}"
    # every card says what it means, in one sentence
    meanings = page.eval_on_selector_all(".card", "els => els.map(e => (e.querySelector('.m') || {innerText: ''}).innerText.trim())")
    assert not [m for m in meanings if not m.endswith(".") or re.search(r"[.!?]\s+[A-Z]", m)], meanings
    text = page.locator("main").inner_text()
    assert not re.search(r"\d\.\d{6,}", text), "a number with more than the rule's digits: " + re.search(r"\S*\d\.\d{6,}\S*", text).group(0)
    v = report["verdict"]
    assert page.locator(f".verdict.{v['status']} b").inner_text().strip() == v["headline"]
    page.close()


def test_sampling_caption_and_verdict_state_the_same_rule(runs, browser):
    from gancheck.analysis.verdict import sampling_settled

    run = runs[0]
    report = json.loads((run / "report.json").read_text())
    _, sentence = sampling_settled(report)
    page = open_page(browser, run / "report.html", WIDTHS[0])
    assert sentence and sentence in page.locator("section#sampling figcaption").inner_text()
    assert sentence in page.locator("section#summary .verdict").inner_text()
    page.close()


def test_before_after_report_leads_with_the_targeted_modes(runs, browser):
    run, proof = runs
    calibration = json.loads((proof / "calibration.json").read_text())
    page = open_page(browser, proof / "report.html", WIDTHS[0])
    summary = page.locator("section#summary")
    first = summary.locator(".verdict").first
    assert "change" in first.get_attribute("class")  # the calibration's result comes before this run's own verdict
    mode = calibration["dense_modes"][0]["sample_index"]
    headline = first.locator("b").inner_text()
    assert f"targeted mode (sample {mode})" in headline
    from gancheck.formatting import format_share

    shares = calibration["before"]["dense_share_per_mode"][0], calibration["after"]["dense_share_per_mode"][0]
    assert f"from {format_share(shares[0])} to {format_share(shares[1])}" in headline
    # numeric headers are aligned with their numbers
    aligned = page.evaluate("""() => [...document.querySelectorAll('table')].flatMap(t => {
        const rows = [...t.rows]; if (rows.length < 2) return [];
        return [...rows[0].cells].map((h, i) => { const c = rows[1].cells[i];
            return c && c.classList.contains('n') ? getComputedStyle(h).textAlign === getComputedStyle(c).textAlign : true; }); })""")
    assert all(aligned)
    page.close()


def test_legends_never_cover_the_data(runs):
    """Every legend of every plot lies outside its axes' data area (bounding boxes from matplotlib)."""
    from gancheck.analysis.report import anchor_subset_curve, load_run, ripley
    from gancheck.render.html import distribution_figure, ripley_figure, sampling_figure

    run, proof = (load_run(p) for p in runs)
    figures = [distribution_figure(run), distribution_figure(proof, run), sampling_figure(run, anchor_subset_curve(run)), ripley_figure(run, ripley(run))]
    checked = 0
    for fig in figures:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is None:
                continue
            box, area = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
            assert not box.overlaps(area), f"the legend of {ax.get_title()!r} covers its data area"
            checked += 1
    assert checked >= 6
