"""Aggregation of LLM calls into the ``tokens`` and ``llm`` report sections.

:class:`LLMStats` folds calls one at a time (thread-safe, bounded memory: per-model and
per-agent counters plus bounded :class:`~pytest_agentperf.stats.SampleSet` latencies), so it
can be the capture's sink directly.  :func:`aggregate_calls` is the same fold as a pure
function of a list of calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..stats import SampleSet
from .calls import LLMCall

__all__ = ["LLMOperationSamples", "LLMStats", "Pricer", "aggregate_calls", "operation_samples"]

#: USD of one call whose usage is known, ``None`` when its model has no price
Pricer = Callable[[LLMCall], "float | None"]


@dataclass
class LLMOperationSamples:
    """Latency and time-to-first-token samples of the calls to one model (``llm:<model>``)."""

    latency: SampleSet = field(default_factory=SampleSet)
    ttft: SampleSet = field(default_factory=SampleSet)


#: a call's price: USD, ``None`` (its model is unpriced) or ``_UNKNOWN`` (its usage is)
_UNKNOWN = "unknown usage"
_Price = float | str | None


@dataclass
class _Counter:
    calls: int = 0
    prompt: int = 0
    completion: int = 0
    total: int = 0
    cached: int = 0
    unknown_calls: int = 0
    usd: float = 0.0
    #: model -> calls without a price
    unpriced: dict[str, int] = field(default_factory=dict)
    #: the latencies of these calls (per agent; per model they live in the operations)
    latency: SampleSet | None = None

    def add(self, call: LLMCall, price: _Price) -> None:
        self.calls += 1
        self.prompt += call.prompt_tokens or 0
        self.completion += call.completion_tokens or 0
        self.total += call.total_tokens or 0
        self.cached += call.cached_tokens or 0
        if call.total_tokens is None:
            self.unknown_calls += 1
        self._cost(call, price, 1)
        if self.latency is not None:
            self.latency.add(call.latency_s)

    def _cost(self, call: LLMCall, price: _Price, sign: int) -> None:
        if isinstance(price, float):
            self.usd += sign * price
        elif price is None:
            left = self.unpriced.get(call.model, 0) + sign
            if left > 0:
                self.unpriced[call.model] = left
            else:
                self.unpriced.pop(call.model, None)

    def swap(self, old: LLMCall, new: LLMCall, prices: tuple[_Price, _Price]) -> None:
        """Replace the token counts of ``old`` by those of ``new`` (the same call)."""
        self.prompt += (new.prompt_tokens or 0) - (old.prompt_tokens or 0)
        self.completion += (new.completion_tokens or 0) - (old.completion_tokens or 0)
        self.total += (new.total_tokens or 0) - (old.total_tokens or 0)
        self.cached += (new.cached_tokens or 0) - (old.cached_tokens or 0)
        self.unknown_calls += (new.total_tokens is None) - (old.total_tokens is None)
        self._cost(old, prices[0], -1)
        self._cost(new, prices[1], 1)

    def cost_section(self) -> dict[str, Any]:
        unpriced = sorted(self.unpriced)
        return {
            "usd": self.usd,
            "complete": not unpriced and self.unknown_calls == 0,
            "unpriced_models": unpriced,
            "unknown_usage_calls": self.unknown_calls,
        }

    def section(self, priced: bool = False, samples: SampleSet | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "calls": self.calls,
            "prompt": self.prompt,
            "completion": self.completion,
            "total": self.total,
            "unknown_calls": self.unknown_calls,
        }
        if priced:
            out["cost"] = self.cost_section()
        latency = samples if samples is not None else self.latency
        if latency is not None and len(latency):
            out["latency"] = latency.summary()
            out["samples"] = latency.reservoir
        return out


class LLMStats:
    """Running aggregate of captured LLM calls; ``add`` (or calling it) records one call.

    Thread-safe: calls arrive from every thread and task of the test.
    """

    def __init__(self, pricer: Pricer | None = None, *, split: bool = True) -> None:
        #: prices each call (``perf_llm_prices``); ``None``: no cost is reported
        self.pricer = pricer
        #: unbudgeted calls go to :attr:`unbudgeted` (False: this is that store)
        self._split = split
        self._lock = threading.Lock()
        self._all = _Counter()
        #: the calls made inside ``agent_scope(..., budgeted=False)``, kept apart
        self._unbudgeted: LLMStats | None = None
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

    def _price(self, call: LLMCall) -> _Price:
        if self.pricer is None or call.total_tokens is None:
            return _UNKNOWN
        return self.pricer(call)

    def _apart(self, call: LLMCall) -> LLMStats | None:
        """The stats of unbudgeted calls, when ``call`` is one (made on first use)."""
        if call.budgeted or not self._split:
            return None
        with self._lock:
            if self._unbudgeted is None:
                self._unbudgeted = LLMStats(self.pricer, split=False)
            return self._unbudgeted

    @property
    def unbudgeted(self) -> LLMStats | None:
        """The calls made inside ``agent_scope(..., budgeted=False)``, if any."""
        return self._unbudgeted

    def add(self, call: LLMCall) -> None:
        """Record one call (a call with ``replaces`` corrects the counts of an earlier one)."""
        old = call.replaces
        apart = self._apart(old if old is not None else call)
        if apart is not None:
            apart.add(call)
            return
        if old is not None:
            prices = (self._price(old), self._price(call))
            with self._lock:
                self._swap(old, call, prices)
            return
        price = self._price(call)
        with self._lock:
            self._all.add(call, price)
            if call.cached_tokens is not None:
                self._cached = (self._cached or 0) + call.cached_tokens
            if call.reasoning_tokens is not None:
                self._reasoning = (self._reasoning or 0) + call.reasoning_tokens
            self._retries += call.retries or 0
            if call.error is not None:
                self._errors += 1
            if call.streamed:
                self._streamed += 1
                if call.total_tokens is None:
                    self._unknown_streams += 1
            self._per_model.setdefault(call.model, _Counter()).add(call, price)
            if call.agent is not None:
                agent = self._per_agent.get(call.agent)
                if agent is None:
                    agent = self._per_agent[call.agent] = _Counter(latency=SampleSet())
                agent.add(call, price)
            ops = self._ops.get(call.model)
            if ops is None:
                ops = self._ops[call.model] = LLMOperationSamples()
            ops.latency.add(call.latency_s)
            if call.ttft_s is not None:
                ops.ttft.add(call.ttft_s)
                self._ttft.add(call.ttft_s)

    __call__ = add

    def _swap(self, old: LLMCall, new: LLMCall, prices: tuple[_Price, _Price]) -> None:
        self._all.swap(old, new, prices)
        if old.streamed:
            self._unknown_streams += (new.total_tokens is None) - (old.total_tokens is None)
        for table, key in ((self._per_model, old.model), (self._per_agent, old.agent)):
            counter = table.get(key) if key is not None else None
            if counter is not None:
                counter.swap(old, new, prices)
        for name in ("cached", "reasoning"):
            before = getattr(old, f"{name}_tokens")
            after = getattr(new, f"{name}_tokens")
            if before != after:
                current = getattr(self, f"_{name}") or 0
                setattr(self, f"_{name}", current + (after or 0) - (before or 0))

    @property
    def calls(self) -> int:
        return self._all.calls

    @property
    def unknown_calls(self) -> int:
        """Calls whose token usage the provider did not report."""
        return self._all.unknown_calls

    def per_model_tokens(self) -> dict[str, tuple[int, int, int, int]]:
        """``model -> (prompt, cached, completion, unknown_calls)`` for cost estimates."""
        with self._lock:
            return {
                m: (c.prompt, c.cached, c.completion, c.unknown_calls)
                for m, c in self._per_model.items()
            }

    def ttft_p95_s(self) -> float | None:
        """p95 of the time to first token over streamed calls, ``None`` without any."""
        with self._lock:
            return self._ttft.percentile(95) if len(self._ttft) else None

    def operation_samples(self) -> dict[str, LLMOperationSamples]:
        """``{"llm:<model>": samples}`` for the plugin to add as operations (do not mutate)."""
        with self._lock:
            return {f"llm:{m}": s for m, s in self._ops.items()}

    def cost_section(self) -> dict[str, Any] | None:
        """``{usd, complete, unpriced_models, unknown_usage_calls}``; ``None`` unpriced."""
        if self.pricer is None:
            return None
        with self._lock:
            return self._all.cost_section()

    def unbudgeted_section(self) -> dict[str, Any]:
        """The ``llm.unbudgeted`` block: these calls' counts, tokens, latency and cost."""
        priced = self.pricer is not None
        with self._lock:
            latency = SampleSet()
            for ops in self._ops.values():
                latency.merge(ops.latency)
            out = self._all.section(priced, latency)
            out["tokens"] = {"total": out.pop("total"), "prompt": out.pop("prompt"),
                             "completion": out.pop("completion"), "cached": self._cached,
                             "reasoning": self._reasoning}
            out["per_model"] = {m: c.section(priced, self._ops[m].latency)
                                for m, c in sorted(self._per_model.items())}
            out["per_agent"] = {g: c.section(priced) for g, c in sorted(self._per_agent.items())}
            return out

    def report_section(self) -> dict[str, Any]:
        """``{"tokens": {...}, "llm": {...}}`` (keys: see :mod:`pytest_agentperf.llm`)."""
        ttft = self.ttft_p95_s()
        unbudgeted = self._unbudgeted
        apart = unbudgeted.unbudgeted_section() if unbudgeted is not None else None
        priced = self.pricer is not None
        with self._lock:
            a = self._all
            section: dict[str, Any] = {
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
                    "per_model": {m: c.section(priced, self._ops[m].latency)
                                  for m, c in sorted(self._per_model.items())},
                    "per_agent": {g: c.section(priced) for g, c in sorted(self._per_agent.items())},
                    "ttft_p95_s": ttft,
                    "unknown_usage_streams": self._unknown_streams,
                    "uncaptured_calls": self.uncaptured_calls,
                    "uncaptured_paths": dict(sorted(self._uncaptured.items())),
                },
            }
            if priced:
                section["llm"]["cost"] = a.cost_section()
        if apart is not None:
            section["llm"]["unbudgeted"] = apart
        return section


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
