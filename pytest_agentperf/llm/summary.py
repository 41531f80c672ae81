"""Aggregation of LLM calls into the ``tokens`` and ``llm`` report sections.

:class:`LLMStats` folds calls one at a time (thread-safe, bounded memory: per-model and
per-agent counters plus bounded :class:`~pytest_agentperf.stats.SampleSet` latencies), so it
can be the capture's sink directly.  :func:`aggregate_calls` is the same fold as a pure
function of a list of calls.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..stats import SampleSet
from .calls import LLMCall

__all__ = ["LLMOperationSamples", "LLMStats", "Pricer", "aggregate_calls", "operation_samples"]

#: calls queued by :meth:`LLMStats.add` before they are folded in (bounds the queue)
_BATCH = 256

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


@dataclass(slots=True)
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
        total = call.total_tokens
        if total is None:
            self.unknown_calls += 1
        else:
            self.total += total
        self.prompt += call.prompt_tokens or 0
        self.completion += call.completion_tokens or 0
        self.cached += call.cached_tokens or 0
        if price is not _UNKNOWN:
            self._cost(call, price, 1)
        if self.latency is not None and not call.replayed:
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
        #: calls not folded in yet (:meth:`add`), and who folds them
        self._queue: deque[LLMCall] = deque()
        self._drain_lock = threading.Lock()
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
        self._replayed = 0

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
        self._drain()
        return self._unbudgeted

    def add(self, call: LLMCall) -> None:
        """Record one call (a call with ``replaces`` corrects the counts of an earlier one).

        The call is queued and folded in later, in the order calls came: when any figure is
        read (the plugin reads them after the test's call phase) or once ``_BATCH`` calls
        are waiting.  The caller -- the SDK call being captured -- pays for an append only.
        """
        queue = self._queue
        queue.append(call)
        if len(queue) >= _BATCH:
            self._drain()

    __call__ = add

    def _drain(self) -> None:
        """Fold the queued calls in, in order (one thread at a time)."""
        queue = self._queue
        if not queue:
            return
        with self._drain_lock:
            while queue:
                try:
                    call = queue.popleft()
                except IndexError:  # pragma: no cover - emptied meanwhile
                    break
                self._record(call)

    def _record(self, call: LLMCall) -> None:
        """Fold one call into the figures."""
        old = call.replaces
        if old is not None or (self._split and not call.budgeted):
            self._add_special(call, old)
            return
        total = call.total_tokens
        price = _UNKNOWN if total is None or self.pricer is None else self.pricer(call)
        model, agent, ttft = call.model, call.agent, call.ttft_s
        with self._lock:
            self._all.add(call, price)
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
                if total is None:
                    self._unknown_streams += 1
            counter = self._per_model.get(model)
            if counter is None:
                counter = self._per_model[model] = _Counter()
            counter.add(call, price)
            if agent is not None:
                counter = self._per_agent.get(agent)
                if counter is None:
                    counter = self._per_agent[agent] = _Counter(latency=SampleSet())
                counter.add(call, price)
            if call.replayed:  # the cassette's timing, not the model's: no latency sample
                self._replayed += 1
                return
            ops = self._ops.get(model)
            if ops is None:
                ops = self._ops[model] = LLMOperationSamples()
            ops.latency.add(call.latency_s)
            if ttft is not None:
                ops.ttft.add(ttft)
                self._ttft.add(ttft)

    def _add_special(self, call: LLMCall, old: LLMCall | None) -> None:
        """An unbudgeted call (kept apart) or a correction of an earlier call."""
        apart = self._apart(old if old is not None else call)
        if apart is not None:
            apart.add(call)
            return
        assert old is not None  # an unbudgeted call without ``replaces`` went apart
        prices = (self._price(old), self._price(call))
        with self._lock:
            self._swap(old, call, prices)

    __call__ = add

    def _latency_of(self, model: str) -> SampleSet:
        """The live calls' latencies of ``model`` (empty when all were replayed)."""
        ops = self._ops.get(model)
        return ops.latency if ops is not None else SampleSet()

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
        self._drain()
        return self._all.calls

    @property
    def replayed_calls(self) -> int:
        """Calls answered from a recorded cassette (their latency is not sampled)."""
        self._drain()
        return self._replayed

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

    def cost_section(self) -> dict[str, Any] | None:
        """``{usd, complete, unpriced_models, unknown_usage_calls}``; ``None`` unpriced."""
        self._drain()
        if self.pricer is None:
            return None
        with self._lock:
            return self._all.cost_section()

    def unbudgeted_section(self) -> dict[str, Any]:
        """The ``llm.unbudgeted`` block: these calls' counts, tokens, latency and cost."""
        self._drain()
        priced = self.pricer is not None
        with self._lock:
            latency = SampleSet()
            for ops in self._ops.values():
                latency.merge(ops.latency)
            out = self._all.section(priced, latency)
            out["tokens"] = {"total": out.pop("total"), "prompt": out.pop("prompt"),
                             "completion": out.pop("completion"), "cached": self._cached,
                             "reasoning": self._reasoning}
            out["per_model"] = {m: c.section(priced, self._latency_of(m))
                                for m, c in sorted(self._per_model.items())}
            out["per_agent"] = {g: c.section(priced) for g, c in sorted(self._per_agent.items())}
            return out

    def report_section(self) -> dict[str, Any]:
        """``{"tokens": {...}, "llm": {...}}`` (keys: see :mod:`pytest_agentperf.llm`)."""
        self._drain()
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
                    "per_model": {m: c.section(priced, self._latency_of(m))
                                  for m, c in sorted(self._per_model.items())},
                    "per_agent": {g: c.section(priced) for g, c in sorted(self._per_agent.items())},
                    "ttft_p95_s": ttft,
                    "unknown_usage_streams": self._unknown_streams,
                    "replayed_calls": self._replayed,
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
