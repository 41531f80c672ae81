"""An in-process OpenTelemetry span processor that turns LLM spans into :class:`LLMCall`.

An inference span is recognised by the GenAI semantic conventions (``gen_ai.operation.name``
one of ``chat``, ``text_completion``, ``generate_content``, ``embeddings``, or a span name
starting with one), OpenInference (``openinference.span.kind`` ``LLM`` / ``EMBEDDING``) or
OpenLLMetry's ``llm.request.type``.  Usage is read from ``gen_ai.usage.input_tokens`` /
``output_tokens``, the older ``gen_ai.usage.prompt_tokens`` / ``completion_tokens`` and
OpenInference's ``llm.token_count.prompt`` / ``completion`` / ``total``; the model from
``gen_ai.request.model``, ``llm.model_name`` or ``gen_ai.response.model``.  An agent span
(``invoke_agent <name>``, ``gen_ai.agent.name``) names the agent of every span under it.  No
exporter, no network: the processor only reads spans as they start and end.  Nothing here
imports ``opentelemetry``; the processor is duck-typed to ``SpanProcessor``.

Calls are counted once:

* a span that was *current* when an SDK call started (an instrumentation wrapping
  ``create()`` or the client's ``request``), or that *started during* an SDK call (the
  ``anthropic`` SDK's own span) is claimed by that SDK call and not counted again; its usage
  fills the SDK call's when the SDK saw none;
* a span whose ``gen_ai.response.id`` is the id of a call counted already (an SDK result's
  ``id``, another span's) is the same call, however its start was back-dated (OpenLLMetry's
  ``openai.response`` span, logfire's second span of a stream); its usage fills the call's
  when that had none;
* of two nested inference spans (a framework's ``chat`` span around an instrumentation's),
  only the innermost is counted.  Non-inference children (HTTP spans) change nothing.
"""

from __future__ import annotations

import contextvars
import dataclasses
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .calls import CallSink, LLMCall, current_budgeted

__all__ = ["GenAISpanProcessor"]

INFERENCE_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
_OPENINFERENCE_KINDS = {"LLM": "chat", "EMBEDDING": "embeddings"}
_OPENLLMETRY_TYPES = {"chat": "chat", "completion": "text_completion",
                      "embedding": "embeddings"}
_MAX_LIVE_SPANS = 100_000
_MAX_RESPONSE_IDS = 10_000


@dataclass
class _SpanInfo:
    agent: str | None
    inference: bool
    #: started outside ``agent_scope(..., budgeted=False)``
    budgeted: bool = True
    claimed: bool = False
    has_inference_child: bool = False
    #: this span or an ancestor is an inference span (HTTP requests under it are its call)
    in_inference: bool = False
    #: the SDK call that claimed the span
    claimed_by: Any = None


def _attr(attributes: Any, key: str) -> Any:
    if attributes is None:
        return None
    return attributes.get(key)


def _first(attributes: Any, *keys: str) -> Any:
    if attributes is None:
        return None
    for key in keys:
        value = attributes.get(key)
        if value is not None:
            return value
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _operation(span: Any) -> str | None:
    attrs = span.attributes
    op = _attr(attrs, "gen_ai.operation.name")
    if isinstance(op, str):
        return op
    kind = _attr(attrs, "openinference.span.kind")
    if isinstance(kind, str):
        return _OPENINFERENCE_KINDS.get(kind.upper(), kind.lower())
    req_type = _attr(attrs, "llm.request.type")
    if isinstance(req_type, str) and req_type in _OPENLLMETRY_TYPES:
        return _OPENLLMETRY_TYPES[req_type]
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
        #: response id -> (the call counted for it, the sink it went to)
        self._responses: OrderedDict[str, tuple[LLMCall, CallSink]] = OrderedDict()
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
        pending = self._inflight.get()
        with self._lock:
            parent_info = self._live.get(parent_id) if parent_id is not None else None
            agent = _agent_name(span) if op == "invoke_agent" else None
            if agent is None:
                agent = _attr(span.attributes, "gen_ai.agent.name")
                if not isinstance(agent, str):
                    agent = parent_info.agent if parent_info is not None else None
            info = _SpanInfo(agent=agent, inference=inference, budgeted=current_budgeted())
            info.in_inference = inference or (parent_info is not None and parent_info.in_inference)
            if pending is not None:
                info.claimed = True  # started inside an SDK call that is captured already
                info.claimed_by = pending
            if inference and parent_info is not None and parent_info.inference:
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
        if info is None or not self.enabled:
            return
        op = _operation(span)
        if op not in INFERENCE_OPERATIONS or info.has_inference_child:
            return
        call = _call_from_span(span, op, info.agent, info.budgeted)
        if info.claimed:
            pending = info.claimed_by
            counted = getattr(pending, "call", None)
            if counted is not None and call.usage_known and not counted.usage_known:
                self._fill_usage(counted, call, pending.sink)
            return
        if sink is None:
            return
        if call.response_id is not None:
            with self._lock:
                seen = self._responses.get(call.response_id)
            if seen is not None:  # the same response, counted already
                if call.usage_known and not seen[0].usage_known:
                    self._fill_usage(seen[0], call, seen[1])
                return
            self._remember(call, sink)
        sink(call)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # -- identity of calls ---------------------------------------------------------------
    def _remember(self, call: LLMCall, sink: CallSink) -> None:
        if call.response_id is None:
            return
        with self._lock:
            self._responses[call.response_id] = (call, sink)
            self._responses.move_to_end(call.response_id)
            if len(self._responses) > _MAX_RESPONSE_IDS:
                self._responses.popitem(last=False)

    def _fill_usage(self, counted: LLMCall, usage: LLMCall, sink: CallSink) -> None:
        """Send a correction of ``counted`` carrying the usage ``usage`` reported."""
        fixed = dataclasses.replace(
            counted,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            cached_tokens=usage.cached_tokens if usage.cached_tokens is not None
            else counted.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens if usage.reasoning_tokens is not None
            else counted.reasoning_tokens,
            replaces=counted,
        )
        if counted.response_id is not None:
            with self._lock:
                if counted.response_id in self._responses:
                    self._responses[counted.response_id] = (fixed, sink)
        sink(fixed)

    def note_sdk_call(self, call: LLMCall, sink: CallSink) -> None:
        """An SDK call finished: count it in ``sink``, once, whatever spans said of it.

        Its response id is remembered for the spans of the same response that may end later
        (back-dated ones); without OpenTelemetry imported no span can come, and nothing is.
        """
        rid = call.response_id
        if rid is not None and "opentelemetry.trace" in sys.modules:
            with self._lock:
                responses = self._responses
                seen = responses.get(rid)
                if seen is not None:
                    if seen[0].source != "sdk" and seen[1] == sink:
                        # a span of this response was counted first: the SDK's record
                        # replaces it
                        if not call.usage_known and seen[0].usage_known:
                            call = dataclasses.replace(
                                call, prompt_tokens=seen[0].prompt_tokens,
                                completion_tokens=seen[0].completion_tokens,
                                total_tokens=seen[0].total_tokens)
                        call = dataclasses.replace(call, replaces=seen[0])
                    responses.move_to_end(rid)
                responses[rid] = (call, sink)
                if len(responses) > _MAX_RESPONSE_IDS:
                    responses.popitem(last=False)
        sink(call)

    # -- for the SDK patches -------------------------------------------------------------
    def on_sdk_call(self, pending: Any = None) -> str | None:
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
                info.claimed_by = pending
            return info.agent

    def in_inference_span(self) -> bool:
        """True when the current span is (under) an inference span this processor tracks."""
        if not self._live:
            return False
        trace = sys.modules.get("opentelemetry.trace")
        if trace is None:
            return False
        info = self._live.get(trace.get_current_span().get_span_context().span_id)
        return info is not None and info.in_inference

    @property
    def live_spans(self) -> int:
        return len(self._live)


def _call_from_span(span: Any, op: str, agent: str | None, budgeted: bool = True) -> LLMCall:
    attrs = span.attributes
    prompt = _int(_first(attrs, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                         "llm.token_count.prompt"))
    completion = _int(_first(attrs, "gen_ai.usage.output_tokens",
                             "gen_ai.usage.completion_tokens", "llm.token_count.completion"))
    total = _int(_first(attrs, "llm.token_count.total", "llm.usage.total_tokens"))
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    request_model = _first(attrs, "gen_ai.request.model", "llm.model_name")
    response_model = _attr(attrs, "gen_ai.response.model")
    model = request_model if isinstance(request_model, str) else response_model
    provider = _first(attrs, "gen_ai.provider.name", "gen_ai.system", "llm.provider",
                      "llm.system") or "unknown"
    response_id = _attr(attrs, "gen_ai.response.id")
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
        cached_tokens=_int(_first(attrs, "gen_ai.usage.cache_read.input_tokens",
                                  "llm.token_count.prompt_details.cache_read")),
        cache_write_tokens=_int(_first(attrs, "gen_ai.usage.cache_creation.input_tokens",
                                       "llm.token_count.prompt_details.cache_write")),
        reasoning_tokens=_int(_attr(attrs, "gen_ai.usage.reasoning.output_tokens")),
        streamed=streamed,
        error=error,
        retries=None,
        response_model=response_model if isinstance(response_model, str) else None,
        response_id=response_id if isinstance(response_id, str) and response_id else None,
        source="otel",
        budgeted=budgeted,
    )
