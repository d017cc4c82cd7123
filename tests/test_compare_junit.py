"""`gancheck compare` exit statuses and gates, and JUnit XML that CI systems' schema accepts."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema  # test extra: validation against the JUnit schema is the point of these tests

from conftest import run_cli
from gancheck.analysis.compare import ChangeGate, evaluate_changes, figure_changes
from gancheck.errors import GancheckError
from gancheck.analysis.gates import Gate, evaluate
from gancheck.render.junit import gate_cases, junit_xml, write_junit

SCHEMA = xmlschema.XMLSchema(str(Path(__file__).parent / "data" / "junit.xsd"))
SIZES = dict(n=1000, anchors=100)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """baseline and a same-quality rerun (5% collapse), a regression (25%), and a run with another MCCS form."""
    from gancheck import api
    from gancheck.sources.planted import build_planted_generator

    root = tmp_path_factory.mktemp("cmp")
    mild = build_planted_generator(root / "mild.onnx", fraction=0.05)
    worse = build_planted_generator(root / "worse.onnx", fraction=0.25)
    out = {}
    for name, model, seed, extra in (("base", mild, 0, {}), ("rerun", mild, 1, {}), ("worse", worse, 0, {}),
                                     ("other_form", mild, 0, {"mccs_form": "reference"})):
        api.audit(str(model), seed=seed, out=root / name, **SIZES, **extra)
        out[name] = root / name
    return out


def test_junit_has_one_testcase_per_gate_and_validates():
    report = {"mccs": {"mean": 0.5, "mean_ci_high": 0.52}, "worst_mode": {"neighbor_fraction": 0.01}}
    results = evaluate(report, [Gate.parse("mccs.mean_ci_high>0.45"), Gate.parse("worst_mode.neighbor_fraction>0.02")])
    text = junit_xml("gancheck.audit", gate_cases(results), {"run": "/tmp/run <1>"})
    SCHEMA.validate(text)
    suite = ET.fromstring(text).find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["mccs.mean_ci_high>0.45", "worst_mode.neighbor_fraction>0.02"]
    assert cases[0].find("failure") is not None and "0.52" in cases[0].find("failure").get("message")
    assert cases[1].find("failure") is None


def test_junit_with_no_gates_and_hostile_text_still_validates(tmp_path):
    cases = [{"name": 'a<b>&"c"', "failed": True, "message": "bad \x01 byte & <tag>"}]
    path = write_junit(tmp_path / "sub" / "j.xml", "gancheck.compare", cases, {"path": "x\x02y"})
    SCHEMA.validate(str(path))
    assert ET.parse(path).getroot().find("testsuite/testcase").get("name") == 'a<b>&"c"'
    SCHEMA.validate(junit_xml("gancheck.audit", []))


def test_schema_rejects_documents_ci_systems_reject():
    good = junit_xml("s", [{"name": "g", "failed": True, "message": "m"}])
    SCHEMA.validate(good)
    assert not SCHEMA.is_valid(good.replace(' hostname="', ' host="'))  # hostname is required
    two = good.replace("</failure>", "</failure><failure type=\"x\">again</failure>")
    assert not SCHEMA.is_valid(two)  # at most one failure per test case
    assert not SCHEMA.is_valid(good.replace('tests="1"', 'tests="one"'))


def test_change_gates_hand_values():
    a, b = {"x": 1.0, "y": {"z": 0.2}}, {"x": 1.3, "y": {"z": 0.1}}
    inc, rel, dec = (ChangeGate.parse("x=0.2", "max_increase"), ChangeGate.parse("x=50%", "max_increase"),
                     ChangeGate.parse("y.z=0.05", "max_decrease"))
    r_inc, r_rel, r_dec = evaluate_changes(a, b, [inc, rel, dec])
    assert r_inc["failed"] and r_inc["margin"] == pytest.approx(0.1)
    assert not r_rel["failed"] and r_rel["allowed"] == pytest.approx(0.5)
    assert r_dec["failed"] and r_dec["change"] == pytest.approx(-0.1)
    # null is how JSON stores an infinite (reference-form) MCCS: an increase to it fails any bound
    assert evaluate_changes({"x": 1.0}, {"x": None}, [inc])[0]["failed"]
    rows = {r["key"]: r for r in figure_changes({"mccs": {"mean": 0.4}}, {"mccs": {"mean": 0.5}})}
    assert rows["mccs.mean"]["change"] == pytest.approx(0.1) and rows["mccs.mean"]["relative"] == pytest.approx(0.25)
    with pytest.raises(GancheckError):
        ChangeGate.parse("mccs.mean", "max_increase")
    with pytest.raises(GancheckError):
        evaluate_changes(a, b, [ChangeGate.parse("nope=1", "max_increase")])


def test_compare_passes_within_bounds(runs):
    proc = run_cli("compare", runs["base"], runs["rerun"], "--max-increase", "mccs.mean=0.05", "--max-increase", "worst_mode.neighbor_fraction=0.05")
    assert proc.returncode == 0, proc.stderr
    assert "mccs.mean" in proc.stdout and "diversity.vendi" in proc.stdout and "passed" in proc.stderr
    assert "B collapses more than A: not shown" in proc.stdout  # two seeds of one generator


def test_compare_says_whether_b_collapses_more_than_a(runs):
    from gancheck import api

    worse = api.compare(runs["base"], runs["worse"])["mean_difference"]
    assert worse["b_worse"] and worse["p_value"] < 0.01 and worse["ci_low"] > 0
    assert not api.compare(runs["worse"], runs["base"])["mean_difference"]["b_worse"]


def test_compare_fails_on_a_regression_with_junit_and_json(runs, tmp_path):
    junit = tmp_path / "compare.xml"
    proc = run_cli("compare", runs["base"], runs["worse"], "--max-increase", "mccs.mean=0.001", "--max-decrease", "diversity.vendi=90%",
                   "--fail-if", "mccs.mean_ci_high>0.99", "--junit", junit, "--json")
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert [g["failed"] for g in result["gates"]] == [True, False, False]
    assert result["gates"][0]["change"] > 0.001
    SCHEMA.validate(str(junit))
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1"
    assert "FAILED" in proc.stderr and "mccs.mean" in proc.stderr


@pytest.mark.parametrize("args, phrase", [
    (["--max-increase", "mccs.mean"], "KEY=AMOUNT"),
    (["--max-increase", "no.such.key=1"], "not in run"),
    (["--fail-if", "mccs.mean>>1"], "cannot read gate"),
])
def test_compare_usage_errors_exit_2(runs, args, phrase):
    proc = run_cli("compare", runs["base"], runs["rerun"], *args)
    assert proc.returncode == 2 and phrase in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0  # one line, no traceback


def test_compare_refuses_runs_measured_differently(runs, tmp_path):
    from gancheck import api

    with pytest.raises(GancheckError, match="mccs_form"):
        api.compare(runs["base"], runs["other_form"])
    with pytest.raises(GancheckError):
        api.compare(runs["base"], tmp_path / "missing")
    # told to, the CLI prints the comparison of runs measured differently and exits 0
    assert run_cli("compare", runs["base"], runs["other_form"], "--allow-mismatch").returncode == 0


def test_pre_release_script_fails_the_job_on_a_crossed_gate(runs, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT
    from gancheck.sources.planted import build_planted_generator

    script = ROOT / "examples" / "ci" / "pre-release.sh"
    env = dict(os.environ, PYTHONPATH=str(ROOT), GANCHECK=f"{sys.executable} -m gancheck", GANCHECK_N="1000", GANCHECK_ANCHORS="100")
    clean = build_planted_generator(tmp_path / "clean.onnx", fraction=1e-9)
    ok = subprocess.run(["bash", str(script), str(clean)], env=dict(env, GANCHECK_OUT=str(tmp_path / "ok")), capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "ok" / "report.html").is_file()
    SCHEMA.validate(str(tmp_path / "ok" / "junit-gates.xml"))
    # the 25% collapse crosses the default neighbour-fraction gate and the regression bound
    bad = subprocess.run(["bash", str(script), str(runs["worse"].parent / "worse.onnx"), str(tmp_path / "ok")],
                         env=dict(env, GANCHECK_OUT=str(tmp_path / "bad")), capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1, bad.stderr
    for name in ("junit-gates.xml", "junit-compare.xml"):
        SCHEMA.validate(str(tmp_path / "bad" / name))
        assert ET.parse(tmp_path / "bad" / name).getroot().find("testsuite").get("failures") != "0"
