"""One formatting rule for every number a person reads (terminal, HTML, messages)."""

from __future__ import annotations


def format_p(p: float, sims: int) -> str:
    """``p = 0.04``, or ``p \u2264 0.001`` at the Monte Carlo floor 1/(sims + 1)."""
    floor = 1.0 / (sims + 1)
    return f"p \u2264 {floor:.3g}" if p <= floor + 1e-12 else f"p = {p:.3g}"


def format_share(x) -> str:
    """A share in [0, 1] as a percentage with three significant digits."""
    return "n/a" if x is None else (f"{100 * x:.3g}%" if x >= 1e-4 else f"{100 * x:.2e}%")
