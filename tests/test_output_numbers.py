"""Every figure a person reads follows gancheck.formatting' one rule: three significant digits, shares as
percentages, counts with thousands separators; gate lines, `theta`, `coverage`, `ldr` and sweep
output (terminal and HTML) included. Coverage and ldr report progress like audit: lines in a log,
nothing with --quiet."""

from __future__ import annotations

import html as htmllib
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import run_cli  # noqa: E402

from gancheck.analysis.compare import describe_change  # noqa: E402
from gancheck.analysis.gates import Gate, describe, evaluate  # noqa: E402
from gancheck.cli.audit import sweep_lines  # noqa: E402
from gancheck.cli.coverage import summary_lines  # noqa: E402
from gancheck.cli.ldr import ldr_lines  # noqa: E402
from gancheck.cli.theta import theta_lines  # noqa: E402
from gancheck.render.coverage import render_coverage  # noqa: E402
from gancheck.render.ldr import render_ldr  # noqa: E402
from gancheck.render.sweep import render_sweep  # noqa: E402

# a number standing on its own (not part of a file name such as img_0001.png or a bin label's word)
NUMBER = re.compile(r"(?<![\w.])[-+\u00b1]?\d[\d,]*(?:\.\d+)?(?:e[-+]\d+)?%?(?![\w])")
UGLY = 0.123456789  # any figure with more digits than the rule allows


def significant_digits(token: str) -> int | None:
    """Significant digits of a decimal figure (None for whole numbers, which are counts or labels)."""
    mantissa = token.lstrip("+-\u00b1").rstrip("%").split("e")[0].replace(",", "")
    if "." not in mantissa:
        return None
    return len(mantissa.replace(".", "").lstrip("0"))


def violations(text: str) -> list[str]:
    """Figures that break the rule: a decimal with other than 3 significant digits, a whole number
    of 4+ digits without separators, a share printed as a bare fraction next to a '%'."""
    bad = []
    for match in NUMBER.finditer(text):
        token = match.group()
        if re.search(r"p (=|\u2264) $", text[:match.start()]):  # Monte Carlo p-values: format_p, up to 3 digits
            continue
        digits = significant_digits(token)
        whole = token.lstrip("+-\u00b1").rstrip("%")
        if digits is not None and digits != 3 and not re.fullmatch(r"0\.0+", whole):
            bad.append(token)
        elif digits is None and "," not in whole and "e" not in whole and len(whole) > 4:
            bad.append(token)
    return bad


def page_text(page: str) -> str:
    page = re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "", page)
    page = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    return htmllib.unescape(re.sub(r"<[^>]+>", " ", page))


def test_the_checker_catches_raw_figures():
    assert violations("mean 0.4123, share 2.6% of 12345 samples") == ["0.4123", "2.6%", "12345"]
    assert violations("mean 0.412, share 2.60% of 12,345 samples, p = 0.001, -0.000548, 1.23e-05, 1,235") == []
    assert violations("img_0001.png bin 7 in 2026-11-28") == []


def test_gate_lines_follow_the_rule():
    report = {"mccs": {"mean": UGLY, "count": 123456}, "worst_mode": {"neighbor_fraction": 0.0260417}}
    results = evaluate(report, [Gate.parse("mccs.mean>0.1"), Gate.parse("mccs.count>=100000"), Gate.parse("worst_mode.neighbor_fraction>0.02")])
    lines = [describe(r) for r in results]
    assert lines[0] == "gate mccs.mean>0.1 FAILED: mccs.mean = 0.123, bound 0.100, margin +0.0235"
    assert "= 123,456" in lines[1] and "margin +23,456" in lines[1]
    assert all(not violations(line.split(": ", 1)[1]) for line in lines), lines  # the gate's name is the user's own text
    change = {"gate": "mccs.mean:+0.02", "failed": True, "key": "mccs.mean", "a": 0.41234567, "b": UGLY + 0.4, "change": 0.1112, "allowed": 0.02}
    assert describe_change(change) == "gate mccs.mean:+0.02 FAILED: mccs.mean 0.412 -> 0.523 (change +0.111, allowed 0.0200)"


def test_theta_lines_follow_the_rule():
    dist = {"min": 0.012345, "median": UGLY, "max": 0.3333333}
    result = {"n_same": 1500, "n_different": 1500, "same_distance": dist, "different_distance": dist, "theta": 0.2987654,
              "accuracy_at_theta": 0.9876543, "at_theta": {"tar": 0.975, "far": 0.0123456}, "radius": 0.2489712,
              "at_radius": {"tar": 0.9, "far": 0.001}, "embedder_defaults": {"theta": 0.3, "radius": 0.25}}
    lines = theta_lines("dlib", result)
    text = "\n".join(lines)
    assert "theta = 0.299" in text and "best accuracy 98.8%" in text and "FAR 1.23%" in text and "1,500 same-identity" in text
    assert "embedder defaults: theta 0.300, r 0.250" in text
    assert not violations(text), violations(text)


@pytest.fixture
def coverage_result(tmp_path):
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(tmp_path / name)
    dropped = {"bin": 3, "reference_share": 0.1234567, "generated_share": 0.0012345, "generated_ci": [0.0001234, 0.0045678],
               "q_value": 0.000123456, "examples": ["a.png", "b.png"]}
    bins = [dict(dropped, reference_count=1234, generated_count=12, z=-3.456789)]
    attributes = {"kind": "multiclass", "findings": [], "frechet_attribute_distance": 12.345678, "attributes": [
        {"attribute": "hat", "reference": 0.2345678, "generated": UGLY, "difference": -0.1111111, "difference_ci": [-0.15, -0.0712345],
         "q_value": 0.0212345}]}
    result = {"ndb": 4, "k": 37, "ndb_over_k": 4 / 37, "under_generated": 3, "over_generated": 1, "alpha": 0.05, "n_reference": 1850,
              "n_generated": 40000, "dropped": [dropped], "bins": bins, "attributes": attributes, "generator": "g.onnx",
              "reference": str(tmp_path), "binning": "K-means", "test": "two-proportion z test"}
    return result, tmp_path


def test_coverage_terminal_and_page_follow_the_rule(coverage_result):
    result, folder = coverage_result
    text = "\n".join(summary_lines(result))
    assert "NDB/K = 4/37 = 0.108" in text and "12.3% of real images, 0.123% generated" in text and "40,000 generated" in text
    assert not violations(text), violations(text)
    page = page_text(render_coverage(result, folder))
    assert "-11.1 pp" in page and "12.3" in page and "1,234" in page
    assert not violations(page), violations(page)


def test_attribute_findings_follow_the_rule():
    from gancheck.analysis.attributes import findings

    row = {"attribute": "hat", "significant": True, "difference": -0.1111111, "difference_ci": (-0.15, -0.0712345),
           "generated": UGLY, "reference": 0.2345678, "q_value": 0.0212345}
    (line,) = findings([row])
    assert line == ("the generator under-produces hat: 12.3% of generated images, 23.5% of real ones "
                    "(difference -11.1 pp, 95% CI -15.0 pp to -7.12 pp; q = 0.0212)")


def test_ldr_terminal_and_page_follow_the_rule(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    top = [{"file": "x.png", "score": 3.14159265, "ldrm": 2.7182818, "ldrv": 0.01234567, "weight": 0.000123456}]
    result = {"images": 12345, "checkpoints": 3, "k": 1.0, "score": {"mean": UGLY, "max": 3.14159265}, "top": top, "data": str(tmp_path),
              "discriminators": [{"path": "d.onnx", "output": "logit", "input_range": "-1,1"}]}
    text = "\n".join(ldr_lines(result))
    assert "12,345 images" in text and "max 3.14" in text and "LDRV   0.0123" in text
    assert not violations(text), violations(text)
    page = page_text(render_ldr(result, tmp_path))
    assert not violations(page), violations(page)


def test_sweep_terminal_and_page_follow_the_rule():
    row = {"rank": 1, "mccs": {"mean": UGLY, "mean_ci_low": 0.1, "mean_ci_high": 0.14567, "std": 0.0456789, "std_ci_low": 0.04, "std_ci_high": 0.05},
           "worst_mode": {"mccs": 0.6789012, "neighbor_fraction": 0.0260417, "neighbor_fraction_ci_low": 0.02, "neighbor_fraction_ci_high": None}}
    table = {"input": "label", "ranking": ["7"], "classes": {"7": row}, "most_collapsed": "7", "clearly_below_most_collapsed": [],
             "gates": [{"gate": "mccs.mean>0.1", "failed": True, "value": UGLY}]}
    text = "\n".join(sweep_lines(table))
    assert "mean 0.123 [0.100, 0.146]" in text and "(2.60% of samples)" in text
    assert not violations(text), violations(text)
    page = page_text(render_sweep(table, {"7": np.random.default_rng(0).random(50)}))
    assert "2.60% [2.00%, n/a]" in page and "(value 0.123)" in page
    assert not violations(page.replace("mccs.mean>0.1", "")), violations(page)


# progress: coverage and ldr report like audit ------------------------------------------------------

def _reference_folder(path: Path, count: int = 60) -> Path:
    from PIL import Image

    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(path / f"real_{i:03d}.png")
    return path


def _mean_discriminator(path: Path) -> Path:
    """One logit per image: the mean pixel value (a real ONNX graph, any image size)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("ReduceMean", ["image"], ["out"], axes=[1, 2, 3], keepdims=0)], "d",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", 3, 16, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b"])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_coverage_and_ldr_print_progress_lines_in_a_log_and_nothing_with_quiet(planted_onnx, tmp_path):
    reference = _reference_folder(tmp_path / "real")
    cov = ("coverage", planted_onnx, "--reference", reference, "--n", "300", "--bins", "3", "--embedder-opt", "size=8")
    logged = run_cli(*cov, "--out", tmp_path / "cov")
    assert logged.returncode == 0, logged.stderr
    assert "gancheck: reference images: started" in logged.stderr and "gancheck: generated images: finished 300" in logged.stderr
    last = logged.stderr.strip().splitlines()[-1]
    assert last.startswith("gancheck: finished in ") and "coverage.html" in last
    assert not violations(logged.stdout), violations(logged.stdout)
    quiet = run_cli(*cov, "--out", tmp_path / "cov-q", "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""

    disc = _mean_discriminator(tmp_path / "d.onnx")
    ldr = ("ldr", "--discriminator", disc, disc, "--data", reference)
    logged = run_cli(*ldr, "--out", tmp_path / "ldr.parquet")
    assert logged.returncode == 0, logged.stderr
    assert "gancheck: images: started, 60 to process" in logged.stderr and "gancheck: images: finished 60" in logged.stderr
    assert "ldr.html" in logged.stderr.strip().splitlines()[-1]
    assert not violations(logged.stdout.replace(str(tmp_path), "")), violations(logged.stdout)
    quiet = run_cli(*ldr, "--out", tmp_path / "ldr-q.parquet", "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
