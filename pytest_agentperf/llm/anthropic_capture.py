"""Reading calls of the official ``anthropic`` SDK: ``messages.create`` and its streams.

Input tokens follow the OpenTelemetry GenAI rule: ``input_tokens + cache_read_input_tokens +
cache_creation_input_tokens``; ``cached_tokens`` is the cache read.  A stream's usage comes from
``message_start`` (input) and the last ``message_delta`` (output, cumulative; input fields there,
when not null, supersede those of ``message_start``).  Time to first token is the first
``content_block_delta``.
"""

from __future__ import annotations

from typing import Any

from ._pending import PendingCall

__all__ = ["AnthropicAdapter"]


def _clean(value: Any) -> int | None:
    """A token count as reported: an int (not a bool), else unknown."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class AnthropicAdapter:
    """:class:`~pytest_agentperf.llm.sdk_patch.SDKAdapter` for ``anthropic``."""

    provider = "anthropic"
    package = "anthropic"

    def classify(self, options: Any) -> str | None:
        if str(getattr(options, "method", "")).lower() != "post":
            return None
        url = getattr(options, "url", "")
        if not isinstance(url, str):
            return None
        if url.split("?", 1)[0].rstrip("/").endswith("/messages"):
            return "messages"
        return None

    def read_result(self, pending: PendingCall, result: Any) -> None:
        pending.read_identity(result)
        _set(pending, getattr(result, "usage", None), None)

    def read_item(self, pending: PendingCall, item: Any) -> None:
        kind = getattr(item, "type", None)
        if kind == "content_block_delta":
            if pending.ttft_s is None:
                pending.first_content()
        elif kind == "message_start":
            self.read_result(pending, getattr(item, "message", None))
        elif kind == "message_delta":
            _set(pending, getattr(item, "usage", None), pending)


def _set(pending: PendingCall, usage: Any, previous: PendingCall | None) -> None:
    """Set usage; ``previous`` (a stream's ``message_start`` values) fills null input fields."""
    if usage is None:
        return
    # inline getattr with a type check per figure: this runs inside every captured call
    output = getattr(usage, "output_tokens", None)
    if type(output) is not int:
        output = _clean(output)
    inp = getattr(usage, "input_tokens", None)
    if type(inp) is not int:
        inp = _clean(inp)
    read = getattr(usage, "cache_read_input_tokens", None)
    if read is not None and type(read) is not int:
        read = _clean(read)
    write = getattr(usage, "cache_creation_input_tokens", None)
    if write is not None and type(write) is not int:
        write = _clean(write)
    if previous is not None and inp is None:
        prompt = previous.prompt_tokens
        cached = previous.cached_tokens if read is None else read
        written = previous.cache_write_tokens if write is None else write
    else:
        prompt = None if inp is None else inp + (read or 0) + (write or 0)
        cached = read
        written = write
    details = getattr(usage, "output_tokens_details", None)
    reasoning = None if details is None else _clean(getattr(details, "thinking_tokens", None))
    pending.set_usage(prompt, output, cached=cached, reasoning=reasoning, cache_write=written)
