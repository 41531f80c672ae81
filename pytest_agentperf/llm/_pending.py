"""An LLM call in flight: what the SDK patches fill in before it becomes an :class:`LLMCall`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .calls import _UNBUDGETED, CallSink, LLMCall, call_from_fields
from .limits import LimitScope, account

__all__ = ["PendingCall"]


class PendingCall:
    """Mutable state of one call between its request and the end of its response.

    ``finish`` is idempotent: a stream ends through exhaustion, an error, ``close()`` or
    garbage collection, whichever comes first; the call is sent to ``sink`` once.
    """

    __slots__ = (
        "_t0", "agent", "budgeted", "cache_write_tokens", "cached_tokens", "call",
        "completion_tokens", "done", "error", "limits", "model", "observed", "on_finish",
        "operation", "prompt_tokens", "provider", "reasoning_tokens", "replayed", "response_id",
        "response_model", "retries", "sink", "streamed", "total_tokens", "ttft_s",
    )

    def __init__(
        self,
        sink: CallSink,
        provider: str,
        operation: str,
        model: str | None,
        agent: str | None,
        on_finish: Callable[[LLMCall, CallSink], None] | None = None,
        retries: int | None = 0,
    ) -> None:
        self.sink = sink
        self.provider = provider
        self.operation = operation
        self.model = model
        self.agent = agent
        #: read where the call starts (the caller's context)
        self.budgeted = not _UNBUDGETED.get()
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.total_tokens: int | None = None
        self.cached_tokens: int | None = None
        self.cache_write_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self.response_model: str | None = None
        self.ttft_s: float | None = None
        self.streamed = False
        self.error: str | None = None
        self.retries = retries
        self.response_id: str | None = None
        self.done = False
        #: the result reached the capture (read, or a stream being observed)
        self.observed = False
        #: counts the finished call in the sink instead of ``sink(call)`` (span dedupe)
        self.on_finish = on_finish
        #: the finished call
        self.call: LLMCall | None = None
        #: the hard-limit scopes that counted this call (:mod:`.limits`), ``None``: none
        self.limits: tuple[LimitScope, ...] | None = None
        #: the response came from a recorded cassette (:mod:`.replay`), not the provider
        self.replayed = False
        self._t0 = time.perf_counter()

    def read_identity(self, response: Any) -> None:
        """Take the response's ``model`` and ``id`` (an SDK object or stream chunk), if strings."""
        model = getattr(response, "model", None)
        if isinstance(model, str):
            self.response_model = model
        rid = getattr(response, "id", None)
        if isinstance(rid, str):
            self.response_id = rid

    def first_content(self) -> None:
        """Mark the time to first token (first call wins)."""
        if self.ttft_s is None:
            self.ttft_s = time.perf_counter() - self._t0

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            msg = str(exc)
            self.error = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
            if len(self.error) > 200:
                self.error = self.error[:197] + "..."

    def set_usage(
        self,
        prompt: int | None,
        completion: int | None,
        cached: int | None = None,
        reasoning: int | None = None,
        total: int | None = None,
        cache_write: int | None = None,
    ) -> None:
        self.prompt_tokens = prompt
        self.completion_tokens = completion
        if total is None and prompt is not None and completion is not None:
            total = prompt + completion
        self.total_tokens = total
        self.cached_tokens = cached
        self.cache_write_tokens = cache_write
        self.reasoning_tokens = reasoning

    def abandon(self) -> None:
        """The raw response was dropped without being parsed: count the call, usage unknown."""
        if not self.observed:
            self.finish()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        latency = time.perf_counter() - self._t0
        # every field of LLMCall (tests/test_llm_capture.py checks that none is missing)
        call = call_from_fields({
            "provider": self.provider,
            "model": self.model or self.response_model or "unknown",
            "operation": self.operation,
            "latency_s": latency,
            "agent": self.agent,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "ttft_s": self.ttft_s,
            "streamed": self.streamed,
            "error": self.error,
            "retries": self.retries,
            "response_model": self.response_model,
            "response_id": self.response_id,
            "source": "sdk",
            "budgeted": self.budgeted,
            "replayed": self.replayed,
            "replaces": None,
        })
        self.call = call
        if self.limits is not None:
            account(self.limits, call)
        if self.on_finish is not None:
            self.on_finish(call, self.sink)
        else:
            self.sink(call)
