"""The LLM probe: one per test session, measuring each test's LLM calls.

Like the memory and diagnostics probes it is started before a test's call phase and
stopped after it (:meth:`LLMProbe.start`, :meth:`LLMProbe.stop`), and ``stop`` writes what
it saw into the test's :class:`~pytest_agentperf.record.TestRecord`: tokens, the ``llm``
report section (calls, cost) and one ``llm:<model>`` operation per model.

Nothing is patched up front: :meth:`LLMProbe.install` registers post-import hooks, and the
capture (:class:`~pytest_agentperf.llm.capture.LLMCapture`) is created the first time an
SDK, an HTTP client or OpenTelemetry finishes importing, possibly in the middle of a test,
whose calls are then routed to it at once.  Importing this module imports no SDK.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .frameworks import FrameworkHooks
from .import_hook import PostImportHooks

if TYPE_CHECKING:
    from types import ModuleType

    from ..record import TestRecord
    from .calls import LLMCall
    from .capture import LLMCapture
    from .cost import ModelPrice
    from .limits import LimitScope
    from .summary import LLMStats, Pricer

__all__ = ["LLM_MODULES", "LLMProbe"]

#: modules whose import switches the LLM capture on (patched the moment they are imported)
LLM_MODULES = ("openai", "anthropic", "opentelemetry.trace", "httpx", "httpx2", "aiohttp")
#: raw samples of each ``llm:<model>`` operation kept in the report
OPERATION_SAMPLES = 200


class LLMProbe:
    """Captures the LLM calls of the running test (one test at a time per process)."""

    def __init__(self, prices: Mapping[str, ModelPrice] | None = None,
                 pricer: Pricer | None = None) -> None:
        #: model -> price, from the ``perf_llm_prices`` ini option (``{}``: no cost)
        self.prices = dict(prices or {})
        #: prices each call: ``pricer`` (``auto``: genai-prices, the table first) or the table
        self.pricer = pricer
        if pricer is None and self.prices:
            from .cost import TablePricer

            self.pricer = TablePricer(self.prices)
        #: the capture, created once an SDK or OpenTelemetry has been imported
        self.capture: LLMCapture | None = None
        #: the running test's sink (routing for a capture created during the test)
        self._sink: _LazyStats | None = None
        #: hard limits for the next test's calls (``perf_budget(enforce="hard")``), set
        #: before :meth:`start`
        self.limits: LimitScope | None = None
        self._lock = threading.Lock()
        self._imports = PostImportHooks()
        self._frameworks = FrameworkHooks()

    # -- session lifetime ------------------------------------------------------------------
    def install(self) -> None:
        """Watch imports: SDKs are patched, and frameworks name their agents, once imported."""
        self._imports.install()
        for name in LLM_MODULES:
            self._imports.register(name, self._on_import)
        for name, hook in self._frameworks.hooks():  # llm/frameworks.py
            self._imports.register(name, hook)

    def uninstall(self) -> None:
        self._imports.uninstall()
        self._frameworks.close()
        if self.capture is not None:
            self.capture.uninstall()

    def _on_import(self, module: ModuleType) -> None:
        """An SDK, HTTP client or OpenTelemetry finished importing: capture it from now on.

        Runs in whatever thread imported it, possibly in the middle of a test: the capture
        is created on the first such import and routed to the running test at once.
        """
        with self._lock:
            if self.capture is None:
                from .capture import LLMCapture

                self.capture = LLMCapture()
            self.capture.ensure_installed()
            sink = self._sink
            if sink is not None and not self.capture.active:
                self.capture.start(sink, sink.uncaptured, sink.limits)

    # -- per test --------------------------------------------------------------------------
    def start(self) -> None:
        """Route the calls made from now on to a fresh, empty sink."""
        sink = _LazyStats(self.pricer)
        sink.limits = self.limits
        with self._lock:
            self._sink = sink
            if self.capture is not None:
                self.capture.ensure_installed()  # a no-op unless a module escaped the hooks
                self.capture.start(sink, sink.uncaptured, sink.limits)

    @property
    def called(self) -> bool:
        """The running test has made LLM calls (so far)."""
        sink = self._sink
        return sink is not None and sink.stats is not None

    def stop(self, record: TestRecord | None, failed: bool = False) -> None:
        """Stop capturing; add the test's calls to ``record`` (``None``: drop them)."""
        self.limits = None
        with self._lock:
            sink, self._sink = self._sink, None
            if self.capture is not None:  # maybe created by an import during the test
                self.capture.stop()
        stats = sink.stats if sink is not None else None
        if record is not None and stats is not None:
            self._add(record, stats)

    def _add(self, record: TestRecord, stats: LLMStats) -> None:
        section = stats.report_section()
        tokens, llm = section["tokens"], section["llm"]
        record.add_tokens(tokens["total"], prompt=tokens["prompt"],
                          completion=tokens["completion"], requests=llm["calls"])
        record.add_token_details(unknown_calls=tokens["unknown_calls"],
                                 cached=tokens["cached"], reasoning=tokens["reasoning"])
        source = getattr(stats.pricer, "source", None)
        if source is not None:  # which prices: the gate compares cost only under the same
            for where in (llm, llm.get("unbudgeted") or {}):
                if "cost" in where:
                    where["cost"]["prices"] = source
        record.sections["llm"] = llm
        replayed = llm.get("replayed_calls", 0)
        if replayed and replayed == llm["calls"]:
            record.latency_unmeasured = (
                f"not measurable: all {replayed} LLM calls were replayed from a cassette "
                "(their latency is the cassette's, not the model's)")
        per_model = llm["per_model"]
        for key, samples in stats.operation_samples().items():
            summary = samples.latency.summary()
            model = key.removeprefix("llm:")
            record.add_operation(key, {
                "count": summary["count"],
                "total_s": samples.latency.total,
                "mean_s": summary["mean"],
                "p50_s": summary["p50"],
                "p95_s": summary["p95"],
                "max_s": summary["max"],
                "tokens": per_model.get(model, {}).get("total", 0),
                "ttft_p95_s": samples.ttft.percentile(95) if len(samples.ttft) else None,
                "samples": samples.latency.reservoir[:OPERATION_SAMPLES],
            })
            record.add_latency_samples(samples.latency, "llm")


class _LazyStats:
    """The capture's sink for one test: an ``LLMStats`` made at the first call only."""

    __slots__ = ("_lock", "limits", "pricer", "stats")

    def __init__(self, pricer: Pricer | None = None) -> None:
        self.stats: LLMStats | None = None
        self.pricer = pricer
        self._lock = threading.Lock()
        #: the test's hard limits, routed with the sink (also to a capture made mid-test)
        self.limits: LimitScope | None = None

    def _get(self) -> LLMStats:
        stats = self.stats
        if stats is None:
            with self._lock:
                stats = self.stats
                if stats is None:
                    from .summary import LLMStats

                    stats = self.stats = LLMStats(self.pricer)
        return stats

    def __call__(self, call: LLMCall) -> None:
        stats = self.stats  # made once: every call after the first goes straight through
        if stats is None:
            stats = self._get()
        stats.add(call)

    def uncaptured(self, path: str) -> None:
        """An LLM API request that no captured call accounts for (seen at the HTTP layer)."""
        self._get().add_uncaptured(path)
