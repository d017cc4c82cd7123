"""A conditional generator audited class by class: ``--sweep NAME=onehot:K`` (or ``NAME=values:A,B``)
runs one sub-run per value of the conditioning input ``NAME``, with the same seeds (so the same
latents) and embedder, and ranks the classes by how much they collapse.

Layout: ``OUT/class-LABEL/`` is each class's ordinary run directory; ``OUT/sweep.json`` holds the
table (:func:`sweep_table`) that gates and report pages read.
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


def class_row(label: str, value: str, report: dict) -> dict:
    """One row of the sweep table from a class's report.json."""
    mccs, worst = report["mccs"], report["worst_mode"]
    return {
        "label": label, "value": value, "n_samples": report.get("n_samples"),
        "mccs": {k: mccs.get(k) for k in ("mean", "std", "mean_ci_low", "mean_ci_high", "std_ci_low", "std_ci_high")},
        "worst_mode": {k: worst.get(k) for k in ("mccs", "neighbor_fraction", "neighbor_fraction_ci_low", "neighbor_fraction_ci_high", "sample_index")},
    }


def sweep_table(name: str, rows: list[dict]) -> dict:
    """Classes ranked by mean MCCS (most collapsed first), plus ``max_class``: every figure's largest
    value over the classes, and ``min_class``, the smallest, for gates such as ``max_class.mccs.mean>0.3``."""
    ranked = sorted(rows, key=lambda r: (-r["mccs"]["mean"], r["label"]))
    for i, row in enumerate(ranked, 1):
        row["rank"] = i
    extreme = {}
    for which, pick in (("max_class", max), ("min_class", min)):
        extreme[which] = {group: {key: pick((r[group][key] for r in rows if r[group][key] is not None), default=None)
                                  for key in rows[0][group]} for group in ("mccs", "worst_mode")}
    # Two classes differ when their mean's confidence intervals do not overlap.
    top = ranked[0]["mccs"]
    apart = [r["label"] for r in ranked[1:] if r["mccs"]["mean_ci_high"] is not None and top["mean_ci_low"] is not None
             and r["mccs"]["mean_ci_high"] < top["mean_ci_low"]]
    return {"kind": "sweep", "input": name, "classes": {r["label"]: r for r in rows}, "ranking": [r["label"] for r in ranked],
            "most_collapsed": ranked[0]["label"], "clearly_below_most_collapsed": apart, **extreme}
