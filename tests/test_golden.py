"""Golden figures: report.json of fixed-seed audits, recorded before the package was reorganised,
must stay equal: every count, string and flag exactly, every float to 1e-9 relative. On one
machine a refactoring leaves them bitwise equal; across processors the BLAS kernel that OpenBLAS
picks (Haswell on AMD EPYC, SkylakeX elsewhere) orders its sums differently, which moves the last
bit of some figures (seen: 1 ulp in m, 6e-11 relative in collection_bias_mean). Regenerate
deliberately, when a change is meant to move a number, with ``python tests/test_golden.py --write``
and say why in the commit.

Excluded: keys that name paths or versions, and the bootstrap intervals (their resampling
scheme belongs to the library computing them, not to the audit)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "data" / "golden.json"
#: (name, generator, n, anchors, seed)
AUDITS = [
    ("demo-s0", "demo", 3000, 300, 0),
    ("demo-s7", "demo", 5000, 500, 7),
    ("planted-s3", "planted", 4000, 400, 3),
    ("planted-s4", "planted", 2500, 250, 4),
]
DROP = {"config", "generator", "calibrator", "gates"}
DROP_NESTED = {"mccs": {"mean_ci_low", "mean_ci_high", "std_ci_low", "std_ci_high", "ci_method", "ci_level"},
               "reference": {"path"}}


def comparable(report: dict) -> dict:
    out = {k: v for k, v in report.items() if k not in DROP}
    for key, drop in DROP_NESTED.items():
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k not in drop}
    return json.loads(json.dumps(out))


def generator_path(kind: str, tmp: Path) -> Path:
    from gancheck.sources.planted import DEMO_MODEL, build_planted_generator

    return DEMO_MODEL if kind == "demo" else build_planted_generator(tmp / "planted.onnx", fraction=0.05)


def compute(tmp: Path) -> dict:
    from gancheck.api import audit, calibrate

    figures = {}
    for name, kind, n, anchors, seed in AUDITS:
        report = audit(str(generator_path(kind, tmp)), n=n, anchors=anchors, seed=seed, embedder="pixel",
                                out=tmp / name, html=False)
        figures[name] = comparable(report)
    result = calibrate(tmp / "planted-s3", method="rejection", device="cpu")
    figures["planted-s3-rejection-proof"] = comparable(json.loads((tmp / "planted-s3" / "calibration-rejection" / "report.json").read_text()))
    figures["planted-s3-rejection"] = {k: result[k] for k in ("before", "after") if k in result}
    return json.loads(json.dumps(figures))


@pytest.mark.slow
def test_golden_figures_are_unchanged(tmp_path):
    want = json.loads(GOLDEN.read_text())
    got = compute(tmp_path)
    assert sorted(got) == sorted(want)
    for name in want:
        assert same_figures(recorded_part(got[name], want[name]), want[name]), f"{name}: figures changed"


def same_figures(got, want, rel: float = 1e-9) -> bool:
    """Equal, floats to ``rel`` relative (1e-15 absolute near zero), everything else exactly."""
    import math

    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(same_figures(got[k], want[k], rel) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(same_figures(g, w, rel) for g, w in zip(got, want))
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return math.isclose(got, want, rel_tol=rel, abs_tol=1e-15)
    return got == want and type(got) is type(want)


def recorded_part(got, want):
    """``got`` restricted to the keys ``want`` has: reports may gain keys, never change one."""
    if isinstance(want, dict) and isinstance(got, dict):
        return {k: recorded_part(got[k], v) if k in got else "<missing>" for k, v in want.items()}
    return got


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        GOLDEN.write_text(json.dumps(compute(Path(d)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
