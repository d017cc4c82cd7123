"""`gancheck leakage`: on real digits (scikit-learn's) split into training, held-out and private
images, a generator that copies 4% of its samples from the training set (with small noise) leaks,
with those training images as its matches; one that draws new private images passes. The
statistics against brute-force references."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import gancheck  # noqa: E402
from conftest import run_cli  # noqa: E402

from gancheck.analysis.leakage import (detection_limit, equalise, label_permutations, nearest, newcombe_paired,  # noqa: E402
                                       paired_counts, permutation_p_values, pooled_neighbours, statistics)
from gancheck.errors import GancheckError  # noqa: E402

PIXEL = {"embedder": "pixel", "embedder_options": {"size": 8}, "theta": 0.05}
CLI_PIXEL = ("--embedder", "pixel", "--embedder-opt", "size=8", "--theta", "0.05")
N = 500


def _save(images: np.ndarray, folder: Path, prefix: str) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True)
    names = []
    for i, im in enumerate(images):
        names.append(f"{prefix}_{i:04d}.png")
        Image.fromarray((np.clip(im, 0, 1) * 255).round().astype(np.uint8)).convert("RGB").save(folder / names[-1])
    return names


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    """train/ (400), holdout/ (400), clean/ (500 private digits) and copying/ (480 private digits and
    20 noisy copies of training images, 4%: one image 5 times, 15 others once)."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("leakage")
    rng = np.random.default_rng(0)
    x = load_digits().images[rng.permutation(1797)] / 16.0
    train = _save(x[:400], root / "train", "t")
    _save(x[400:800], root / "holdout", "h")
    _save(x[800:1300], root / "clean", "c")
    copied = list(range(0, 400, 25))
    copies = np.clip(x[[0] * 4 + copied] + rng.normal(0, 0.02, (20, 8, 8)), 0, 1)
    _save(np.concatenate([x[800:1280], copies]), root / "copying", "g")
    return {"root": root, "train": root / "train", "holdout": root / "holdout", "clean": root / "clean",
            "copying": root / "copying", "copied": sorted(train[i] for i in copied), "repeated": train[0]}


@pytest.fixture(scope="module")
def leak(bed):
    out = bed["root"] / "out-copying"
    return gancheck.leakage(str(bed["copying"]), bed["train"], bed["holdout"], n=N, out=out, **PIXEL), out


def test_copying_generator_leaks_and_names_the_copied_images(leak, bed):
    result, out = leak
    assert result["verdict"]["status"] == "leak" and result["excess_p_value"] == 1 / 1000  # the floor of 999 relabellings
    assert 0.025 <= result["excess_share"] <= 0.055
    assert result["excess_share_ci_low"] < 0.04 < result["excess_share_ci_high"]
    assert sorted(m["train_image"] for m in result["matches"]) == bed["copied"]
    assert result["matches"][0]["train_image"] == bed["repeated"] and result["matches"][0]["count"] == 5
    assert all(m["count"] == 1 and m["distance"] < 0.05 < m["holdout_distance"] for m in result["matches"][1:])
    assert result["distance_p_value"] < 0.01 and "copy share of" in result["verdict"]["headline"]
    assert json.loads((out / "leakage.json").read_text())["excess_share"] == result["excess_share"]
    page = (out / "leakage.html").read_text()
    assert "<svg" in page and bed["copied"][0] in page and page.count("data:image/png;base64,") == 3 * 12  # the gallery's 12 strongest


def test_clean_generator_passes_on_the_command_line(bed, tmp_path):
    r = run_cli("leakage", bed["clean"], "--train", bed["train"], "--holdout", bed["holdout"], "--n", N, *CLI_PIXEL,
                "--out", tmp_path / "o", "--json", "--junit", tmp_path / "j.xml")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["verdict"]["status"] == "pass" and result["excess_p_value"] > 0.01
    assert abs(result["excess_share"]) < 0.02 and result["detection_limit"] < 0.05
    assert 'failures="0"' in (tmp_path / "j.xml").read_text()


def test_leak_and_failed_gates_exit_1_with_junit(bed, tmp_path):
    r = run_cli("leakage", bed["copying"], "--train", bed["train"], "--holdout", bed["holdout"], "--n", N, *CLI_PIXEL, "--quiet",
                "--out", tmp_path / "o", "--fail-if", "excess_share_ci_high>0.01", "--junit", tmp_path / "j.xml")
    assert r.returncode == 1 and "gate excess_share_ci_high>0.01 FAILED" in r.stderr
    junit = (tmp_path / "j.xml").read_text()
    assert 'failures="2"' in junit and "leakage verdict" in junit


def test_audit_run_worst_mode_is_a_training_image(bed, tmp_path):
    run = tmp_path / "run"
    gancheck.audit(str(bed["copying"]), out=run, n=300, anchors=200, embedder="pixel", embedder_options={"size": 8}, theta=0.05,
                   radius=0.04, html=False)
    result = gancheck.leakage(str(bed["copying"]), bed["train"], bed["holdout"], n=N, run=run, theta=0.05)
    assert result["embedder"] == {"name": "pixel", "size": 8}  # the run's embedder
    worst = result["run"]["modes"][0]
    assert worst["is_training_image"] and worst["train_image"] == bed["repeated"]
    assert result["run"]["sentence"].startswith(f"the worst-case mode (sample {worst['sample_index']}) is training image")


def test_bad_folders_are_one_line_errors(bed, tmp_path):
    def refused(train, holdout, match):
        with pytest.raises(GancheckError, match=match):
            gancheck.leakage(str(bed["clean"]), train, holdout, n=N, **PIXEL)

    refused(tmp_path / "missing", bed["holdout"], "--train .* is not a folder")
    refused(bed["train"], bed["train"], "the same folder")
    few = tmp_path / "few"
    few.mkdir()
    for f in sorted(bed["holdout"].iterdir())[:10]:
        shutil.copy(f, few / f.name)
    refused(bed["train"], few, "holds 10 images; the test needs at least 20")
    shared = shutil.copytree(bed["holdout"], tmp_path / "shared")
    shutil.copy(bed["train"] / "t_0007.png", shared / "copy.png")
    refused(bed["train"], shared, "share 1 files by content .*t_0007.png and copy.png")
    (tmp_path / "empty").mkdir()
    r = run_cli("leakage", bed["clean"], "--train", bed["train"], "--holdout", tmp_path / "empty", "--quiet", *CLI_PIXEL)
    assert r.returncode == 2 and "no PNG/JPEG/WebP images" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_nearest_is_the_brute_force_nearest():
    from gancheck.maths import pairwise_distance

    rng = np.random.default_rng(1)
    q, r = rng.standard_normal((60, 12)), rng.standard_normal((90, 12))
    idx, d = nearest(q, r)
    full = pairwise_distance(q, r)
    assert np.array_equal(idx, full.argmin(axis=1)) and np.allclose(d, full.min(axis=1), atol=1e-12)
    keep_t, keep_h = equalise(300, 120, seed=4)
    assert len(keep_t) == len(keep_h) == 120 and len(set(keep_t)) == 120 and np.array_equal(keep_h, np.arange(120))
    from gancheck.analysis.leakage import leakage_statistics

    train, holdout = rng.standard_normal((300, 12)), rng.standard_normal((120, 12))
    stats = leakage_statistics(q, train, holdout, 0.3, [f"t{i}" for i in range(300)], [f"h{i}" for i in range(120)], permutations=99)
    assert stats["n_compared"] == 120 and stats["equalised"].startswith("the training set was subsampled to 120 of its 300")


def test_paired_interval_and_tests_against_references():
    from scipy.stats import binomtest

    from gancheck.analysis.proportions import newcombe_difference

    # phi = 0 (both * neither == only_a * only_b): method 10 is the square-and-add of the two Wilson intervals
    d, lo, hi = newcombe_paired(10, 20, 5, 10)
    ref = newcombe_difference(np.array([30]), 45, np.array([15]), 45)
    assert (d, lo, hi) == pytest.approx((ref[0][0], ref[1][0], ref[2][0]), rel=1e-12)
    # coverage of the 95% interval on paired binary data with a true difference of 0.04
    rng = np.random.default_rng(2)
    cells = rng.multinomial(400, [0.02, 0.06, 0.02, 0.90], size=2000)
    covered = [newcombe_paired(*c)[1] <= 0.04 <= newcombe_paired(*c)[2] for c in cells]
    assert 0.93 <= np.mean(covered) <= 0.98
    a, b = rng.random(200) < 0.3, rng.random(200) < 0.2
    both, only_a, only_b, neither = paired_counts(a, b)
    assert (both, only_a, only_b) == ((a & b).sum(), (a & ~b).sum(), (~a & b).sum())


def test_permutation_p_values_against_brute_force():
    """The relabelling test from each sample's 24 nearest pooled images equals the one from the full
    distance matrix, and its signed-rank statistic is scipy's Wilcoxon W+ rescaled."""
    from scipy.stats import wilcoxon

    from gancheck.maths import pairwise_distance

    rng = np.random.default_rng(5)
    m, theta = 20, 0.3
    pooled, gen = rng.standard_normal((2 * m, 6)), rng.standard_normal((30, 6))
    gen[:4] = pooled[:4] + 0.01 * rng.standard_normal((4, 6))  # four copies of "training" images
    idx, dist = pooled_neighbours(gen, pooled)
    full = pairwise_distance(gen, pooled)
    observed = statistics(full[:, :m].min(1), full[:, m:].min(1), theta)
    higher = np.zeros(2)
    for labels in label_permutations(m, 199, seed=7):
        higher += np.asarray(statistics(full[:, labels].min(1), full[:, ~labels].min(1), theta)) >= np.asarray(observed) - 1e-12
    assert permutation_p_values(observed, idx, dist, m, theta, 199, seed=7)[:2] == pytest.approx(tuple((1 + higher) / 200), abs=1e-12)
    diff = full[:, m:].min(1) - full[:, :m].min(1)
    w_plus = wilcoxon(diff, alternative="greater").statistic
    assert observed[1] == pytest.approx((2 * w_plus - 30 * 31 / 2) / (30 * 31 / 2))


def test_detection_limit_has_its_power():
    """At the detection limit the exact one-sided test at 1% rejects in about 95% of simulated runs."""
    from scipy.stats import binom

    rng = np.random.default_rng(3)
    n, base = 2000, 0.01  # each of the two sets alone within theta of 1% of the samples
    limit = detection_limit(n, 2 * base, base)
    copies = rng.random((1000, n)) < limit
    only_t = ((copies & (rng.random((1000, n)) >= base)) | (~copies & (rng.random((1000, n)) < base))).sum(axis=1)
    only_h = (~copies & (rng.random((1000, n)) < base)).sum(axis=1)
    p = binom.sf(only_t - 1, only_t + only_h, 0.5)
    assert 0.9 <= np.mean(p < 0.01) <= 0.99, (limit, np.mean(p < 0.01))


def test_page_renders_in_a_browser_without_overflow(leak):
    """leakage.html in headless Chromium (as tests/test_report_browser.py): the curves and every
    gallery image render, nothing scrolls sideways at a laptop's or a narrow window's width."""
    playwright = pytest.importorskip("playwright.sync_api", reason="the browser test needs the playwright package (test extra)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        for width in (1280, 760):
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto((leak[1] / "leakage.html").resolve().as_uri())
            images = page.eval_on_selector_all("img", "els => els.map(e => e.complete && e.naturalWidth >= 8 && e.getBoundingClientRect().width >= 8)")
            assert len(images) == 3 * 12 and all(images)
            box = page.locator("section#curves svg").bounding_box()
            assert box["width"] > 300 and box["height"] > 100
            assert page.locator("section#summary").inner_text().split()[:2] == ["Verdict", "leak"]
            assert page.evaluate("document.documentElement.scrollWidth") <= page.evaluate("document.documentElement.clientWidth")
            page.close()
        browser.close()
