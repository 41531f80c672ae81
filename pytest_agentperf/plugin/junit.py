"""A measured test's figures as JUnit XML ``<properties>`` (through ``user_properties``).

With ``--junitxml``, CI test tabs (GitHub, GitLab, Jenkins) show each measured
test's latency p50/p95, peak memory, tokens, cost and broken budget limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from ..budgets import Violation, format_violations, violation_label
from ..reportdata import number

__all__ = ["add_properties"]

PREFIX = "agentperf"




def properties(entry: Mapping[str, Any]) -> list[tuple[str, object]]:
    """``(name, value)`` pairs for one measured test's entry; unknown figures left out."""
    out: list[tuple[str, object]] = []
    latency = entry.get("latency") or {}
    for key in ("p50", "p95"):
        value = number(latency.get(key))
        if value is not None:
            out.append((f"{PREFIX}.latency_{key}_s", f"{value:.6g}"))
    if number(latency.get("count")) is not None:
        out.append((f"{PREFIX}.latency_samples", int(latency["count"])))
    memory = entry.get("memory") or {}
    peak = number(memory.get("peak_mb"))
    if peak is not None:
        out.append((f"{PREFIX}.peak_memory_mb", f"{peak:.3f}"))
    tokens = number((entry.get("tokens") or {}).get("total"))
    if tokens:
        out.append((f"{PREFIX}.tokens", int(tokens)))
    cost = ((entry.get("llm") or {}).get("cost") or {}).get("usd")
    if number(cost) is not None:
        out.append((f"{PREFIX}.cost_usd", f"{cost:.6g}"))
    violations = entry.get("violations") or []
    out.append((f"{PREFIX}.budget_violations", len(violations)))
    if violations:
        out.append((f"{PREFIX}.violations", _describe(violations)))
    return out


def _describe(violations: list[Mapping[str, Any]]) -> str:
    try:
        return format_violations(Violation.from_dict(v) for v in violations)
    except (KeyError, TypeError, ValueError):
        return "; ".join(violation_label(v) for v in violations)


def add_properties(item: pytest.Item, rep: pytest.TestReport, entry: Mapping[str, Any]) -> None:
    """Add the entry's properties to the item (so the teardown report, which junitxml
    reads, carries them) and to the call report."""
    pairs = properties(entry)
    item.user_properties.extend(pairs)
    rep.user_properties.extend(pairs)
