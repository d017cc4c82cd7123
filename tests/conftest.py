import json
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


def one_line_error(proc, *words):
    """Assert ``proc`` failed with exit 2 and one stderr line (no traceback) holding ``words``; returns the line."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def audited_run(model, out, *args):
    """Audit ``model`` into ``out`` with its embeddings saved (what calibration fits on); returns ``out``."""
    proc = run_cli("audit", model, "--out", out, *args, "--save-embeddings")
    assert proc.returncode == 0, proc.stderr
    return out


def audited_run_in_process(model, out, **options):
    """In-process twin of :func:`audited_run`: ``gancheck.audit(model, out=out, save_embeddings=True, **options)``
    (``options`` are the audit's Python keywords); returns ``out``."""
    import gancheck

    gancheck.audit(str(model), out=out, save_embeddings=True, **options)
    return out


REPORT_SCHEMA = ROOT / "docs" / "report.schema.json"


def report_errors(report: dict) -> list[str]:
    """Where ``report`` breaks the published report.json schema (docs/report.schema.json)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(REPORT_SCHEMA.read_text()))
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(report)]


#: (point, low, high) key paths of a report: each point must lie inside its own interval.
REPORT_INTERVALS = (("mccs.mean", "mccs.mean_ci_low", "mccs.mean_ci_high"), ("mccs.std", "mccs.std_ci_low", "mccs.std_ci_high"),
                    ("worst_mode.neighbor_fraction", "worst_mode.neighbor_fraction_ci_low", "worst_mode.neighbor_fraction_ci_high"),
                    ("worst_mode.held_out_fraction", "worst_mode.share_ci_low", "worst_mode.share_ci_high"),
                    ("diversity.vendi", "diversity.vendi_ci_low", "diversity.vendi_ci_high"),
                    ("diversity.support_size", "diversity.support_size_lower", None))
SWEEP_INTERVALS = (("mccs.mean", "mccs.mean_ci_low", "mccs.mean_ci_high"), ("mccs.std", "mccs.std_ci_low", "mccs.std_ci_high"),
                   ("rank", "rank_ci.0", "rank_ci.1"))


def _at(d, path: str):
    for key in path.split("."):
        if d is None:
            return None
        d = d[int(key)] if isinstance(d, list) else d.get(key)
    return d


def outside_intervals(report: dict) -> list[str]:
    """Figures of a report.json or sweep.json that lie outside their own interval (one estimand each)."""
    if report.get("kind") == "sweep":
        items = [(f"classes.{label}.{p[0]}", row, p) for label, row in report["classes"].items() for p in SWEEP_INTERVALS]
        items += [(f"flagged.{f['label']}.difference", f, ("difference", "ci_low", "ci_high")) for f in report.get("flagged", [])]
    else:
        items = [(p[0], report, p) for p in REPORT_INTERVALS]
        items += [(f"mode_shares.{m['rank']}", m, ("held_out_fraction", "share_ci_low", "share_ci_high")) for m in report.get("mode_shares", [])]
    bad = []
    for name, where, (point, low, high) in items:
        x, lo, hi = _at(where, point), _at(where, low), _at(where, high) if high else None
        if x is None or lo is None:
            continue
        if x < lo - 1e-12 * max(1.0, abs(x)) or (hi is not None and x > hi + 1e-12 * max(1.0, abs(x))):
            bad.append(f"{name} = {x} outside [{lo}, {hi}]")
    return bad


@pytest.fixture(scope="session", autouse=True)
def every_report_the_tests_write_matches_the_schema(tmp_path_factory):
    """After the session: each report.json an audit wrote in any test (in process or through the CLI)
    is valid against the published schema, and each of its figures (and each sweep.json's) lies
    inside its own interval. An audit writes report.json, then manifest.json: a report
    changed later (damaged on purpose by a test, or its verdict rewritten by `gancheck report`) is
    newer than its manifest and is passed over."""
    yield
    bad = []
    for path in sorted(tmp_path_factory.getbasetemp().rglob("report.json")):
        manifest = path.with_name("manifest.json")
        try:
            if not manifest.is_file() or path.stat().st_mtime_ns > manifest.stat().st_mtime_ns:
                continue
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        bad += [f"{path}: {e}" for e in (report_errors(report) + outside_intervals(report))[:1]]
    for path in sorted(tmp_path_factory.getbasetemp().rglob("sweep.json")):
        bad += [f"{path}: {e}" for e in outside_intervals(json.loads(path.read_text()))[:1]]
    assert not bad, "reports that break docs/report.schema.json or hold a figure outside its interval:\n" + "\n".join(bad[:10])
