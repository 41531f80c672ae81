"""The capture controller: installs the SDK patches and routes calls to the active sink."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from ._pending import PendingCall
from .anthropic_capture import AnthropicAdapter
from .calls import CallSink
from .http_net import HTTPNet
from .limits import LimitScope
from .openai_capture import OpenAIAdapter
from .otel import GenAISpanProcessor
from .replay import ReplayPatch
from .sdk_patch import SDKPatch, new_inflight_var

__all__ = ["LLMCapture"]


class LLMCapture:
    """Automatic capture of LLM calls from ``openai``, ``anthropic`` and GenAI spans.

    * :meth:`ensure_installed` patches whichever SDK (and ``httpx`` / ``httpx2`` /
      ``aiohttp``) is imported and not yet patched, and adds :attr:`span_processor` to the
      global OpenTelemetry SDK tracer provider, now and whenever
      ``opentelemetry.trace.set_tracer_provider`` sets another (``attach_global_otel=False``
      turns that off).  It never imports anything: call it as often as you like, e.g. from a
      post-import hook of each of those modules.
    * :meth:`start` routes calls to ``sink`` (process-wide: calls from every thread and task
      reach it) and, when given, the URL path of every LLM API request that no captured call
      accounts for to ``on_uncaptured`` (:mod:`.http_net`); :meth:`stop` stops routing.
      A call goes to the sink that was active when it *started*, so a stream read after
      :meth:`stop` still reaches the test that made it.
    * :meth:`uninstall` restores the SDKs' original methods and disables the span processor.

    One controller per process is the intended use; a second one stacks on the first.
    """

    def __init__(self, *, attach_global_otel: bool = True) -> None:
        self.inflight = new_inflight_var()
        self.sink: CallSink | None = None
        #: the running test's hard limits (``perf_budget(enforce="hard")``), process-wide
        self.limits: LimitScope | None = None
        self.span_processor = GenAISpanProcessor(self.inflight)
        self.on_uncaptured: Callable[[str], None] | None = None
        self._patches = (SDKPatch(OpenAIAdapter(), self), SDKPatch(AnthropicAdapter(), self))
        self._nets = (HTTPNet("httpx", self), HTTPNet("httpx2", self), HTTPNet("aiohttp", self))
        self._replay = ReplayPatch(self)
        self._pending_patches: list[SDKPatch | HTTPNet | ReplayPatch] = [
            *self._patches, *self._nets, self._replay]
        self._attach_global_otel = attach_global_otel
        self._otel_provider: Any = None
        self._otel_setter: tuple[Any, Any] | None = None

    # -- installation --------------------------------------------------------------------
    def ensure_installed(self) -> None:
        """Patch newly imported SDKs and attach to a newly set global tracer provider."""
        if self._pending_patches:
            for patch in tuple(self._pending_patches):
                if patch.install():
                    self._pending_patches.remove(patch)
        if self._attach_global_otel:
            trace = sys.modules.get("opentelemetry.trace")
            if trace is not None:
                if self._otel_setter is None:
                    self._watch_tracer_provider(trace)
                self._attach_otel(trace)

    def _attach_otel(self, trace: Any) -> None:
        provider = trace.get_tracer_provider()
        if provider is not self._otel_provider:
            self._otel_provider = provider
            add = getattr(provider, "add_span_processor", None)
            if add is not None:
                add(self.span_processor)

    def _watch_tracer_provider(self, trace: Any) -> None:
        """Attach to a tracer provider the moment it is set (mid-test included)."""
        original = getattr(trace, "set_tracer_provider", None)
        if original is None:
            return
        capture = self

        @functools.wraps(original)
        def set_tracer_provider(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if capture._otel_setter is not None:
                capture._attach_otel(trace)
            return result

        trace.set_tracer_provider = set_tracer_provider
        self._otel_setter = (trace, original)

    @property
    def installed(self) -> tuple[str, ...]:
        """The providers whose SDK is patched now."""
        return tuple(p.adapter.provider for p in self._patches if p.installed)

    def uninstall(self) -> None:
        """Restore every patched SDK method; the span processor stops counting."""
        self.stop()
        for patch in (*self._patches, *self._nets, self._replay):
            patch.uninstall()
        self._pending_patches = [*self._patches, *self._nets, self._replay]
        if self._otel_setter is not None:
            trace, original = self._otel_setter
            self._otel_setter = None
            if getattr(trace.set_tracer_provider, "__wrapped__", None) is original:
                trace.set_tracer_provider = original
        self.span_processor.enabled = False

    # -- routing -------------------------------------------------------------------------
    def start(
        self, sink: CallSink, on_uncaptured: Callable[[str], None] | None = None,
        limits: LimitScope | None = None,
    ) -> None:
        """Route every call that starts from now on to ``sink`` (replacing any other);
        ``limits``: hard limits for every call from now on (:mod:`.limits`)."""
        self.span_processor.enabled = True
        self.limits = limits
        self.sink = sink
        self.on_uncaptured = on_uncaptured
        self.span_processor.set_sink(sink)

    def stop(self) -> None:
        """Stop routing; calls in flight still finish into the sink they started with."""
        self.sink = None
        self.limits = None
        self.on_uncaptured = None
        self.span_processor.set_sink(None)

    def attributed(self, request: Any) -> bool:
        """True when ``request`` (an HTTP request; ``None``: only the context is known)
        belongs to a call the capture counts."""
        if self.inflight.get() is not None:
            return True
        if request is None:
            return self.span_processor.in_inference_span()
        try:
            for patch in self._patches:
                if request in patch.requests:
                    return True
        except TypeError:  # not weak-referenceable: no SDK call of ours built it
            pass
        return self.span_processor.in_inference_span()

    @property
    def active(self) -> bool:
        return self.sink is not None

    def note_replayed(self) -> None:
        """A cassette answered an HTTP request in this context: the SDK call in flight here
        (if any) is ``replayed`` (:mod:`.replay`)."""
        pending = self.inflight.get()
        if pending is None:  # started in ``_build_request`` (an instrumentation wraps request)
            for patch in self._patches:
                pending = patch.started_call()
                if pending is not None:
                    break
        if pending is not None and not pending.done:
            pending.replayed = True

    def in_flight(self) -> PendingCall | None:
        """The SDK call in flight in the current context (for tests and diagnostics)."""
        return self.inflight.get()
