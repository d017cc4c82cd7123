"""Release gates on report values: ``mccs.mean>0.45`` fails the run when the report's value is above 0.45."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from gancheck.dotted import dotted_get
from gancheck.errors import GancheckError
from gancheck.formatting import format_change, format_number

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_GATE = re.compile(r"^\s*([A-Za-z_][\w.\[\]]*)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Gate:
    """``key op bound``: the gate *fails* when ``report[key] op bound`` holds."""

    key: str
    op: str
    bound: float

    @classmethod
    def parse(cls, text: str) -> "Gate":
        match = _GATE.match(text)
        if not match:
            raise GancheckError(f"cannot read gate {text!r}; write KEY OP NUMBER with OP one of > >= < <=, e.g. --fail-if 'mccs.mean>0.45'")
        key, op, bound = match.groups()
        try:
            return cls(key, op, float(bound))
        except ValueError:
            raise GancheckError(f"gate {text!r}: {bound!r} is not a number") from None

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.bound:g}"


def lookup(report: dict, key: str):
    """``a.b[0].c`` in nested dicts/lists."""
    try:
        return dotted_get(report, key)
    except LookupError:
        raise GancheckError(f"gate key {key!r} is not in the report; see report.json for the keys (e.g. mccs.mean, worst_mode.mccs)") from None


def evaluate(report: dict, gates: list[Gate], allow_inconclusive: bool = False) -> list[dict]:
    """One result per gate: value, bound, whether it failed, and the margin (value - bound).

    A run whose inputs are degenerate (``report["degenerate"]["inconclusive"]``, see
    :mod:`gancheck.analysis.degenerate`) proves nothing either way: unless ``allow_inconclusive``,
    that adds one failed result, so a release gate never passes on it."""
    results = []
    degenerate = report.get("degenerate") or {}
    if gates and degenerate.get("inconclusive") and not allow_inconclusive:
        results.append({"gate": "conclusive", "key": "degenerate.inconclusive", "op": "==", "bound": 0.0, "value": 1.0,
                        "margin": 1.0, "failed": True, "reason": "; ".join(degenerate.get("reasons", []))})
    for gate in gates:
        value = lookup(report, gate.key)
        if isinstance(value, list):
            value = len(value)  # a list gates on its length: --fail-if 'flagged>0'
        if value is None:
            value = float("inf")
        if not isinstance(value, (int, float)):
            raise GancheckError(f"gate key {gate.key!r} holds {type(value).__name__}, not a number")
        failed = bool(_OPS[gate.op](value, gate.bound))
        results.append({"gate": str(gate), "key": gate.key, "op": gate.op, "bound": gate.bound, "value": value,
                        "margin": value - gate.bound, "failed": failed})
    return results


def describe(result: dict) -> str:
    verdict = "FAILED" if result["failed"] else "passed"
    if result["key"] == "degenerate.inconclusive":
        return f"gate {result['gate']} {verdict}: the audit is inconclusive ({result['reason']}); fix the inputs, or pass --allow-inconclusive"
    return (f"gate {result['gate']} {verdict}: {result['key']} = {format_number(result['value'])}, bound {format_number(result['bound'])}, "
            f"margin {format_change(result['margin'])}")
