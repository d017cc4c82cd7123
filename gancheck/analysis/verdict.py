"""The plain-language verdict of an audit, computed once from its report figures and stored in
report.json as ``verdict``: ``{status, headline, reasons, collapse}``. The terminal summary, the
HTML page, the CI log and gates (``--fail-if 'verdict.collapse>0'``) all read that one result.

``status`` is ``fail`` (a release gate was crossed), ``inconclusive`` (the run cannot support a
verdict: ``report["degenerate"]["inconclusive"]``), ``collapse`` (the Ripley test finds the worst
mode significantly denser than a random anchor) or ``pass``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gancheck.maths import pairwise_distance
from gancheck.formatting import format_count, format_interval, format_number, format_p, format_share

#: Monte Carlo simulations of the Ripley test when the report does not say.
N_SIMS = 999
#: Significance level of the Ripley test behind "collapse".
ALPHA = 0.01
#: The one rule for "were the sizes enough": the MCCS figures (mu and the worst mode's MCCS) moved
#: by less than this relative amount over the last tenfold increase of |C|. The sampling-efficiency
#: figure's caption states the same rule with the same number.
SETTLED_CHANGE = 0.05
STATUSES = ("pass", "collapse", "fail", "inconclusive")


def sampling_settled(report: dict) -> tuple[bool | None, str]:
    """``(settled, sentence)``: whether the run's sizes were enough under :data:`SETTLED_CHANGE`;
    ``None`` when the run has no convergence record."""
    samp = report.get("sampling") or {}
    changes = [c for c in (samp.get("mccs_mean_change"), samp.get("worst_mccs_change")) if c is not None]
    if not changes:
        return None, ""
    change, limit = max(changes), format_share(SETTLED_CHANGE)
    settled = change < SETTLED_CHANGE
    what = (f"under {limit}, so the sizes were enough" if settled else
            f"more than {limit}: a larger --n would likely change them, so treat the figures as provisional")
    sentence = (f"From |C| = {format_count(samp['from_n'])} to {format_count(samp['to_n'])} the MCCS figures moved by at most "
                f"{format_share(change)}, {what}.")
    return settled, sentence


def held_out_text(w: dict) -> str:
    """The worst mode's share re-measured on the held-out anchors, with its interval (the collection
    count chose the mode, so its own share is biased up; the interval belongs to this estimate)."""
    k, m = w.get("held_out_neighbors"), w.get("held_out_anchors")
    if k is None or not m:
        return f"Its share: {format_interval(w.get('neighbor_fraction_ci_low'), w.get('neighbor_fraction_ci_high'), share=True)}"
    ci = format_interval(w.get("share_ci_low"), w.get("share_ci_high"), share=True)
    return f"Re-measured on the {format_count(m)} other anchors: {format_count(k)} within r ({format_share(k / m)}, {ci})"


def _collapse(report: dict) -> tuple[bool, list[str]]:
    """Whether the Ripley test finds collapse, and the sentences that say why."""
    w = report["worst_mode"]
    sp = report.get("spatial") or {}
    p = sp.get("p_value")
    ci = format_interval(w.get("neighbor_fraction_ci_low"), w.get("neighbor_fraction_ci_high"), share=True)
    typical = report.get("typical_fraction", w.get("typical_fraction"))
    ratio = (f", {format_number(w['neighbor_fraction'] / typical)} times the average anchor's share ({format_share(typical)})"
             if typical else "")
    reasons = [f"The worst-case dense mode (sample {w['sample_index']}) has {format_count(w['neighbors'])} of all "
               f"{format_count(report['n_samples'])} samples ({format_share(w['neighbor_fraction'])}) within r = "
               f"{format_number(report['radius'])}{ratio}." + (f" {held_out_text(w)}." if ci else "")]
    collapsed = p is not None and p < ALPHA
    if p is not None:
        test = format_p(p, sp.get("sims", N_SIMS))
        reasons.append(f"Ripley test: {test}; the worst mode is significantly denser than a random anchor: the generator "
                       "collapses onto this identity." if collapsed else
                       f"Ripley test: {test}; no significant evidence that the worst mode is denser than a random anchor.")
    return collapsed, reasons


def verdict(report: dict) -> dict:
    """The verdict of ``report`` (report.json's figures, after enrichment and gates)."""
    collapsed, reasons = _collapse(report)
    settled, sentence = sampling_settled(report)
    if sentence:
        reasons.append(sentence)
    detection = (report.get("detection") or {}).get("sentence")
    if detection:
        reasons.append(detection[0].upper() + detection[1:] + ".")
    gates = report.get("gates") or []
    failed = [g for g in gates if g["failed"]]
    degenerate = report.get("degenerate") or {}
    share = format_share(report["worst_mode"]["neighbor_fraction"])
    if failed:
        status = "fail"
        headline = f"{len(failed)} of {len(gates)} release gates crossed ({', '.join(g['gate'] for g in failed)})"
    elif degenerate.get("inconclusive"):
        status = "inconclusive"
        why = degenerate.get("reason") or "; ".join(degenerate.get("reasons") or []) or "the run cannot support a verdict"
        headline = f"Inconclusive: {why}"
        reasons.insert(0, headline + ".")
    elif collapsed:
        status = "collapse"
        headline = f"Collapse detected: {share} of the samples are one identity (sample {report['worst_mode']['sample_index']})"
    else:
        status = "pass"
        headline = "No significant collapse detected"
    if status in ("collapse", "pass"):
        held = "" if not gates else ("; the release gate holds" if len(gates) == 1 else f"; all {len(gates)} release gates hold")
        headline += held if gates else " (no release gates were set)"
    return {"status": status, "headline": headline, "reasons": reasons, "collapse": bool(collapsed),
            "sizes_settled": settled}


def with_verdict(report: dict, neighbors: np.ndarray) -> dict:
    """``report`` with its ``verdict``, computed from everything else in it and the anchors'
    neighbour counts ``neighbors`` (the average anchor's share N_r / |C| is what a dense mode is
    compared with)."""
    out = {k: v for k, v in report.items() if k != "verdict"}
    n = out.get("n_samples", 0)
    typical = float(np.mean(neighbors) / n) if n and len(neighbors) else None
    out["verdict"] = verdict(dict(out, typical_fraction=typical))
    return out


def _anchor_vectors(run_dir: Path) -> dict:
    import pyarrow.parquet as pq

    table = pq.read_table(Path(run_dir) / "anchors.parquet", columns=["sample_index", "embedding"]).to_pydict()
    return {int(s): np.asarray(e, dtype=np.float32) for s, e in zip(table["sample_index"], table["embedding"])}


def _share_near(run_dir: Path, vector, radius: float) -> float | None:
    """Share of ``run_dir``'s collection within ``radius`` of ``vector`` (None without saved embeddings)."""
    import pyarrow.parquet as pq

    path = Path(run_dir) / "embeddings.parquet"
    if not path.is_file():
        return None
    vectors = np.asarray(pq.read_table(path, columns=["embedding"]).column("embedding").to_pylist(), dtype=np.float32)
    if vectors.shape[1] != len(vector):
        return None
    return float((pairwise_distance(vectors, vector[None, :])[:, 0] <= radius).mean()) if len(vectors) else None


def before_after(before_dir: str | Path, after_dir: str | Path, before: dict, after: dict) -> dict:
    """What changed from the run ``before`` to the run ``after`` (a calibrated re-audit), led by the
    modes the calibration targeted: ``targeted`` (each with its share before and after),
    ``worst_before``/``worst_after`` (the worst mode of each run, and whether the after run's is
    the same identity), ``headline`` and ``sentences`` in plain words."""
    calibration = None
    path = Path(after_dir) / "calibration.json"
    if path.is_file():
        calibration = json.loads(path.read_text())
    vb, va = _anchor_vectors(Path(before_dir)), _anchor_vectors(Path(after_dir))
    radius = float(calibration["r0"]) if calibration else float(before["radius"])
    if calibration:
        targeted = [{"sample_index": int(m["sample_index"]), "before": b, "after": a} for m, b, a in
                    zip(calibration["dense_modes"], calibration["before"]["dense_share_per_mode"], calibration["after"]["dense_share_per_mode"])]
        improved = bool(calibration.get("improved"))
    else:
        w = before["worst_mode"]
        vec = vb.get(int(w["sample_index"]))
        targeted = [{"sample_index": int(w["sample_index"]), "before": float(w["neighbor_fraction"]),
                     "after": _share_near(Path(after_dir), vec, radius) if vec is not None else None}]
        improved = targeted[0]["after"] is not None and targeted[0]["after"] < targeted[0]["before"]
    wb, wa = before["worst_mode"], after["worst_mode"]
    same = None
    vec_a = va.get(int(wa["sample_index"]))
    target_vecs = [vb[t["sample_index"]] for t in targeted if t["sample_index"] in vb]
    if vec_a is not None and target_vecs:
        same = bool((pairwise_distance(vec_a[None, :], np.stack(target_vecs))[0] <= radius).any())
    t0 = targeted[0]
    if t0["after"] is None:
        headline = "Calibration: the targeted mode's share after calibration was not measured (the after run saved no embeddings)"
    else:
        # several modes: their shares summed, as the proof's total excess counts them
        names = f"the targeted mode (sample {t0['sample_index']})" if len(targeted) == 1 else f"the {len(targeted)} targeted modes together"
        b, a = sum(t["before"] for t in targeted), sum(t["after"] for t in targeted)
        headline = (f"Calibration: {names} {'fell' if a < b else 'did not fall'} from {format_share(b)} to "
                    f"{format_share(a)} of the samples within r0 = {format_number(radius)}")
    sentences = []
    if same is False:
        sentences.append(f"The worst mode after calibration is another identity (sample {wa['sample_index']}, "
                         f"{format_share(wa['neighbor_fraction'])} within r), not a targeted one: the figures below describe that mode. "
                         f"Before, the worst mode held {format_share(wb['neighbor_fraction'])}.")
    elif same:
        sentences.append(f"The worst mode after calibration is still a targeted identity, now with {format_share(wa['neighbor_fraction'])} "
                         f"within r (before: {format_share(wb['neighbor_fraction'])}).")
    paired, total = (calibration or {}).get("paired"), (calibration or {}).get("total") or {}
    if paired and paired.get("excess_removed") is not None and total.get("excess_removed") is not None:
        interval = f" (95% interval {format_share(paired['low'])} to {format_share(paired['high'])})" if paired.get("low") is not None else ""
        sentences.append(f"The re-audit removed {format_share(total['excess_removed'])} of the excess over a typical identity's share; "
                         f"weighting the fresh plain draw's own samples by their keep probability, without the re-audit's sampling "
                         f"noise, gives {format_share(paired['excess_removed'])}{interval}.")
    if calibration and not improved:
        sentences.append("The drop is not significant: this calibrator does not help; try another --method, more --modes or a larger audit.")
    return {"targeted": targeted, "radius": radius, "improved": improved,
            "worst_before": {"sample_index": int(wb["sample_index"]), "share": float(wb["neighbor_fraction"])},
            "worst_after": {"sample_index": int(wa["sample_index"]), "share": float(wa["neighbor_fraction"]), "same_identity": same},
            "headline": headline, "sentences": sentences, "price_list": (calibration or {}).get("price_list"),
            "describe_share": ((calibration or {}).get("cost") or {}).get("describe_share")}
