"""Classes of a sweep ranked with their uncertainty, and the classes that really collapse more.

Each class's mu is the bias-corrected mean of its report (:func:`gancheck.analysis.report.figures`).
Its uncertainty has two parts, resampled jointly in :func:`class_draws`: the anchors (a bootstrap
within the class) and the collection's shared noise (a normal error of the class's
``collection_sd_mean``), so every draw is one plausible set of class means. From the draws:

- :func:`rank_intervals`: each class's 95% interval for its rank (1 = most collapsed);
- :func:`flag_classes`: each class against the median of the others, a one-sided z-test on the
  difference with the draws' standard error, Benjamini-Hochberg across classes; the significant
  ones are *flagged*, most collapsed first.

:func:`mean_difference` is the same test between two runs (``compare``), from their intervals.
Classes audited with the same seeds share latents, so their errors correlate positively and
resampling them independently overstates the error of a difference: the test errs on the side of
flagging less.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from gancheck.analysis.proportions import ALPHA, bh_q_values

N_DRAWS = 2000
LEVEL = 0.95


def class_row(label: str, value: str, report: dict) -> dict:
    """One row of the sweep table from a class's report.json."""
    mccs, worst = report["mccs"], report["worst_mode"]
    keys = ("mean", "mean_raw", "std", "mean_ci_low", "mean_ci_high", "std_ci_low", "std_ci_high", "ci_note")
    return {
        "label": label, "value": value, "n_samples": report.get("n_samples"),
        "mccs": {k: mccs.get(k) for k in keys},
        "worst_mode": {k: worst.get(k) for k in ("mccs", "neighbor_fraction", "neighbor_fraction_ci_low", "neighbor_fraction_ci_high", "sample_index")},
    }


def sweep_table(name: str, rows: list[dict], draws: np.ndarray | None = None) -> dict:
    """Classes ranked by their (bias-corrected) mean MCCS, most collapsed first, each with
    ``rank_ci`` when ``draws`` (:func:`class_draws`, columns in ``rows``' order) are given; the
    ``flagged`` classes; and ``max_class``/``min_class``, every figure's largest and smallest
    value over the classes, for gates such as ``max_class.mccs.mean>0.3``."""
    points = np.array([_number(r["mccs"]["mean"]) for r in rows])
    ranked = sorted(range(len(rows)), key=lambda i: (-points[i], rows[i]["label"]))
    for rank, i in enumerate(ranked, 1):
        rows[i]["rank"] = rank
    flagged = []
    if draws is not None:
        for row, ci in zip(rows, rank_intervals(points, draws)):
            row["rank_ci"] = ci
        flagged = flag_classes([r["label"] for r in rows], points, draws)
    extreme = {}
    for which, pick in (("max_class", max), ("min_class", min)):
        extreme[which] = {group: {key: pick((r[group][key] for r in rows if isinstance(r[group][key], (int, float))), default=None)
                                  for key in rows[0][group] if key != "ci_note"} for group in ("mccs", "worst_mode")}
    return {"kind": "sweep", "input": name, "classes": {r["label"]: r for r in rows}, "ranking": [rows[i]["label"] for i in ranked],
            "most_collapsed": rows[ranked[0]]["label"], "flagged": flagged, **extreme}


def _number(x) -> float:
    return np.inf if x is None else float(x)  # an infinite mean (reference form) is written as null


def class_draws(scores: list[np.ndarray], bias: list[float | None], collection_sd: list[float | None],
                n_draws: int = N_DRAWS, seed: int = 0) -> np.ndarray:
    """(n_draws, K) plausible bias-corrected class means: each class's anchors resampled with
    replacement, minus its collection bias, plus a normal error of its collection noise."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_draws, len(scores)))
    for c, (s, b, sd) in enumerate(zip(scores, bias, collection_sd)):
        s = np.asarray(s, dtype=np.float64)
        pick = rng.integers(0, len(s), size=(n_draws, len(s)))
        out[:, c] = s[pick].mean(axis=1) - (b or 0.0) + rng.normal(0.0, sd or 0.0, n_draws)
    return out


def rank_intervals(points: np.ndarray, draws: np.ndarray, level: float = LEVEL) -> list[list[int]]:
    """Each class's ``[best, worst]`` rank (1 = highest mean) over the central ``level`` of the
    draws, widened to hold the observed rank (a bootstrap may centre a little off it)."""
    ranks = np.argsort(np.argsort(-draws, axis=1, kind="stable"), axis=1, kind="stable") + 1
    observed = np.argsort(np.argsort(-np.asarray(points), kind="stable"), kind="stable") + 1
    tail = (1 - level) / 2
    low = np.quantile(ranks, tail, axis=0, method="lower")
    high = np.quantile(ranks, 1 - tail, axis=0, method="higher")
    return [[int(min(lo, r)), int(max(hi, r))] for lo, hi, r in zip(low, high, observed)]


def normal_difference(difference: float, se: float, level: float = LEVEL) -> dict:
    """A difference with its normal interval and the one-sided p-value that it is above 0."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = 1.0 - NormalDist().cdf(difference / se) if se > 0 else float(difference <= 0)
    return {"difference": float(difference), "ci_low": float(difference - z * se), "ci_high": float(difference + z * se),
            "p_value": float(p)}


def flag_classes(labels: list[str], points: np.ndarray, draws: np.ndarray, alpha: float = ALPHA) -> list[dict]:
    """Classes whose mean MCCS is significantly above the median of the other classes' means
    (one-sided z-tests, Benjamini-Hochberg q < ``alpha`` across the classes), most collapsed first.
    Each: ``label``, ``difference`` (its mean minus the others' median), ``ci_low``, ``ci_high``,
    ``p_value``, ``q_value``."""
    points = np.asarray(points, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(points) & np.all(np.isfinite(draws), axis=0))
    if len(finite) < 3:
        return []  # one class against the median of one other is a two-run comparison, not a ranking
    tests = []
    for c in finite:
        others = finite[finite != c]
        diff = draws[:, c] - np.median(draws[:, others], axis=1)
        tests.append(dict(normal_difference(points[c] - np.median(points[others]), float(diff.std(ddof=1))), label=labels[c]))
    for t, q in zip(tests, bh_q_values([t["p_value"] for t in tests])):
        t["q_value"] = float(q)
    return sorted((t for t in tests if t["q_value"] < alpha), key=lambda t: (-t["difference"], t["label"]))


def mean_difference(a: dict, b: dict, level: float = LEVEL) -> dict | None:
    """Is run B's mu above run A's? The difference of the two reports' mu with its interval and
    one-sided p-value, each run's standard error read off its own interval (``mccs`` sections)."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    if any(r.get(k) is None for r in (a, b) for k in ("mean", "mean_ci_low", "mean_ci_high")):
        return None
    se = np.hypot(*[(r["mean_ci_high"] - r["mean_ci_low"]) / (2 * z) for r in (a, b)])
    out = normal_difference(b["mean"] - a["mean"], float(se), level)
    out["b_worse"] = bool(out["p_value"] < ALPHA)
    return out
