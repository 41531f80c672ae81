"""Budget keys: the one table that validation, help text, the report and the docs read.

A budget is a mapping ``key -> limit``.  Each key has a unit, a direction (a
*max* limit is broken when the measured value is above it, a *min* limit when
it is below) and a domain (``positive``: a number > 0; ``fraction``: 0 <= value
<= 1, where 0 means "none allowed").  The measured value for a key is read
from a test's record dictionary by :func:`measured_value`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .reportdata import at, number
from .units import fmt_quantity

__all__ = [
    "BUDGET_KEYS",
    "GUIDE_ALIASES",
    "SCOPE_KEYS",
    "SCOPE_KINDS",
    "BudgetError",
    "BudgetKey",
    "ScopeKind",
    "Violation",
    "check_budget",
    "format_violations",
    "parse_budget_items",
    "validate_budget",
    "validate_scopes",
    "violation_label",
]


class BudgetError(ValueError):
    """A budget (marker or ini option) is malformed; the message says why."""


@dataclass(frozen=True)
class BudgetKey:
    name: str
    unit: str  # "s", "MiB", "tokens", "calls", "fraction", "req/s", "USD"
    direction: Literal["max", "min"]
    domain: Literal["positive", "fraction", "count"]
    description: str
    #: path into the test record dict where the measured value lives
    path: tuple[str, ...]
    #: path to the sample count shown in the failure message, if any
    count_path: tuple[str, ...] | None = None
    #: the value when the record has nothing at ``path`` because nothing happened
    #: (no LLM call: 0 calls, 0 USD); ``None``: nothing there means *not measured*,
    #: and the limit fails as unverifiable
    when_absent: float | None = None
    #: why the figure can be missing, for the "unverifiable" message
    missing_hint: str = ""


def _latency(q: str, text: str) -> BudgetKey:
    return BudgetKey(q, "s", "max", "positive", f"{text} of the test's latency samples",
                     ("latency", q), ("latency", "count"))


#: Every valid budget key, in display order: the one table that validation, help, the checks
#: and the docs read.
BUDGET_KEYS: dict[str, BudgetKey] = {
    k.name: k
    for k in (
        _latency("p50", "median"),
        _latency("p90", "90th percentile"),
        _latency("p95", "95th percentile"),
        _latency("p99", "99th percentile"),
        _latency("mean", "mean"),
        _latency("max", "maximum"),
        BudgetKey("memory_mb", "MiB", "max", "positive",
                  "peak memory the call phase added above where it started",
                  ("memory", "peak_mb"),
                  missing_hint="memory was not measured (--perf-memory=off, or the measurement "
                  "was lost, e.g. the test stopped tracemalloc)"),
        BudgetKey("tokens", "tokens", "max", "positive", "total tokens the test used",
                  ("tokens", "total")),
        BudgetKey("tokens_per_request", "tokens", "max", "positive",
                  "mean tokens per recorded operation", ("tokens", "per_request"),
                  ("tokens", "requests")),
        BudgetKey("error_rate", "fraction", "max", "fraction",
                  "fraction of load-test requests that failed or never finished",
                  ("load", "error_rate"), ("load", "total_requests"),
                  missing_hint="no load run completed a request (perf_load_tester)"),
        BudgetKey("throughput", "req/s", "min", "positive",
                  "lowest throughput of the test's load runs", ("load", "throughput_rps"),
                  ("load", "total_requests"),
                  missing_hint="no finished load run completed a request (perf_load_tester)"),
        BudgetKey("loop_block", "s", "max", "positive",
                  "longest single event-loop step (a blocking call in async code)",
                  ("loop_block", "max_block_s"), ("loop_block", "block_count"),
                  missing_hint="no asyncio event loop was watched (not an asyncio test, or a "
                  "loop the detector cannot see: trio, uvloop)"),
        BudgetKey("leak_mb", "MiB", "max", "positive",
                  "memory still held after the test body returns and garbage is collected",
                  ("leak", "retained_mb"),
                  missing_hint="the leak check did not judge this test"),
        BudgetKey("n_plus_one", "findings", "max", "count",
                  "N+1 patterns among the profiler's operations (0: any one fails)",
                  ("findings_count", "n_plus_one"), when_absent=0.0),
        BudgetKey("llm_calls", "calls", "max", "positive",
                  "LLM calls captured from the SDKs and GenAI spans", ("llm", "calls"),
                  when_absent=0.0),
        BudgetKey("ttft_p95", "s", "max", "positive",
                  "95th percentile of time to first token of streamed LLM calls",
                  ("llm", "ttft_p95_s"), ("llm", "streamed_calls")),
        BudgetKey("cost_usd", "USD", "max", "positive",
                  "cost of the LLM calls from the perf_llm_prices table",
                  ("llm", "cost", "usd"), ("llm", "calls"), when_absent=0.0),
    )
}

#: Names from the guide's ``PERFORMANCE_BUDGETS`` accepted in the ini option.
GUIDE_ALIASES: dict[str, str] = {
    "api_response_time_p95": "p95",
    "memory_per_request": "memory_mb",
}


def _valid_keys() -> str:
    return ", ".join(BUDGET_KEYS)


def _check_value(key: BudgetKey, value: object, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BudgetError(
            f"{source}: {key.name}={value!r} is not a number "
            f"(expected {key.unit}, e.g. {key.name}=1.0)"
        )
    try:
        limit = float(value)
    except OverflowError:
        raise BudgetError(
            f"{source}: {key.name}={_short(value)} is too large to be a limit "
            f"(expected a finite number, unit {key.unit})"
        ) from None
    if math.isnan(limit) or math.isinf(limit):
        raise BudgetError(f"{source}: {key.name}={value!r} must be a finite number")
    if key.domain == "count":
        if limit < 0 or limit != int(limit):
            raise BudgetError(
                f"{source}: {key.name}={value!r} must be a whole number >= 0 "
                "(0 means none allowed)"
            )
    elif key.domain == "fraction":
        if not 0.0 <= limit <= 1.0:
            raise BudgetError(
                f"{source}: {key.name}={value!r} must be a fraction between 0 and 1 "
                "(0 means none allowed)"
            )
    elif limit <= 0:
        raise BudgetError(f"{source}: {key.name}={value!r} must be a number > 0 ({key.unit})")
    return limit


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} digits)"


def validate_budget(
    limits: Mapping[str, object], source: str, args: tuple[object, ...] = ()
) -> dict[str, float]:
    """Check one budget mapping and return it with float values.

    ``source`` names where it came from (e.g. ``"@pytest.mark.perf_budget"``)
    and starts every error message.
    """
    if args:
        raise BudgetError(
            f"{source}: positional arguments {args!r} are not accepted; write keyword "
            f"limits, e.g. perf_budget(p95=0.5). Valid keys: {_valid_keys()}"
        )
    out: dict[str, float] = {}
    for name, value in limits.items():
        key = BUDGET_KEYS.get(name)
        if key is None:
            raise BudgetError(
                f"{source}: unknown budget key {name!r} (value {value!r}). "
                f"Valid keys: {_valid_keys()}"
            )
        out[name] = _check_value(key, value, source)
    return out


def parse_budget_items(items: Iterable[str], source: str) -> dict[str, float]:
    """Parse ``key=value`` words (the ini option) into a validated budget."""
    raw: dict[str, object] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise BudgetError(f"{source}: expected key=value, got {item!r}")
        name = GUIDE_ALIASES.get(name, name)
        try:
            raw[name] = float(text)
        except ValueError:
            raw[name] = text.strip()
    return validate_budget(raw, source)


@dataclass(frozen=True)
class Violation:
    metric: str
    value: float | None
    limit: float
    unit: str
    count: int | None
    note: str = ""
    #: the scoped budget this limit belongs to (``"agent:planner"``), ``None`` for the test's
    scope: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"metric": self.metric, "value": self.value, "limit": self.limit,
               "unit": self.unit, "count": self.count, "note": self.note or None}
        if self.scope is not None:
            out["scope"] = self.scope
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Violation:
        """The violation of a report entry (``KeyError``/``TypeError`` when malformed)."""
        scope = data.get("scope")
        return cls(str(data["metric"]), data.get("value"), float(data["limit"]),
                   str(data.get("unit") or ""), data.get("count"), data.get("note") or "",
                   None if scope is None else str(scope))

    def describe(self) -> str:
        key = BUDGET_KEYS.get(self.metric) or SCOPE_KEYS.get(self.metric)
        op = "<" if key is not None and key.direction == "min" else ">"
        if self.value is None:
            value, limit = "unknown", fmt_quantity(self.limit, self.unit)
        else:
            value, limit = _distinct(self.value, self.limit, self.unit)
        text = f"{violation_label(self.as_dict())} {value} {op} {limit}"
        if self.count is not None:
            text += f" (n={self.count})"
        if self.note:
            text += f" [{self.note}]"
        return text


def _distinct(value: float, limit: float, unit: str) -> tuple[str, str]:
    """Value and limit with enough significant digits to tell them apart."""
    if not math.isfinite(value):
        return str(value), fmt_quantity(limit, unit)
    for digits in range(3, 10):
        a = fmt_quantity(value, unit, digits)
        b = fmt_quantity(limit, unit, digits)
        if a != b:
            break
    return a, b


def measured_value(record: Mapping[str, Any], key: BudgetKey) -> Any:
    return at(record, *key.path)


def _unknown_note(record: Mapping[str, Any], name: str) -> str | None:
    """Why the value of ``name`` cannot be trusted to be within its limit, if so."""
    uncaptured = at(record, "llm", "uncaptured_paths")
    if uncaptured and name in ("tokens", "tokens_per_request", "llm_calls", "cost_usd"):
        return ("LLM API requests the capture did not see as calls: "
                + ", ".join(f"{n}x POST {p}" for p, n in uncaptured.items()))
    if name in ("tokens", "tokens_per_request"):
        unknown = at(record, "tokens", "unknown_calls") or 0
        if unknown:
            streams = at(record, "llm", "unknown_usage_streams") or 0
            why = (" (streams without stream_options={'include_usage': True})"
                   if streams == unknown else "")
            return f"{unknown} LLM calls reported no usage{why}; the total is a lower bound"
    elif name == "n_plus_one":
        check = at(record, "n_plus_one_check")
        if isinstance(check, Mapping) and check.get("checked") is False:
            return str(check.get("reason") or "N+1 was not judged")
    elif name == "memory_mb":
        memory = at(record, "memory")
        if isinstance(memory, Mapping) and memory.get("peak_mb") is None and memory.get("note"):
            return str(memory["note"])
    elif name == "ttft_p95":
        if at(record, "llm", "ttft_p95_s") is None:
            return "no streamed LLM call measured a time to first token"
    elif name == "cost_usd":
        if at(record, "llm") is None:
            return None  # no LLM call: nothing was spent
        cost = at(record, "llm", "cost")
        if cost is None:
            return "no price table: set the perf_llm_prices ini option"
        if not cost.get("complete", False):
            parts = []
            if cost.get("unpriced_models"):
                parts.append("unpriced models " + ", ".join(cost["unpriced_models"]))
            if cost.get("unknown_usage_calls"):
                parts.append(f"{cost['unknown_usage_calls']} calls without usage")
            return "cost is a lower bound: " + "; ".join(parts)
    return None


def check_budget(
    budget: Mapping[str, float], record: Mapping[str, Any],
    optional: Iterable[str] = (),
) -> list[Violation]:
    """Every limit of ``budget`` that ``record`` breaks, in table order.

    The rule: a budget never passes on a figure the plugin did not see.  A
    limit whose figure is missing (nothing measured it), unknown, non-numeric
    or non-finite (NaN, inf) fails as *unverifiable*, saying what is missing;
    so does a figure that is only a lower bound (tokens of calls without usage,
    unpriced models).  Keys whose absence means "nothing happened"
    (``when_absent``: no LLM call is 0 calls) read that value instead.
    ``optional`` keys (the ini option's defaults, meant for every test) are
    skipped when the test has no figure for them at all.
    """
    skip_absent = set(optional)
    out: list[Violation] = []
    for name in BUDGET_KEYS:
        if name not in budget:
            continue
        key = BUDGET_KEYS[name]
        limit = budget[name]
        raw = measured_value(record, key)
        count = at(record, *key.count_path) if key.count_path else None
        finite_count = number(count)
        n = int(finite_count) if finite_count is not None else None
        if raw is None and key.when_absent is not None and _nothing_happened(record, key):
            raw = key.when_absent
        if raw is None and name in skip_absent and at(record, *key.path[:1]) is None:
            continue
        value = number(raw)
        if value is None:
            out.append(Violation(name, None, limit, key.unit, n,
                                 "unverifiable: " + _missing(record, key, raw)))
            continue
        broken = value > limit if key.direction == "max" else value < limit
        if broken:
            out.append(Violation(name, value, limit, key.unit, n))
            continue
        note = _unknown_note(record, name)
        if note is not None:  # an unknown is never a silent pass
            out.append(Violation(name, value, limit, key.unit, n, "unverifiable: " + note))
    return out


def _nothing_happened(record: Mapping[str, Any], key: BudgetKey) -> bool:
    """The record has no section for ``key`` at all, or the section has no entry for it."""
    return (at(record, *key.path[:1]) is None
            or isinstance(at(record, *key.path[:-1]), Mapping))


def _missing(record: Mapping[str, Any], key: BudgetKey, raw: Any) -> str:
    if raw is not None:
        return f"{'/'.join(key.path)} is {raw!r}, not a finite number"
    note = _unknown_note(record, key.name)
    if note is not None:
        return note
    return f"{'/'.join(key.path)} missing: {key.missing_hint or 'not measured'}"


def format_violations(violations: Iterable[Violation]) -> str:
    return "perf budget exceeded: " + "; ".join(v.describe() for v in violations)


def describe_keys() -> str:
    """One line per key, for ``--help`` and the markers line."""
    return "; ".join(
        f"{k.name} ({k.direction} {k.unit})" for k in BUDGET_KEYS.values()
    )


# -- scoped budgets: limits on a part of the test ------------------------------------------
#: keys that exist only inside a scope (a tool's count of runs)
SCOPE_KEYS: dict[str, BudgetKey] = {
    k.name: k
    for k in (
        BudgetKey("calls", "calls", "max", "positive", "times the profiler operation ran",
                  ("calls",)),
    )
}

_LATENCY_KEYS = ("p50", "p90", "p95", "p99", "mean", "max")


@dataclass(frozen=True)
class ScopeKind:
    """One kind of scope (``agent:``, ``tool:``, ``model:``): what its pattern is matched
    against and what each of its budget keys measures."""

    name: str
    matches: str
    #: budget key -> what it measures for a scope of this kind
    keys: Mapping[str, str]

    def key(self, name: str) -> BudgetKey:
        return BUDGET_KEYS.get(name) or SCOPE_KEYS[name]


def _latency_texts(of: str) -> dict[str, str]:
    return {q: f"{BUDGET_KEYS[q].description.split(' of ')[0]} of {of}" for q in _LATENCY_KEYS}


#: Every scope kind and the keys it takes.  ``scopes={"KIND:PATTERN": {key: limit}}`` in
#: ``perf_budget``; PATTERN is an fnmatch glob (``*``, ``?``, ``[...]``), case-sensitive.
SCOPE_KINDS: dict[str, ScopeKind] = {
    s.name: s
    for s in (
        ScopeKind(
            "agent",
            "agent names: agent_scope(name), framework agent spans, invoke_agent spans",
            {**_latency_texts("the agent's LLM call latencies"),
             "llm_calls": "LLM calls the agent made",
             "tokens": "tokens of the agent's LLM calls",
             "cost_usd": "cost of the agent's LLM calls"},
        ),
        ScopeKind(
            "tool",
            "profiler operations: 'agent:operation', or the operation alone when the "
            "pattern has no ':'",
            {**_latency_texts("the operation's durations"),
             "calls": "times the operation ran",
             "tokens": "tokens recorded in the operation"},
        ),
        ScopeKind(
            "model",
            "requested model names of LLM calls",
            {**_latency_texts("the model's LLM call latencies"),
             "llm_calls": "LLM calls to the model",
             "tokens": "tokens of the model's LLM calls",
             "cost_usd": "cost of the model's LLM calls"},
        ),
    )
}


def violation_label(violation: Mapping[str, Any]) -> str:
    """``"p95"`` or, for a scoped budget, ``"agent:planner p95"``."""
    scope = violation.get("scope")
    metric = str(violation.get("metric"))
    return metric if not scope else f"{scope} {metric}"


def validate_scopes(scopes: object, source: str) -> dict[str, dict[str, float]]:
    """Check ``scopes={"KIND:PATTERN": {key: limit}}`` and return it with float values."""
    kinds = ", ".join(SCOPE_KINDS)
    if not isinstance(scopes, Mapping):
        raise BudgetError(
            f"{source}: scopes={_short(scopes)} must be a dict of 'KIND:PATTERN' -> "
            f"{{key: limit}}, e.g. scopes={{'agent:planner': {{'p95': 2.0}}}} (kinds: {kinds})"
        )
    out: dict[str, dict[str, float]] = {}
    for name, limits in scopes.items():
        if not isinstance(name, str):
            raise BudgetError(f"{source}: scope name {name!r} must be a 'KIND:PATTERN' string")
        kind_name, sep, pattern = name.partition(":")
        kind = SCOPE_KINDS.get(kind_name)
        if not sep or kind is None:
            raise BudgetError(
                f"{source}: scope {name!r}: unknown kind {kind_name!r}; write KIND:PATTERN "
                f"with a kind of {kinds} (e.g. 'agent:planner', 'tool:search*')"
            )
        if not pattern.strip():
            raise BudgetError(f"{source}: scope {name!r} has no name pattern after '{kind_name}:'")
        where = f"{source}: scope {name!r}"
        if not isinstance(limits, Mapping) or not limits:
            raise BudgetError(
                f"{where}: {_short(limits)} must be a non-empty dict of limits, e.g. "
                f"{{'p95': 2.0}} (keys: {', '.join(kind.keys)})"
            )
        checked: dict[str, float] = {}
        for key_name, value in limits.items():
            if key_name not in kind.keys:
                hint = ""
                if kind.name == "tool" and key_name == "llm_calls":
                    hint = " (a tool's runs are counted by 'calls')"
                elif kind.name != "tool" and key_name == "calls":
                    hint = " (LLM calls are counted by 'llm_calls')"
                raise BudgetError(
                    f"{where}: unknown key {key_name!r} for {kind.name} scopes{hint} "
                    f"(value {value!r}). Valid keys: {', '.join(kind.keys)}"
                )
            checked[key_name] = _check_value(kind.key(key_name), value, where)
        out[name] = checked
    return out


def describe_scopes() -> str:
    """The scope kinds and their keys, for the markers line and ``--help``."""
    return "; ".join(f"{k.name}:PATTERN ({', '.join(k.keys)})" for k in SCOPE_KINDS.values())
