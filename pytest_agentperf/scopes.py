"""Scoped budgets: limits on one agent, profiler operation (tool) or model of a test.

``perf_budget(scopes={"agent:planner": {"p95": 2.0}, "tool:search*": {"calls": 5}})``.
The kinds and the keys each takes live in the budget table (:data:`~.budgets.SCOPE_KINDS`);
this module reads each scope's figures from a test's report entry and judges them, so a
pooled entry (``perf_runs``) or a saved report is judged the same way:

* ``agent:PATTERN`` -- ``llm.per_agent`` (and ``llm.unbudgeted.per_agent``: naming an
  evaluator in a scope budgets it on its own); latency keys are over the agent's LLM calls.
* ``tool:PATTERN`` -- the profiler operations (``operations``, not the ``llm:`` ones);
  a pattern without ``:`` is matched against the operation part of ``agent:operation``.
* ``model:PATTERN`` -- ``llm.per_model`` (budgeted calls only).

A pattern that matches nothing makes every limit of its scope *unverifiable*: never a
silent pass on a name that was mistyped or never seen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from .budgets import SCOPE_KINDS, Violation
from .stats import percentile

__all__ = ["check_scopes", "scope_figures"]

_LATENCY = ("p50", "p90", "p95", "p99", "mean", "max")
_PERCENTILE = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _map(node: Any, *path: str) -> Mapping[str, Any]:
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


class _Part:
    """One matched agent, model or operation, in one shape."""

    def __init__(self, name: str, data: Mapping[str, Any], kind: str) -> None:
        self.name = name
        if kind == "tool":
            self.count = int(_num(data.get("count")) or 0)
            self.calls = self.count
            self.tokens: float | None = _num(data.get("tokens")) or 0.0
            self.unknown = 0
            self.summary = {"p50": data.get("p50_s"), "p95": data.get("p95_s"),
                            "mean": data.get("mean_s"), "max": data.get("max_s")}
            self.cost: Mapping[str, Any] | None = None
        else:
            self.calls = int(_num(data.get("calls")) or 0)
            self.tokens = _num(data.get("total"))
            self.unknown = int(_num(data.get("unknown_calls")) or 0)
            latency = _map(data, "latency")
            self.count = int(_num(latency.get("count")) or 0)
            self.summary = dict(latency)
            cost = data.get("cost")
            self.cost = cost if isinstance(cost, Mapping) else None
        samples = data.get("samples")
        self.samples = [float(v) for v in samples if _num(v) is not None] if isinstance(
            samples, list) else []


def _parts(entry: Mapping[str, Any], kind: str, pattern: str) -> tuple[list[_Part], list[str]]:
    """The parts the pattern matches, and every name that was there to match."""
    sources: list[Mapping[str, Any]]
    if kind == "agent":
        sources = [_map(entry, "llm", "per_agent"), _map(entry, "llm", "unbudgeted", "per_agent")]
    elif kind == "model":
        sources = [_map(entry, "llm", "per_model")]
    else:
        sources = [{k: v for k, v in _map(entry, "operations").items()
                    if not str(k).startswith("llm:")}]
    seen: list[str] = []
    out: list[_Part] = []
    for source in sources:
        for name, data in source.items():
            name = str(name)
            if name not in seen:
                seen.append(name)
            target = name
            if kind == "tool" and ":" not in pattern:
                target = name.partition(":")[2] or name
            if isinstance(data, Mapping) and fnmatchcase(target, pattern):
                out.append(_Part(name, data, kind))
    return out, seen


def _latency(parts: list[_Part], key: str) -> tuple[float | None, bool]:
    """(value, exact) of a latency key over the parts' samples."""
    count = sum(p.count for p in parts)
    if count == 0:
        return None, True
    if key == "mean":
        means = [(_num(p.summary.get("mean")), p.count) for p in parts]
        if all(m is not None for m, _ in means):
            return math.fsum(m * n for m, n in means if m is not None) / count, True
    if key == "max":
        highs = [_num(p.summary.get("max")) for p in parts]
        if all(h is not None for h in highs):
            return max(h for h in highs if h is not None), True
    if len(parts) == 1 and _num(parts[0].summary.get(key)) is not None:
        exact = parts[0].summary.get("exact", True) is not False
        return _num(parts[0].summary.get(key)), exact
    pooled = sorted(v for p in parts for v in p.samples)
    if not pooled:
        return None, True
    exact = len(pooled) == count
    if key == "mean":
        return math.fsum(pooled) / len(pooled), exact
    if key == "max":
        return pooled[-1], exact
    return percentile(pooled, _PERCENTILE[key]), exact


def scope_figures(entry: Mapping[str, Any], name: str,
                  limits: Mapping[str, float]) -> dict[str, Any]:
    """What the scope ``name`` (``"agent:planner"``) measured in ``entry``: its report block
    ``{kind, pattern, matched, limits, measured, count, exact, notes}``."""
    kind, _, pattern = name.partition(":")
    parts, seen = _parts(entry, kind, pattern)
    measured: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    exact = True
    if not parts:
        label = {"agent": "agent", "tool": "profiler operation", "model": "model"}[kind]
        if seen:
            why = f"{name} matched no {label} (seen: {', '.join(seen[:10])})"
        elif kind == "agent":
            why = (f"{name} matched no agent: no LLM call was attributed to an agent "
                   "(agent_scope, a framework's agent spans, invoke_agent spans)")
        elif kind == "tool":
            why = f"{name} matched no profiler operation: the test profiled none"
        else:
            why = f"{name} matched no model: the test made no captured LLM call"
        for key in limits:
            measured[key] = None
            notes[key] = why
    for key in limits if parts else ():
        if key in _LATENCY:
            value, key_exact = _latency(parts, key)
            exact = exact and key_exact
            measured[key] = value
            if value is None:
                notes[key] = f"{name}: no latency samples"
        elif key in ("calls", "llm_calls"):
            measured[key] = float(sum(p.calls for p in parts))
        elif key == "tokens":
            tokens = [p.tokens for p in parts]
            measured[key] = (math.fsum(t for t in tokens if t is not None)
                             if all(t is not None for t in tokens) else None)
            unknown = sum(p.unknown for p in parts)
            if unknown:
                notes[key] = (f"{unknown} LLM calls of {name} reported no usage; "
                              "the total is a lower bound")
        elif key == "cost_usd":
            costs = [p.cost for p in parts]
            if any(c is None for c in costs):
                measured[key] = None
                notes[key] = "no price table: set the perf_llm_prices ini option"
                continue
            usd = [_num(c.get("usd")) for c in costs if c is not None]
            measured[key] = math.fsum(u for u in usd if u is not None)
            unpriced = sorted({str(m) for c in costs if c is not None
                               for m in c.get("unpriced_models") or ()})
            unknown = sum(int(_num(c.get("unknown_usage_calls")) or 0)
                          for c in costs if c is not None)
            if unpriced or unknown:
                gaps: list[str] = []
                if unpriced:
                    gaps.append("unpriced models " + ", ".join(unpriced))
                if unknown:
                    gaps.append(f"{unknown} calls without usage")
                notes[key] = "cost is a lower bound: " + "; ".join(gaps)
    return {
        "kind": kind,
        "pattern": pattern,
        "matched": list(dict.fromkeys(p.name for p in parts)),
        "limits": dict(limits),
        "measured": measured,
        "count": sum(p.count for p in parts),
        "exact": exact,
        "notes": {k: v for k, v in notes.items() if v},
    }


def check_scopes(
    scopes: Mapping[str, Mapping[str, float]], entry: Mapping[str, Any],
) -> tuple[dict[str, dict[str, Any]], list[Violation]]:
    """Each scope's report block and every limit broken, in the order given.

    A limit whose figure is missing (the pattern matched nothing, no samples, no prices) or
    only a lower bound fails as *unverifiable*, like the test's own budget.
    """
    blocks: dict[str, dict[str, Any]] = {}
    out: list[Violation] = []
    for name, limits in scopes.items():
        kind = SCOPE_KINDS[name.partition(":")[0]]
        block = scope_figures(entry, name, limits)
        blocks[name] = block
        for key, limit in limits.items():
            budget_key = kind.key(key)
            value = block["measured"].get(key)
            count = block["count"] if key in _LATENCY else None
            note = block["notes"].get(key)
            if value is None:
                out.append(Violation(key, None, limit, budget_key.unit, count,
                                     "unverifiable: " + (note or "not measured"), name))
                continue
            broken = value > limit if budget_key.direction == "max" else value < limit
            if broken:
                out.append(Violation(key, value, limit, budget_key.unit, count, "", name))
            elif note:
                out.append(Violation(key, value, limit, budget_key.unit, count,
                                     "unverifiable: " + note, name))
        block["violations"] = [v.metric for v in out if v.scope == name]
    return blocks, out
