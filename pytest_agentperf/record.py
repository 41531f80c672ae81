"""TestRecord: everything measured about one test, and its JSON form.

The plugin creates one record per measured test.  Fixtures and other plugins
add to it while the test runs; at the end of the call phase the plugin calls
the registered *collectors* (each pours its fixture's data into the record),
turns the record into a JSON-able dict and checks the budget against it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .measurement.memory import MemoryResult
from .stats import SampleSet, summarize

if TYPE_CHECKING:
    from .llm.limits import LimitScope

__all__ = ["TestRecord"]

Collector = Callable[["TestRecord"], None]


class TestRecord:
    """Measurements of one test.  Thread-safe for the ``add_*`` methods."""

    __test__ = False  # not a pytest test class

    def __init__(self, nodeid: str, budget: dict[str, float] | None = None) -> None:
        self.nodeid = nodeid
        self.budget = budget
        #: scoped budgets, ``{"agent:planner": {"p95": 2.0}}`` (``perf_budget(scopes=...)``)
        self.scopes: dict[str, dict[str, float]] = {}
        self.call_duration_s: float | None = None
        self.cpu_time_s: float | None = None
        self.memory: MemoryResult | None = None
        self.latency = SampleSet()
        self.latency_sources: list[str] = []
        #: why the test has no latency of its own when it records no sample (its LLM
        #: calls were replayed from a cassette: the call's duration is not the model's)
        self.latency_unmeasured: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.total_tokens = 0
        self.token_requests = 0
        self.tokens_unknown = 0
        self.tokens_cached: int | None = None
        self.tokens_reasoning: int | None = None
        self.operations: dict[str, dict[str, Any]] = {}
        #: named report sections added by fixtures and plugins ("cache", "load", …)
        self.sections: dict[str, Any] = {}
        self.findings: list[dict[str, Any]] = []
        self.violations: list[dict[str, Any]] = []
        #: metric -> extra text for its failure message (e.g. the culprit's stack)
        self.violation_details: dict[str, str] = {}
        self._collectors: list[Collector] = []
        self._lock = threading.Lock()
        #: ``(model, prompt, cached, completion) -> USD`` for ``limit(cost_usd=...)``
        self.llm_pricer: Callable[[str, int, int, int], float | None] | None = None
        self._limit_scopes: list[LimitScope] = []

    # -- adding data ------------------------------------------------------------
    def add_collector(self, collector: Collector) -> None:
        """Run ``collector(record)`` when the call phase ends (before budgets)."""
        self._collectors.append(collector)

    def run_collectors(self) -> None:
        collectors, self._collectors = self._collectors, []
        for collector in collectors:
            collector(self)

    def add_tokens(
        self, total: int | None = None, *, prompt: int = 0, completion: int = 0,
        requests: int = 0,
    ) -> None:
        """Count tokens toward the test's total.

        ``total`` defaults to ``prompt + completion``.  ``requests`` is how many
        requests these tokens belong to (for ``tokens_per_request``).  Every
        figure must be a finite number >= 0: a NaN would make a budget pass.
        """
        for name, value in (("total", total), ("prompt", prompt),
                            ("completion", completion), ("requests", requests)):
            if value is not None:
                _check_figure("add_tokens", name, value, "tokens")
        with self._lock:
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            self.total_tokens += prompt + completion if total is None else total
            self.token_requests += requests

    def add_token_details(
        self, *, unknown_calls: int = 0, cached: int | None = None, reasoning: int | None = None
    ) -> None:
        """Calls whose usage is unknown, and cached/reasoning tokens where reported."""
        with self._lock:
            self.tokens_unknown += unknown_calls
            if cached is not None:
                self.tokens_cached = (self.tokens_cached or 0) + cached
            if reasoning is not None:
                self.tokens_reasoning = (self.tokens_reasoning or 0) + reasoning

    def add_latency(self, seconds: float, source: str = "custom") -> None:
        """Add one latency sample (seconds, finite, >= 0) to the test's budgeted latency."""
        _check_figure("add_latency", "seconds", seconds, "seconds")
        with self._lock:
            self.latency.add(seconds)
            if source not in self.latency_sources:
                self.latency_sources.append(source)

    def add_latency_samples(self, samples: SampleSet, source: str) -> None:
        """Fold a whole sample set into the test's latency."""
        with self._lock:
            self.latency.merge(samples)
            if source not in self.latency_sources:
                self.latency_sources.append(source)

    def add_operation(self, key: str, data: dict[str, Any]) -> None:
        """Report one ``agent:operation`` entry (count, total_s, p95_s, tokens, …)."""
        with self._lock:
            self.operations[key] = data

    def add_finding(self, kind: str, message: str, **details: Any) -> None:
        with self._lock:
            self.findings.append({"kind": kind, "message": message, **details})

    def limit(
        self, *, llm_calls: float | None = None, tokens: float | None = None,
        cost_usd: float | None = None,
    ) -> LimitScope:
        """Hard limits on the LLM calls made inside a ``with`` / ``async with`` block.

        A call past ``llm_calls``, or made when the block's tokens or cost already reached
        their limit, is refused before it is sent with
        :class:`~pytest_agentperf.BudgetExceeded`, raised in the caller's thread or task;
        a stream stops when its usage crosses ``tokens`` or ``cost_usd``.  Only calls made
        inside the block count; blocks nest (every enclosing limit applies).  The block
        follows asyncio tasks created in it, not plain threads.
        """
        from .llm.limits import limit_scope

        given = {k: v for k, v in (("llm_calls", llm_calls), ("tokens", tokens),
                                   ("cost_usd", cost_usd)) if v is not None}
        scope = limit_scope("perf_record.limit", self.llm_pricer, **given)
        with self._lock:
            first = not self._limit_scopes
            self._limit_scopes.append(scope)
        if first:
            self.add_collector(_limit_findings)
        return scope

    # -- JSON -------------------------------------------------------------------
    def latency_summary(self) -> dict[str, Any]:
        if len(self.latency) == 0 and self.latency_unmeasured is not None:
            summary = summarize(())
            summary["source"] = "none"
            summary["samples"] = []
            summary["note"] = self.latency_unmeasured
            return summary
        if len(self.latency) == 0 and self.call_duration_s is not None:
            summary = summarize((self.call_duration_s,))
            summary["exact"] = True
            summary["source"] = "call"
            summary["samples"] = [self.call_duration_s]
            return summary
        summary = self.latency.summary()
        summary["source"] = "+".join(self.latency_sources) or "none"
        summary["samples"] = self.latency.reservoir
        return summary

    def tokens_summary(self) -> dict[str, Any]:
        requests = self.token_requests or 1
        return {
            "total": self.total_tokens,
            "prompt": self.prompt_tokens,
            "completion": self.completion_tokens,
            "requests": requests,
            "per_request": self.total_tokens / requests,
            "unknown_calls": self.tokens_unknown,
            "cached": self.tokens_cached,
            "reasoning": self.tokens_reasoning,
        }

    def findings_count(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding["kind"]] = counts.get(finding["kind"], 0) + 1
        return counts

    def to_dict(self, latency: bool = True) -> dict[str, Any]:
        """The measured part of the test's report entry (no outcome yet); ``latency=False``
        leaves the latency summary out (one run of ``perf_runs``: its samples are pooled
        separately)."""
        out = {
            "nodeid": self.nodeid,
            "duration_s": self.call_duration_s,
            "cpu_time_s": self.cpu_time_s,
            "budget": self.budget,
            "latency": self.latency_summary() if latency else None,
            "memory": self.memory.as_dict() if self.memory is not None else None,
            "tokens": self.tokens_summary(),
            "operations": self.operations,
            "violations": self.violations,
            "findings": self.findings,
            "findings_count": self.findings_count(),
            **self.sections,
        }
        if not latency:
            del out["latency"]
        return out


def _limit_findings(record: TestRecord) -> None:
    """Every ``limit`` block that refused a call or stopped a stream is a finding."""
    for scope in record._limit_scopes:
        exc = scope.exceeded
        if exc is not None:
            record.add_finding("hard_limit", exc.describe(), budget=exc.budget,
                               limit=exc.limit, used=exc.used, scope=scope.section())


def _check_figure(call: str, name: str, value: object, unit: str) -> None:
    """Refuse a figure a budget could not be checked against, naming the call."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and value >= 0)
    if not ok:
        raise ValueError(
            f"perf_record.{call}({name}={value!r}): {name} must be a finite number of "
            f"{unit} >= 0"
        )
