"""Readers for report dicts: the one place that knows how a loaded report is untrusted.

A report comes from JSON that another version, a hook or a person may have written, so
every reader of a figure checks what it gets: a number is a finite ``int``/``float`` (never
a ``bool``), a missing or malformed one is ``None``, never 0.  Budgets, the comparison,
merge, history, JUnit, the exports and the HTML page all read through these.  Pure
functions, no pytest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["as_dict", "as_list", "at", "finite", "finite_at", "number", "number_at", "samples"]


def finite(value: object) -> int | float | None:
    """``value`` when it is a finite ``int`` or ``float`` (type kept), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def number(value: object) -> float | None:
    """``value`` as a finite ``float``, or ``None`` (missing, not a number, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:  # an int too big for a float
        return None
    return f if math.isfinite(f) else None


def at(node: object, *path: str) -> Any:
    """The value at ``path`` in nested mappings (``at(test, "latency", "p95")``), or ``None``
    when a step is missing or not a mapping."""
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def finite_at(node: object, *path: str) -> int | float | None:
    """:func:`finite` of the value at ``path`` (a history column: counts stay ``int``)."""
    return finite(at(node, *path))


def number_at(node: object, *path: str) -> float | None:
    """:func:`number` of the value at ``path``."""
    return number(at(node, *path))


def samples(value: object) -> list[float]:
    """The finite numbers of a list (a report's raw ``samples``); ``[]`` for anything else."""
    if not isinstance(value, list):
        return []
    return [f for f in map(number, value) if f is not None]


def as_dict(value: object) -> dict[str, Any]:
    """``value`` when it is a dict, else ``{}``."""
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    """``value`` when it is a list, else ``[]``."""
    return value if isinstance(value, list) else []
