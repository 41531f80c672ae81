"""The terminal summary section: one line per measured test."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..budgets import violation_label
from ..units import fmt_value

__all__ = ["safe_text", "summary_lines"]

# C0 controls (ESC starts ANSI/OSC sequences), DEL and C1 controls; tab and newline
# are kept in multi-line text
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_LINE = re.compile("[\x00-\x1f\x7f-\x9f]")

#: rows shown before the rest is cut (violations are always shown)
MAX_ROWS = 30
#: findings listed before the rest is cut
MAX_FINDINGS = 10


def safe_text(text: Any, newlines: bool = True) -> str:
    """``text`` with control characters written as escapes (``\\x1b``), as pytest
    escapes test ids: operation names and finding messages come from user code
    and must not clear the screen or set the terminal title."""
    pattern = _CONTROL if newlines else _CONTROL_LINE
    return pattern.sub(lambda m: repr(m.group())[1:-1], str(text))




def _row(entry: dict[str, Any], width: int) -> tuple[str, bool]:
    latency = entry.get("latency") or {}
    memory = entry.get("memory") or {}
    tokens = entry.get("tokens") or {}
    violations = entry.get("violations") or []
    peak = memory.get("peak_mb")
    verdict = "over budget" if violations else entry.get("outcome", "?")
    if violations:
        verdict += ": " + ", ".join(violation_label(v) for v in violations)
    p95 = f"{fmt_value(latency.get('p95'), 's')} (n={latency.get('count', 0)})"
    text = (
        f"{entry['nodeid']:<{width}}  p95 {p95:<16}"
        f"  peak {fmt_value(peak, 'MiB'):>9}"
        f"  tokens {tokens.get('total', 0):>7}  {verdict}"
    )
    return safe_text(text, newlines=False), bool(violations)


def summary_lines(entries: Sequence[dict[str, Any]], verbosity: int = 0) -> list[tuple[str, bool]]:
    """``(text, is_violation)`` rows; under ``-q`` only violations and a count."""
    bad = [e for e in entries if e.get("violations")]
    good = [e for e in entries if not e.get("violations")]
    width = min(72, max((len(e["nodeid"]) for e in entries), default=0))
    rows = [_row(e, width) for e in bad]
    if verbosity >= 0:
        limit = None if verbosity > 0 else max(0, MAX_ROWS - len(rows))
        shown = good if limit is None else good[:limit]
        rows.extend(_row(e, width) for e in shown)
        if len(shown) < len(good):
            rows.append((f"... {len(good) - len(shown)} more within budget (-v shows all)", False))
    else:
        rows.append((f"{len(good)} within budget, {len(bad)} over budget", bool(bad)))
    findings = [(e["nodeid"], f) for e in entries for f in e.get("findings") or ()]
    if findings:
        rows.append((f"findings ({len(findings)}):", False))
        for nodeid, finding in findings[:MAX_FINDINGS]:
            text = f"  {nodeid}: [{finding['kind']}] {finding['message']}"
            rows.append((safe_text(text, newlines=False), False))
        if len(findings) > MAX_FINDINGS:
            rows.append((f"  ... {len(findings) - MAX_FINDINGS} more in the report", False))
    return rows
