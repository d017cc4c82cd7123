"""Comparing two runs (a baseline A and a candidate B) and gating on regressions.

``--max-increase mccs.mean=0.02`` fails when ``B - A > 0.02``; ``--max-decrease
diversity.vendi=10%`` fails when B is more than 10% (of A) below A. Figures of two runs are only
comparable when they were measured the same way (embedder, theta, r, MCCS form).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from gancheck.errors import GancheckError
from gancheck.formatting import format_change, format_number
from gancheck.analysis.gates import Gate, evaluate, lookup
from gancheck.analysis.ranking import mean_difference
from gancheck.analysis.report import analyse, load_run
from gancheck.run.directory import load_report
from gancheck.run.fingerprint import measurement_difference

#: The figures ``compare`` prints, in order; those absent from both runs are left out.
KEY_FIGURES = (
    "mccs.mean", "mccs.mean_ci_high", "mccs.std", "mccs.median", "mccs.max",
    "worst_mode.mccs", "worst_mode.neighbor_fraction", "worst_mode.neighbor_fraction_ci_high",
    "spatial.p_value", "diversity.vendi", "diversity.support_size",
    "reference.precision", "reference.recall", "reference.density", "reference.coverage", "reference.frechet_distance",
    "no_face.rate", "n_samples", "n_anchors",
)
#: Settings that must agree for the figures to be comparable.
SETTINGS = ("embedder", "theta", "radius", "mccs_form")

_CHANGE = re.compile(r"^\s*([A-Za-z_][\w.\[\]]*)\s*=\s*([-+0-9.eE]+)\s*(%?)\s*$")
KINDS = {"max_increase": "--max-increase", "max_decrease": "--max-decrease"}


@dataclass(frozen=True)
class ChangeGate:
    """Fails when ``key`` rises (``max_increase``) or falls (``max_decrease``) by more than
    ``bound`` from run A to run B; ``relative`` bounds are fractions of A's value."""

    key: str
    kind: str
    bound: float
    relative: bool = False

    @classmethod
    def parse(cls, text: str, kind: str) -> "ChangeGate":
        match = _CHANGE.match(text)
        if not match:
            raise GancheckError(f"cannot read {KINDS[kind]} {text!r}; write KEY=AMOUNT or KEY=PERCENT%, e.g. {KINDS[kind]} mccs.mean=0.02")
        key, amount, pct = match.groups()
        try:
            bound = float(amount)
        except ValueError:
            raise GancheckError(f"{KINDS[kind]} {text!r}: {amount!r} is not a number") from None
        if bound < 0:
            raise GancheckError(f"{KINDS[kind]} {text!r}: the allowed change must be positive or zero")
        return cls(key, kind, bound / 100 if pct else bound, bool(pct))

    def __str__(self) -> str:
        amount = f"{100 * self.bound:g}%" if self.relative else f"{self.bound:g}"
        return f"{self.key} {'increase' if self.kind == 'max_increase' else 'decrease'} <= {amount}"


def _number(value):
    """A report value as float; None (JSON's stand-in for an infinite MCCS) is +inf."""
    if value is None:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _get(report: dict, key: str):
    try:
        return lookup(report, key)
    except GancheckError:
        return _MISSING


_MISSING = object()


def figure_changes(a: dict, b: dict, keys=KEY_FIGURES) -> list[dict]:
    """Rows ``{key, a, b, change, relative}`` for each key present in either report
    (``change = b - a``; ``relative = change / |a|``; None where undefined)."""
    rows = []
    for key in keys:
        va, vb = _get(a, key), _get(b, key)
        if va is _MISSING and vb is _MISSING:
            continue
        xa = None if va is _MISSING else _number(va)
        xb = None if vb is _MISSING else _number(vb)
        change = xb - xa if xa is not None and xb is not None and not (math.isinf(xa) and math.isinf(xb)) else None
        relative = change / abs(xa) if change is not None and xa not in (None, 0.0) and math.isfinite(xa) else None
        rows.append({"key": key, "a": None if va is _MISSING else va, "b": None if vb is _MISSING else vb,
                     "change": change, "relative": relative})
    return rows


def settings_mismatch(a: dict, b: dict) -> list[str]:
    """Descriptions of the settings that differ between two reports (empty when comparable)."""
    out = []
    for key in SETTINGS:
        va, vb = a.get(key), b.get(key)
        if va != vb and not (isinstance(va, float) and isinstance(vb, float) and math.isclose(va, vb)):
            out.append(f"{key}: {va!r} vs {vb!r}")
    return out


def evaluate_changes(a: dict, b: dict, gates: list[ChangeGate], names=("A", "B")) -> list[dict]:
    """One result per gate: ``{gate, key, kind, bound, a, b, change, allowed, margin, failed}``;
    ``margin`` is how far the change went past the allowed amount (positive means failed)."""
    results = []
    for gate in gates:
        values = []
        for report, name in zip((a, b), names):
            v = _get(report, gate.key)
            if v is _MISSING:
                raise GancheckError(f"gate key {gate.key!r} is not in run {name}'s report; see `gancheck compare` output for the keys both runs have")
            x = _number(v)
            if x is None:
                raise GancheckError(f"gate key {gate.key!r} holds {type(v).__name__} in run {name}, not a number")
            values.append(x)
        xa, xb = values
        allowed = gate.bound * abs(xa) if gate.relative else gate.bound
        if math.isinf(xa) and math.isinf(xb):
            change = 0.0 if xa == xb else (math.inf if xb > xa else -math.inf)
        else:
            change = xb - xa
        growth = change if gate.kind == "max_increase" else -change
        if gate.relative and math.isinf(xa):
            allowed = math.inf
        margin = growth - allowed
        results.append({"gate": str(gate), "key": gate.key, "kind": gate.kind, "bound": gate.bound, "relative": gate.relative,
                        "a": xa, "b": xb, "change": change, "allowed": allowed, "margin": margin, "failed": bool(margin > 0)})
    return results


def describe_change(result: dict) -> str:
    verdict = "FAILED" if result["failed"] else "passed"
    return (f"gate {result['gate']} {verdict}: {result['key']} {format_number(result['a'])} -> {format_number(result['b'])} "
            f"(change {format_change(result['change'])}, allowed {format_number(result['allowed'])})")


def load_full_report(run_dir: str | Path) -> dict:
    """A run's report.json, analysed now (:func:`gancheck.analysis.report.analyse`) when the run
    predates the figures it lacks (nothing is written)."""
    report = load_report(run_dir)
    if "spatial" not in report or "diversity" not in report:
        report = analyse(load_run(run_dir)).report
    return report


def compare_runs(run_a: str | Path, run_b: str | Path, max_increase: list[str] | None = None, max_decrease: list[str] | None = None,
                 fail_if: list[str] | None = None, allow_mismatch: bool = False) -> dict:
    """Compare run B against baseline run A. Returns ``{run_a, run_b, figures, mismatch, gates,
    mean_difference}``; ``gates`` holds the change gates' results and then the ``fail_if`` gates
    evaluated on B; ``mean_difference`` is B's mu minus A's with its interval and the one-sided
    p-value that B collapses more (:func:`gancheck.analysis.ranking.mean_difference`)."""
    gates = [ChangeGate.parse(t, "max_increase") for t in max_increase or []] + [ChangeGate.parse(t, "max_decrease") for t in max_decrease or []]
    plain = [Gate.parse(t) for t in fail_if or []]
    a, b = load_full_report(run_a), load_full_report(run_b)
    mismatch = settings_mismatch(a, b)
    measured = measurement_difference(run_a, run_b)
    if measured and not any(m.startswith("embedder") for m in mismatch):
        mismatch.append(f"embedder fingerprint: {measured}")
    if mismatch and not allow_mismatch:
        raise GancheckError(f"the runs were measured differently ({'; '.join(mismatch)}); audit both with the same embedder model, theta, r and MCCS form, or pass --force (--allow-mismatch)")
    results = evaluate_changes(a, b, gates)
    for r in evaluate(b, plain):
        results.append(dict(r, kind="fail_if"))
    return {"run_a": str(run_a), "run_b": str(run_b), "figures": figure_changes(a, b), "mismatch": mismatch, "gates": results,
            "mean_difference": mean_difference(a["mccs"], b["mccs"])}
