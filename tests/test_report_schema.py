"""report.json has one published schema (docs/report.schema.json): the audit's report, with or
without a run directory, matches it, and a report that lacks a figure or names an unknown one does not."""

from __future__ import annotations

import json

from conftest import report_errors


def test_the_audit_report_matches_the_published_schema_with_and_without_a_run_directory(planted_onnx, tmp_path):
    import gancheck

    written = gancheck.audit(str(planted_onnx), tmp_path / "run", n=600, anchors=60, html=False)
    in_memory = gancheck.audit(str(planted_onnx), n=600, anchors=60)
    assert report_errors(written) == [] and report_errors(in_memory) == []
    assert json.loads((tmp_path / "run" / "report.json").read_text()) == written
    assert {k: v for k, v in in_memory.items() if k != "generator"} == {k: v for k, v in written.items() if k != "generator"}


def test_a_report_missing_a_figure_or_with_an_unknown_key_breaks_the_schema(planted_onnx):
    import gancheck

    report = gancheck.audit(str(planted_onnx), n=400, anchors=40)
    assert any("verdict" in e for e in report_errors({k: v for k, v in report.items() if k != "verdict"}))
    assert report_errors(dict(report, mccs_mean=0.3))
    assert report_errors(dict(report, mccs=dict(report["mccs"], mean="high")))
