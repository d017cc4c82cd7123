"""`gancheck coverage`: dropped bins (NDB/K) and attribute frequencies, on the digits test bed whose
generator never makes a 0, and the statistics against scipy's own tests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import gancheck  # noqa: E402
from conftest import run_cli  # noqa: E402
from digits_testbed import build_testbed  # noqa: E402

from gancheck.analysis.attributes import attribute_statistics, newcombe_difference  # noqa: E402
from gancheck.analysis.coverage import coverage_statistics  # noqa: E402
from gancheck.analysis.proportions import bh_q_values, two_proportion_test, wilson_interval  # noqa: E402

NAMES = ",".join(str(d) for d in range(10))


@pytest.fixture(scope="session")
def testbed(tmp_path_factory):
    return build_testbed(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def coverage_result(testbed, tmp_path_factory):
    out = tmp_path_factory.mktemp("coverage")
    result = gancheck.coverage(str(testbed["generator"]), testbed["reference"], n=4000, embedder_options={"size": "8"},
                               attributes=f"onnx:{testbed['classifier']}", attribute_names=NAMES, out=out)
    return result, out


def test_coverage_names_the_dropped_class_first(coverage_result):
    result, out = coverage_result
    assert result["ndb"] >= 1 and result["under_generated"] >= 1
    zero_bins = [d for d in result["dropped"] if all(name.startswith("0_") for name in d["examples"])]
    assert zero_bins, "no dropped bin shows the class the generator never makes"
    first = result["dropped"][0]
    assert all(name.startswith("0_") for name in first["examples"]), first
    assert first["generated_share"] < 0.002 and first["reference_share"] > 0.02 and first["q_value"] < 1e-6
    # the zeros' bins together hold most of the real zeros, and nearly no generated image
    assert sum(d["reference_share"] for d in zero_bins) > 0.06
    assert {"bin", "reference_share", "generated_share", "q_value", "examples"} <= set(first)


def test_attributes_say_the_generator_under_produces_the_dropped_class(coverage_result):
    att = coverage_result[0]["attributes"]
    zero = next(a for a in att["attributes"] if a["attribute"] == "0")
    assert zero["generated"] < 0.005 and zero["reference"] > 0.09
    assert zero["difference_ci"][1] < -0.05 and zero["significant"]
    assert att["findings"][0].startswith("the generator under-produces 0:")
    assert att["frechet_attribute_distance"] > 0.01


def test_coverage_page_shows_dropped_bins_as_image_rows(coverage_result):
    result, out = coverage_result
    page = (out / "coverage.html").read_text()
    first = result["dropped"][0]
    assert f"bin {first['bin']}" in page and first["examples"][0] in page
    assert page.count("data:image/png;base64,") >= len(first["examples"])
    assert json.loads((out / "coverage.json").read_text())["ndb"] == result["ndb"]


def test_same_distribution_has_few_different_bins():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((8, 6))
    ref = centres[rng.integers(0, 8, 2000)] + 0.3 * rng.standard_normal((2000, 6))
    gen = centres[rng.integers(0, 8, 3000)] + 0.3 * rng.standard_normal((3000, 6))
    same = coverage_statistics(ref, gen, [f"r{i}" for i in range(2000)], bins=20, seed=0)
    assert same["ndb"] <= 2
    missing = gen[np.argmin(((gen[:, None] - centres[None]) ** 2).sum(-1), axis=1) != 3]  # cluster 3 never generated
    dropped = coverage_statistics(ref, missing, [f"r{i}" for i in range(2000)], bins=20, seed=0)
    assert dropped["under_generated"] >= 1 and dropped["dropped"][0]["generated_share"] == 0.0


def test_proportion_tests_agree_with_scipy():
    from scipy.stats import binomtest, chi2_contingency

    a, na, b, nb = np.array([30, 5, 80]), 400, np.array([60, 5, 20]), 700
    z, p = two_proportion_test(a, na, b, nb)
    for i in range(3):
        chi2, p_chi, _, _ = chi2_contingency([[a[i], na - a[i]], [b[i], nb - b[i]]], correction=False)
        assert z[i] ** 2 == pytest.approx(chi2, rel=1e-9) and p[i] == pytest.approx(p_chi, rel=1e-9)
    lo, hi = wilson_interval(a, na)
    for i in range(3):
        ci = binomtest(int(a[i]), na).proportion_ci(0.95, method="wilson")
        assert (lo[i], hi[i]) == pytest.approx((ci.low, ci.high), rel=1e-9)
    q = bh_q_values(np.array([0.01, 0.04, 0.03, 0.5]))
    assert q == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])  # by hand: p_(i) m / i, then running minimum from the top
    diff, dlo, dhi = newcombe_difference(np.array([0]), 100, np.array([10]), 100)
    assert diff[0] == -0.1 and dlo[0] < -0.1 < dhi[0] < 0


def test_attribute_statistics_refuse_mismatched_names():
    from gancheck.errors import GancheckError

    with pytest.raises(GancheckError, match="3 scores per image but 2 --attribute-names"):
        attribute_statistics(np.ones((5, 3)), np.ones((5, 3)), ["a", "b"])


def test_bad_reference_and_classifier_are_one_line_errors(testbed, tmp_path):
    common = [testbed["generator"], "--n", "500", "--embedder-opt", "size=8", "--quiet"]  # no progress lines: stderr is the error alone
    few = tmp_path / "few"
    few.mkdir()
    for f in sorted(Path(testbed["reference"]).iterdir())[:30]:
        (few / f.name).write_bytes(f.read_bytes())
    r = run_cli("coverage", *common, "--reference", few, "--bins", "10", "--out", tmp_path / "o1")
    assert r.returncode == 2 and "too few for 10 bins" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o1" / "coverage.json").exists()
    r = run_cli("coverage", *common, "--reference", testbed["reference"], "--attributes", f"onnx:{testbed['classifier']}",
                "--attribute-names", "a,b,c", "--out", tmp_path / "o2")
    assert r.returncode == 2 and "10 scores per image but 3 --attribute-names" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o2" / "coverage.json").exists()
    (few / "broken.png").write_bytes(b"not a png")
    r = run_cli("coverage", *common, "--reference", few, "--bins", "2", "--out", tmp_path / "o3")
    assert r.returncode == 2 and "broken.png" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_coverage_does_not_depend_on_batch_size(testbed):
    import gancheck.api as api

    def run(batch):
        r = api.coverage(str(testbed["generator"]), testbed["reference"], n=600, seed=3, embedder_options={"size": 8}, bins=20, batch_size=batch)
        return {k: r[k] for k in ("ndb", "bins", "dropped")}

    assert run(64) == run(37)
