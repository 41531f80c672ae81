"""The capture controller: installs the SDK patches and routes calls to the active sink."""

from __future__ import annotations

import sys
from typing import Any

from ._pending import PendingCall
from .anthropic_capture import AnthropicAdapter
from .calls import CallSink
from .openai_capture import OpenAIAdapter
from .otel import GenAISpanProcessor
from .sdk_patch import SDKPatch, new_inflight_var

__all__ = ["LLMCapture"]


class LLMCapture:
    """Automatic capture of LLM calls from ``openai``, ``anthropic`` and GenAI spans.

    * :meth:`ensure_installed` patches whichever SDK is imported and not yet patched, and adds
      :attr:`span_processor` to the global OpenTelemetry SDK tracer provider once one is set
      (``attach_global_otel=False`` turns that off).  It never imports anything: call it as
      often as you like (a few hundred ns when nothing changed).
    * :meth:`start` routes calls to ``sink`` (process-wide: calls from every thread and task
      reach it); :meth:`stop` stops routing.  A call goes to the sink that was active when it
      *started*, so a stream read after :meth:`stop` still reaches the test that made it.
    * :meth:`uninstall` restores the SDKs' original methods and disables the span processor.

    One controller per process is the intended use; a second one stacks on the first.
    """

    def __init__(self, *, attach_global_otel: bool = True) -> None:
        self.inflight = new_inflight_var()
        self.sink: CallSink | None = None
        self.span_processor = GenAISpanProcessor(self.inflight)
        self._patches = (SDKPatch(OpenAIAdapter(), self), SDKPatch(AnthropicAdapter(), self))
        self._pending_patches = list(self._patches)
        self._attach_global_otel = attach_global_otel
        self._otel_provider: Any = None

    # -- installation --------------------------------------------------------------------
    def ensure_installed(self) -> None:
        """Patch newly imported SDKs and attach to a newly set global tracer provider."""
        if self._pending_patches:
            modules = sys.modules
            for patch in tuple(self._pending_patches):
                if f"{patch.adapter.package}._base_client" in modules and patch.install():
                    self._pending_patches.remove(patch)
        if self._attach_global_otel:
            trace = sys.modules.get("opentelemetry.trace")
            if trace is not None:
                provider = trace.get_tracer_provider()
                if provider is not self._otel_provider:
                    self._otel_provider = provider
                    add = getattr(provider, "add_span_processor", None)
                    if add is not None:
                        add(self.span_processor)

    @property
    def installed(self) -> tuple[str, ...]:
        """The providers whose SDK is patched now."""
        return tuple(p.adapter.provider for p in self._patches if p.installed)

    def uninstall(self) -> None:
        """Restore every patched SDK method; the span processor stops counting."""
        self.stop()
        for patch in self._patches:
            patch.uninstall()
        self._pending_patches = list(self._patches)
        self.span_processor.enabled = False

    # -- routing -------------------------------------------------------------------------
    def start(self, sink: CallSink) -> None:
        """Route every call that starts from now on to ``sink`` (replacing any other)."""
        self.span_processor.enabled = True
        self.sink = sink
        self.span_processor.set_sink(sink)

    def stop(self) -> None:
        """Stop routing; calls in flight still finish into the sink they started with."""
        self.sink = None
        self.span_processor.set_sink(None)

    @property
    def active(self) -> bool:
        return self.sink is not None

    def in_flight(self) -> PendingCall | None:
        """The SDK call in flight in the current context (for tests and diagnostics)."""
        return self.inflight.get()
