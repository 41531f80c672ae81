"""Aggregation of LLM calls into the ``tokens`` and ``llm`` report sections.

:class:`LLMStats` folds calls one at a time (thread-safe, bounded memory: per-model and
per-agent counters plus bounded :class:`~pytest_agentperf.stats.SampleSet` latencies), so it
can be the capture's sink directly.  :func:`aggregate_calls` is the same fold as a pure
function of a list of calls.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..stats import SampleSet
from .calls import LLMCall

__all__ = ["LLMOperationSamples", "LLMStats", "aggregate_calls", "operation_samples"]

_BATCH = 256


@dataclass
class LLMOperationSamples:
    """Latency and time-to-first-token samples of the calls to one model (``llm:<model>``)."""

    latency: SampleSet = field(default_factory=SampleSet)
    ttft: SampleSet = field(default_factory=SampleSet)


@dataclass(slots=True)
class _Counter:
    calls: int = 0
    prompt: int = 0
    completion: int = 0
    total: int = 0
    cached: int = 0
    unknown_calls: int = 0

    def add(self, call: LLMCall) -> None:
        self.calls += 1
        total = call.total_tokens
        if total is None:
            self.unknown_calls += 1
        else:
            self.total += total
        self.prompt += call.prompt_tokens or 0
        self.completion += call.completion_tokens or 0
        self.cached += call.cached_tokens or 0

    def swap(self, old: LLMCall, new: LLMCall) -> None:
        """Replace the token counts of ``old`` by those of ``new`` (the same call)."""
        self.prompt += (new.prompt_tokens or 0) - (old.prompt_tokens or 0)
        self.completion += (new.completion_tokens or 0) - (old.completion_tokens or 0)
        self.total += (new.total_tokens or 0) - (old.total_tokens or 0)
        self.cached += (new.cached_tokens or 0) - (old.cached_tokens or 0)
        self.unknown_calls += (new.total_tokens is None) - (old.total_tokens is None)

    def section(self) -> dict[str, int]:
        return {
            "calls": self.calls,
            "prompt": self.prompt,
            "completion": self.completion,
            "total": self.total,
            "unknown_calls": self.unknown_calls,
        }


class LLMStats:
    """Running aggregate of captured LLM calls; ``add`` (or calling it) records one call.

    Thread-safe: calls arrive from every thread and task of the test.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all = _Counter()
        self._cached: int | None = None
        self._reasoning: int | None = None
        self._retries = 0
        self._errors = 0
        self._streamed = 0
        self._per_model: dict[str, _Counter] = {}
        self._per_agent: dict[str, _Counter] = {}
        self._ops: dict[str, LLMOperationSamples] = {}
        self._ttft = SampleSet()
        self._uncaptured: dict[str, int] = {}
        self._unknown_streams = 0
        #: calls not folded in yet (bounded: folded every ``_BATCH`` calls)
        self._queue: deque[LLMCall] = deque()

    def add_uncaptured(self, path: str) -> None:
        """Record an LLM API request (its URL path) that no captured call accounts for."""
        with self._lock:
            if path in self._uncaptured or len(self._uncaptured) < 20:
                self._uncaptured[path] = self._uncaptured.get(path, 0) + 1
            else:
                self._uncaptured["(other paths)"] = self._uncaptured.get("(other paths)", 0) + 1

    @property
    def uncaptured_calls(self) -> int:
        return sum(self._uncaptured.values())

    def add(self, call: LLMCall) -> None:
        """Record one call (a call with ``replaces`` corrects the counts of an earlier one).

        The call is queued and folded in later, in order, by batches (and whenever a figure
        is read): the test that makes the call pays for an append only.
        """
        queue = self._queue
        queue.append(call)
        if len(queue) >= _BATCH:
            self._drain()

    __call__ = add

    def _drain(self) -> None:
        """Fold the queued calls in (in the order they came)."""
        queue = self._queue
        if not queue:
            return
        with self._lock:
            while queue:
                try:
                    call = queue.popleft()
                except IndexError:  # emptied by a thread that was folding too
                    break
                if call.replaces is not None:
                    self._swap(call.replaces, call)
                else:
                    self._fold(call)

    def _fold(self, call: LLMCall) -> None:
        """Count one call (under the lock)."""
        model, agent, ttft = call.model, call.agent, call.ttft_s
        self._all.add(call)
        if call.cached_tokens is not None:
            self._cached = (self._cached or 0) + call.cached_tokens
        if call.reasoning_tokens is not None:
            self._reasoning = (self._reasoning or 0) + call.reasoning_tokens
        if call.retries:
            self._retries += call.retries
        if call.error is not None:
            self._errors += 1
        if call.streamed:
            self._streamed += 1
            if call.total_tokens is None:
                self._unknown_streams += 1
        counter = self._per_model.get(model)
        if counter is None:
            counter = self._per_model[model] = _Counter()
        counter.add(call)
        if agent is not None:
            counter = self._per_agent.get(agent)
            if counter is None:
                counter = self._per_agent[agent] = _Counter()
            counter.add(call)
        ops = self._ops.get(model)
        if ops is None:
            ops = self._ops[model] = LLMOperationSamples()
        ops.latency.add(call.latency_s)
        if ttft is not None:
            ops.ttft.add(ttft)
            self._ttft.add(ttft)

    def _swap(self, old: LLMCall, new: LLMCall) -> None:
        self._all.swap(old, new)
        if old.streamed:
            self._unknown_streams += (new.total_tokens is None) - (old.total_tokens is None)
        for table, key in ((self._per_model, old.model), (self._per_agent, old.agent)):
            counter = table.get(key) if key is not None else None
            if counter is not None:
                counter.swap(old, new)
        for name in ("cached", "reasoning"):
            before = getattr(old, f"{name}_tokens")
            after = getattr(new, f"{name}_tokens")
            if before != after:
                current = getattr(self, f"_{name}") or 0
                setattr(self, f"_{name}", current + (after or 0) - (before or 0))

    @property
    def calls(self) -> int:
        self._drain()
        return self._all.calls

    @property
    def unknown_calls(self) -> int:
        """Calls whose token usage the provider did not report."""
        self._drain()
        return self._all.unknown_calls

    def per_model_tokens(self) -> dict[str, tuple[int, int, int, int]]:
        """``model -> (prompt, cached, completion, unknown_calls)`` for cost estimates."""
        self._drain()
        with self._lock:
            return {
                m: (c.prompt, c.cached, c.completion, c.unknown_calls)
                for m, c in self._per_model.items()
            }

    def ttft_p95_s(self) -> float | None:
        """p95 of the time to first token over streamed calls, ``None`` without any."""
        self._drain()
        with self._lock:
            return self._ttft.percentile(95) if len(self._ttft) else None

    def operation_samples(self) -> dict[str, LLMOperationSamples]:
        """``{"llm:<model>": samples}`` for the plugin to add as operations (do not mutate)."""
        self._drain()
        with self._lock:
            return {f"llm:{m}": s for m, s in self._ops.items()}

    def report_section(self) -> dict[str, Any]:
        """``{"tokens": {...}, "llm": {...}}`` (keys: see :mod:`pytest_agentperf.llm`)."""
        ttft = self.ttft_p95_s()
        with self._lock:
            a = self._all
            return {
                "tokens": {
                    "total": a.total,
                    "prompt": a.prompt,
                    "completion": a.completion,
                    "cached": self._cached,
                    "reasoning": self._reasoning,
                    "unknown_calls": a.unknown_calls,
                },
                "llm": {
                    "calls": a.calls,
                    "streamed_calls": self._streamed,
                    "retries": self._retries,
                    "errors": self._errors,
                    "per_model": {m: c.section() for m, c in sorted(self._per_model.items())},
                    "per_agent": {g: c.section() for g, c in sorted(self._per_agent.items())},
                    "ttft_p95_s": ttft,
                    "unknown_usage_streams": self._unknown_streams,
                    "uncaptured_calls": self.uncaptured_calls,
                    "uncaptured_paths": dict(sorted(self._uncaptured.items())),
                },
            }


def aggregate_calls(calls: Iterable[LLMCall]) -> dict[str, Any]:
    """The ``tokens`` and ``llm`` report sections of ``calls`` (pure)."""
    stats = LLMStats()
    for call in calls:
        stats.add(call)
    return stats.report_section()


def operation_samples(calls: Iterable[LLMCall]) -> dict[str, LLMOperationSamples]:
    """Per-model ``llm:<model>`` latency and ttft samples of ``calls`` (pure)."""
    stats = LLMStats()
    for call in calls:
        stats.add(call)
    return stats.operation_samples()
