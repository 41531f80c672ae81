"""The one formatter for measured figures shown to people: durations, sizes, counts.

Significant digits, not fixed decimals: ``0.0004 s`` prints as ``400 µs``, never
``0.000 s``.  Every report format (terminal, budget and regression messages, HTML,
Markdown, the CLI's tables) formats through here.  Pure functions, no pytest.
"""

from __future__ import annotations

import math

__all__ = ["fmt_change", "fmt_p", "fmt_quantity", "fmt_seconds", "fmt_value", "sig"]


def sig(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, without an exponent where sensible."""
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.{digits}g}"
    if "e" in text:
        exponent = int(text.split("e")[1])
        if -7 < exponent < 16:
            decimals = max(0, digits - 1 - exponent)
            text = f"{value:.{decimals}f}"
            if "." in text:
                text = text.rstrip("0").rstrip(".")
    return text


def fmt_seconds(value: float, digits: int = 3) -> str:
    """``0.0123`` -> ``12.3 ms``, ``0.0004`` -> ``400 µs``, ``2.5`` -> ``2.5 s``."""
    a = abs(value)
    if a == 0 or not math.isfinite(value):
        return f"{value:g} s"
    if a < 1e-6:
        return f"{sig(value * 1e9, digits)} ns"
    if a < 1e-3:
        return f"{sig(value * 1e6, digits)} µs"
    if a < 1:
        return f"{sig(value * 1e3, digits)} ms"
    return f"{sig(value, digits)} s"


def fmt_quantity(value: float, unit: str, digits: int = 3) -> str:
    """A figure with its unit: seconds scaled, the rest with ``digits`` significant digits."""
    if unit == "s":
        return fmt_seconds(value, digits)
    if unit == "fraction":
        return sig(value, digits)
    return f"{sig(value, digits)} {unit}"


def fmt_value(value: object, unit: str, digits: int = 3) -> str:
    """:func:`fmt_quantity` for a figure read from a report: ``-`` when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return fmt_quantity(float(value), unit, digits)


def fmt_change(change: object) -> str:
    """A relative change: ``0.123`` -> ``+12.3%``; not a number -> ``n/a``."""
    if isinstance(change, bool) or not isinstance(change, (int, float)):
        return "n/a"
    return f"{change * 100:+.1f}%"


def fmt_p(p: float) -> str:
    """A p-value: two significant digits, an exponent below 1e-4."""
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"
