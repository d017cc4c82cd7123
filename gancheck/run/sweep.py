"""A conditional generator audited class by class: ``--sweep NAME=onehot:K`` (or ``NAME=values:A,B``)
runs one sub-run per value of the conditioning input ``NAME``, with the same seeds (so the same
latents) and embedder, and ranks the classes by how much they collapse.

Layout: ``OUT/class-LABEL/`` is each class's ordinary run directory; ``OUT/sweep.json`` holds the
table (:func:`gancheck.analysis.ranking.sweep_table`) that gates and report pages read.
"""

from __future__ import annotations

from dataclasses import dataclass

from gancheck.errors import GancheckError


@dataclass(frozen=True)
class SweepValue:
    """One class: its label (a directory and table name) and the ``--input`` text that selects it."""

    label: str
    text: str


def parse_sweep(spec: str) -> tuple[str, list[SweepValue]]:
    """``NAME=onehot:K`` -> K one-hot vectors; ``NAME=values:0,1,2`` -> those scalar values."""
    name, sep, rule = spec.partition("=")
    kind, _, arg = rule.partition(":")
    hint = "write --sweep NAME=onehot:K or --sweep NAME=values:A,B,C"
    if not sep or not name.strip() or kind not in ("onehot", "values") or not arg.strip():
        raise GancheckError(f"cannot read --sweep {spec!r}; {hint}")
    if kind == "onehot":
        try:
            k = int(arg)
        except ValueError:
            raise GancheckError(f"--sweep {spec!r}: {arg!r} is not a class count; {hint}") from None
        if k < 2:
            raise GancheckError(f"--sweep {spec!r}: a sweep needs at least 2 classes, got {k}")
        return name.strip(), [SweepValue(str(i), ",".join("1" if j == i else "0" for j in range(k))) for i in range(k)]
    values = [v.strip() for v in arg.split(",") if v.strip()]
    if len(values) < 2 or len(set(values)) != len(values):
        raise GancheckError(f"--sweep {spec!r} needs at least 2 distinct values; {hint}")
    return name.strip(), [SweepValue(v.replace("/", "_"), v) for v in values]
