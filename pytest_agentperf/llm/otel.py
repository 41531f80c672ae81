"""An in-process OpenTelemetry span processor that turns GenAI spans into :class:`LLMCall`.

It follows the GenAI semantic conventions: an inference span (``gen_ai.operation.name`` one
of ``chat``, ``text_completion``, ``generate_content``) is a call, with
``gen_ai.usage.input_tokens`` / ``gen_ai.usage.output_tokens``, ``gen_ai.request.model`` and
``gen_ai.response.model``; an agent span (``invoke_agent <name>``, ``gen_ai.agent.name``)
names the agent of every span started under it.  No exporter, no network: the processor
only reads spans as they start and end.  Nothing here imports ``opentelemetry``; the
processor is duck-typed to ``opentelemetry.sdk.trace.SpanProcessor``.

Calls are counted once:

* a span that was *current* when an SDK call started (an instrumentation wrapping
  ``create()``), or that *started during* an SDK call (the ``anthropic`` SDK's own span, an
  HTTP-level instrumentation) is claimed by that SDK call and not counted again;
* of two nested inference spans (a framework's ``chat`` span around an instrumentation's),
  only the innermost is counted.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .calls import CallSink, LLMCall

__all__ = ["GenAISpanProcessor"]

INFERENCE_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
_MAX_LIVE_SPANS = 100_000


@dataclass
class _SpanInfo:
    agent: str | None
    inference: bool
    claimed: bool = False
    has_inference_child: bool = False


def _attr(attributes: Any, key: str) -> Any:
    if attributes is None:
        return None
    return attributes.get(key)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _operation(span: Any) -> str | None:
    op = _attr(span.attributes, "gen_ai.operation.name")
    if isinstance(op, str):
        return op
    name = getattr(span, "name", "")
    if isinstance(name, str):
        head = name.split(" ", 1)[0]
        if head in INFERENCE_OPERATIONS or head == "invoke_agent":
            return head
    return None


def _agent_name(span: Any) -> str | None:
    name = _attr(span.attributes, "gen_ai.agent.name")
    if isinstance(name, str) and name:
        return name
    span_name = getattr(span, "name", "")
    if isinstance(span_name, str) and span_name.startswith("invoke_agent "):
        return span_name[len("invoke_agent "):].strip() or None
    return None


class GenAISpanProcessor:
    """Span processor of one :class:`~pytest_agentperf.llm.LLMCapture` (``capture.span_processor``).

    Add it to a ``TracerProvider`` with ``provider.add_span_processor(processor)``;
    ``LLMCapture.ensure_installed`` adds it to the global SDK provider by itself.
    Calls go to the sink given to :meth:`set_sink` (``None``: spans are tracked, not counted).
    """

    def __init__(self, inflight: contextvars.ContextVar[Any]) -> None:
        self._inflight = inflight
        self._lock = threading.Lock()
        self._live: OrderedDict[int, _SpanInfo] = OrderedDict()
        self._sink: CallSink | None = None
        self.enabled = True

    def set_sink(self, sink: CallSink | None) -> None:
        self._sink = sink

    # -- SpanProcessor interface ---------------------------------------------------------
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if not self.enabled:
            return
        ctx = span.get_span_context()
        parent = getattr(span, "parent", None)
        parent_id = parent.span_id if parent is not None else None
        op = _operation(span)
        inference = op in INFERENCE_OPERATIONS
        with self._lock:
            parent_info = self._live.get(parent_id) if parent_id is not None else None
            agent = _agent_name(span) if op == "invoke_agent" else None
            if agent is None:
                agent = _attr(span.attributes, "gen_ai.agent.name")
                if not isinstance(agent, str):
                    agent = parent_info.agent if parent_info is not None else None
            info = _SpanInfo(agent=agent, inference=inference)
            if self._inflight.get() is not None:
                info.claimed = True  # started inside an SDK call that is captured already
            if parent_info is not None and parent_info.inference:
                parent_info.has_inference_child = True
            self._live[ctx.span_id] = info
            if len(self._live) > _MAX_LIVE_SPANS:
                self._live.popitem(last=False)

    def _on_ending(self, span: Any) -> None:
        return None

    def on_end(self, span: Any) -> None:
        with self._lock:
            info = self._live.pop(span.get_span_context().span_id, None)
        sink = self._sink
        if info is None or sink is None or not self.enabled:
            return
        op = _operation(span)
        if op not in INFERENCE_OPERATIONS or info.claimed or info.has_inference_child:
            return
        sink(_call_from_span(span, op, info.agent))

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # -- for the SDK patches -------------------------------------------------------------
    def on_sdk_call(self) -> str | None:
        """Called as an SDK call starts: claim the current inference span, return its agent."""
        if not self._live:
            return None
        trace = sys.modules.get("opentelemetry.trace")
        if trace is None:
            return None
        span_id = trace.get_current_span().get_span_context().span_id
        with self._lock:
            info = self._live.get(span_id)
            if info is None:
                return None
            if info.inference:
                info.claimed = True
            return info.agent

    @property
    def live_spans(self) -> int:
        return len(self._live)


def _call_from_span(span: Any, op: str, agent: str | None) -> LLMCall:
    attrs = span.attributes
    prompt = _int(_attr(attrs, "gen_ai.usage.input_tokens"))
    completion = _int(_attr(attrs, "gen_ai.usage.output_tokens"))
    total = prompt + completion if prompt is not None and completion is not None else None
    request_model = _attr(attrs, "gen_ai.request.model")
    response_model = _attr(attrs, "gen_ai.response.model")
    model = request_model if isinstance(request_model, str) else response_model
    provider = _attr(attrs, "gen_ai.provider.name") or _attr(attrs, "gen_ai.system") or "unknown"
    start, end = span.start_time, span.end_time
    latency = (end - start) / 1e9 if start is not None and end is not None else 0.0
    error: str | None = None
    status = getattr(span, "status", None)
    code = getattr(getattr(status, "status_code", None), "name", None)
    if code == "ERROR" or _attr(attrs, "error.type") is not None:
        error = str(_attr(attrs, "error.type") or getattr(status, "description", None) or "error")
    streamed = _attr(attrs, "gen_ai.request.stream") is True
    return LLMCall(
        provider=str(provider),
        model=model if isinstance(model, str) else "unknown",
        operation=op,
        latency_s=max(latency, 0.0),
        agent=agent,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        cached_tokens=_int(_attr(attrs, "gen_ai.usage.cache_read.input_tokens")),
        reasoning_tokens=_int(_attr(attrs, "gen_ai.usage.reasoning.output_tokens")),
        streamed=streamed,
        error=error,
        retries=None,
        response_model=response_model if isinstance(response_model, str) else None,
        source="otel",
    )
