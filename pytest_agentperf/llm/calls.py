"""The record of one LLM call and the agent scope that attributes calls to an agent.

An :class:`LLMCall` is what every source (the ``openai`` and ``anthropic`` SDK patches, the
OpenTelemetry span processor) produces, and what the aggregation in :mod:`.summary` consumes.
Token counts are ``None`` when the provider did not report them (for example a stream
without ``stream_options={"include_usage": True}``): unknown is never written as 0.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["CallSink", "LLMCall", "agent_scope", "current_agent", "current_budgeted"]


@dataclass(frozen=True)
class LLMCall:
    """One LLM call, as reported by the provider (tokens) and measured here (times)."""

    provider: str
    """``"openai"``, ``"anthropic"`` or the ``gen_ai.provider.name`` of a span."""
    model: str
    """The requested model (the key of price tables); the response model when none was requested."""
    operation: str
    """``"chat"``, ``"responses"``, ``"messages"`` or the span's ``gen_ai.operation.name``."""
    latency_s: float
    """From the request to the last byte of the response (end of the stream for streams)."""
    agent: str | None = None
    prompt_tokens: int | None = None
    """Input tokens including cached ones (Anthropic: input + cache read + cache creation)."""
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    """Input tokens read from the provider's prompt cache (part of ``prompt_tokens``)."""
    cache_write_tokens: int | None = None
    """Input tokens written to the prompt cache (Anthropic ``cache_creation_input_tokens``;
    part of ``prompt_tokens``); ``None`` where the provider does not report them."""
    reasoning_tokens: int | None = None
    ttft_s: float | None = None
    """Time to the first content of a stream; ``None`` for non-streamed calls."""
    streamed: bool = False
    error: str | None = None
    """The exception's class name (and message) when the call failed, else ``None``."""
    retries: int | None = None
    """Retries the SDK made before this result, when visible (SDK capture); ``None`` otherwise."""
    response_model: str | None = None
    response_id: str | None = None
    """The provider's id of the response (``id`` of the result, ``gen_ai.response.id``)."""
    source: str = "sdk"
    """``"sdk"`` or ``"otel"``: which layer reported the call."""
    budgeted: bool = True
    """False for a call made inside ``agent_scope(..., budgeted=False)`` (an evaluator):
    reported apart and kept out of the test's budgets."""
    replayed: bool = False
    """The response came from a recorded cassette (vcrpy, pytest-recording), not the provider:
    its usage is as recorded, its latency and time to first token are the cassette's."""
    replaces: LLMCall | None = None
    """A call reported before for the same response, which this one corrects (a span's usage
    merged into an SDK call that had none): aggregation swaps the old counts for the new."""

    @property
    def usage_known(self) -> bool:
        """True when the provider reported the call's token usage."""
        return self.total_tokens is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of every field (``replaces`` left out)."""
        out = asdict(self)
        out.pop("replaces", None)
        return out


CallSink = Callable[[LLMCall], None]
"""Where captured calls go: any callable taking one :class:`LLMCall`."""

#: every field of :class:`LLMCall`, in order
CALL_FIELDS = tuple(f.name for f in fields(LLMCall))
_new = object.__new__
_set = object.__setattr__


def call_from_fields(values: dict[str, Any]) -> LLMCall:
    """The :class:`LLMCall` whose fields are ``values`` (a dict of *every* field, which the
    call keeps as its ``__dict__``).

    The same object as ``LLMCall(**values)``, built without the frozen dataclass's
    ``__init__``, which sets its 21 fields one ``object.__setattr__`` call at a time: the
    SDK capture builds one per call, inside the call's time, and this is about a third of
    the cost.
    """
    call: LLMCall = _new(LLMCall)
    _set(call, "__dict__", values)
    return call

# A ContextVar is a key, not state: each context (task, copied context) holds its own value.
_AGENT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pytest_agentperf_llm_agent", default=None
)

_UNBUDGETED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "pytest_agentperf_llm_unbudgeted", default=False
)


@contextmanager
def agent_scope(name: str, *, budgeted: bool = True) -> Iterator[None]:
    """Attribute the LLM calls made inside the block to agent ``name``.

    Context-local: asyncio tasks created inside the block inherit it; plain threads do not
    (run them with ``contextvars.copy_context().run``). It takes precedence over an
    enclosing OpenTelemetry ``invoke_agent`` span.

    ``budgeted=False`` (an evaluator, an LLM judge) keeps the calls made inside the block
    out of the test's budgets -- tokens, ``llm_calls``, ``cost_usd``, latency samples --
    and reports them apart (``llm.unbudgeted``).  Scopes nested inside stay unbudgeted.
    """
    if not name:
        raise ValueError("agent_scope needs a non-empty agent name")
    if not isinstance(budgeted, bool):
        raise TypeError(f"agent_scope({name!r}, budgeted={budgeted!r}): budgeted must be a bool")
    token = _AGENT.set(name)
    unbudgeted = None if budgeted else _UNBUDGETED.set(True)
    try:
        yield
    finally:
        if unbudgeted is not None:
            _UNBUDGETED.reset(unbudgeted)
        _AGENT.reset(token)


def current_agent() -> str | None:
    """The agent of the innermost enclosing :func:`agent_scope`, or ``None``."""
    return _AGENT.get()


def current_budgeted() -> bool:
    """False inside an ``agent_scope(..., budgeted=False)`` block."""
    return not _UNBUDGETED.get()
