"""The plain-language verdict of an audit, computed once from its report figures."""

from __future__ import annotations

from gancheck.numbers import format_p, format_share

#: Monte Carlo simulations of the Ripley test when the report does not say.
N_SIMS = 999


def verdict(report: dict) -> tuple[str, str, list[str]]:
    """Plain-language verdict: (level, headline, sentences); level is pass, warn or fail."""
    gates = report.get("gates") or []
    failed = [g for g in gates if g["failed"]]
    w = report["worst_mode"]
    sp = report.get("spatial", {})
    p = sp.get("p_value")
    lines = []
    share = w["neighbor_fraction"]
    ci = (w.get("neighbor_fraction_ci_low"), w.get("neighbor_fraction_ci_high"))
    ci_text = f" (95% CI {format_share(ci[0])} to {format_share(ci[1])})" if ci[0] is not None else ""
    typical = report.get("_typical_fraction")
    ratio = f", {share / typical:,.0f} times the average anchor's share ({format_share(typical)})" if typical else ""
    lines.append(f"The worst-case dense mode (sample {w['sample_index']}) has {format_share(share)} of all {report['n_samples']:,} samples within r = {report['radius']:.3g}{ci_text}{ratio}.")
    collapsed = p is not None and p < 0.01
    if p is not None:
        if collapsed:
            lines.append(f"Ripley test: {format_p(p, sp.get('sims', N_SIMS))}; the worst mode is significantly denser than a random anchor: the generator collapses onto this identity.")
        else:
            lines.append(f"Ripley test: {format_p(p, sp.get('sims', N_SIMS))}; no significant evidence that the worst mode is denser than a random anchor.")
    samp = report.get("sampling") or {}
    if samp.get("mccs_mean_change") is not None:
        change = max(samp["mccs_mean_change"], samp.get("worst_mccs_change") or 0)
        enough = "n looks sufficient" if change < 0.02 else "a larger --n would likely change them: treat the figures as provisional"
        lines.append(f"From |C| = {samp['from_n']:,} to {samp['to_n']:,} the MCCS figures moved by at most {100 * change:.1f}%: {enough}.")
    if gates:
        if failed:
            headline = f"FAIL: {len(failed)} of {len(gates)} release gates crossed ({', '.join(g['gate'] for g in failed)})"
            return "fail", headline, lines
        held = "the release gate holds" if len(gates) == 1 else f"all {len(gates)} release gates hold"
        return ("warn" if collapsed else "pass"), f"PASS: {held}" + (", but the generator collapses (see below)" if collapsed else ""), lines
    if collapsed:
        return "warn", "Collapse detected (no release gates were set)", lines
    return "pass", "No significant collapse detected (no release gates were set)", lines
