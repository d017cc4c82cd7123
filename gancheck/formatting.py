"""One formatting rule for every number a person reads (terminal, HTML, plots, messages).

- counts: whole numbers with thousands separators (``12,345``);
- shares of a whole (a fraction in [0, 1]): percentages with three significant digits (``2.60%``);
- every other figure (MCCS, theta, r, distances, scores, changes): three significant digits
  (``0.412``, ``0.131``, ``-0.000548``), scientific notation only below 1e-4 or from 1e6;
- p-values of Monte Carlo tests: three significant digits, ``p = 0.04``, or ``p <= 0.001`` at the
  test's floor 1/(sims + 1).

``None`` reads ``n/a``; an infinite figure (the reference MCCS form at m = 1) reads ``inf``.
"""

from __future__ import annotations

import math

#: significant digits of every figure a person reads
DIGITS = 3


def _finite_or_word(x):
    if x is None:
        return "n/a"
    x = float(x)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return None


def format_number(x, digits: int = DIGITS) -> str:
    """A figure with ``digits`` significant digits; whole numbers (ints) as counts."""
    word = _finite_or_word(x)
    if word is not None:
        return word
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int) or (hasattr(x, "dtype") and getattr(x.dtype, "kind", "") in "iu"):
        return format_count(x)
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) < 1e-4 or abs(x) >= 1e6:
        return f"{x:.{digits - 1}e}"
    text = f"{x:#.{digits}g}"
    if "e" in text:  # from 10**digits up: 1,235 rather than 1.23e+03
        return f"{x:,.0f}"
    return text.rstrip(".")


def format_count(x) -> str:
    """A count: ``12,345``."""
    word = _finite_or_word(x)
    return word if word is not None else f"{int(x):,}"


def format_share(x, digits: int = DIGITS) -> str:
    """A share in [0, 1] as a percentage with ``digits`` significant digits: ``2.60%``."""
    word = _finite_or_word(x)
    if word is not None:
        return word
    pct = 100.0 * float(x)
    if pct == 0:
        return "0%"
    if abs(pct) < 1e-4:
        return f"{pct:.{digits - 1}e}%"
    text = f"{pct:#.{digits}g}"
    return (f"{pct:,.0f}" if "e" in text else text.rstrip(".")) + "%"


def format_change(x, share: bool = False, digits: int = DIGITS) -> str:
    """A signed difference, ``+0.0123`` or (``share``) in percentage points, ``-2.33 pp``."""
    word = _finite_or_word(x)
    if word is not None:
        return word
    sign = "+" if float(x) > 0 else ("-" if float(x) < 0 else "\u00b1")
    if share:
        return f"{sign}{format_share(abs(float(x)), digits)[:-1]} pp"
    return f"{sign}{format_number(abs(float(x)), digits)}"


def format_interval(low, high, share: bool = False, level: float = 0.95) -> str:
    """``95% CI 2.09% to 3.23%`` (shares) or ``95% CI 0.401 to 0.423``; empty when unknown."""
    if low is None or high is None:
        return ""
    fmt = format_share if share else format_number
    return f"{100 * level:.0f}% CI {fmt(low)} to {fmt(high)}"


def format_p(p: float, sims: int) -> str:
    """``p = 0.04``, or ``p \u2264 0.001`` at the Monte Carlo floor 1/(sims + 1)."""
    floor = 1.0 / (sims + 1)
    return f"p \u2264 {floor:.{DIGITS}g}" if p <= floor + 1e-12 else f"p = {p:.{DIGITS}g}"


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units, three significant digits: ``8.00 MiB``, ``87.3 TiB``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{format_number(n)} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} PiB"


def format_duration(seconds: float) -> str:
    """A duration for people: ``45 s``, ``12 min``, ``3.5 h``, ``2.1 days``, ``31,700 years``."""
    seconds = float(seconds)
    for limit, size, unit in ((90, 1, "s"), (90 * 60, 60, "min"), (48 * 3600, 3600, "h"), (730 * 86400, 86400, "days")):
        if seconds < limit:
            return f"{format_number(seconds / size, 2)} {unit}"
    return f"{format_number(seconds / (365.25 * 86400), 3)} years"
