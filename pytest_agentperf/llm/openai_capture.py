"""Reading calls of the official ``openai`` SDK: chat completions and the responses API.

Usage is the provider's: ``usage`` of a ``ChatCompletion`` / ``Response`` /
``CreateEmbeddingResponse`` (prompt and total tokens), the final chunk of a
chat stream made with ``stream_options={"include_usage": True}`` (without it the usage is
unknown), and the ``response.completed`` (``.incomplete`` / ``.failed``) event of a responses
stream.  Time to first token is the first chunk carrying content (text, tool call or refusal)
or, for the responses API, the first ``*.delta`` event.
"""

from __future__ import annotations

from typing import Any

from ._pending import PendingCall

__all__ = ["OpenAIAdapter"]


def _path(options: Any) -> str:
    url = getattr(options, "url", "")
    if not isinstance(url, str):
        return ""
    return url.split("?", 1)[0].rstrip("/")


class OpenAIAdapter:
    """:class:`~pytest_agentperf.llm.sdk_patch.SDKAdapter` for ``openai``."""

    provider = "openai"
    package = "openai"

    def classify(self, options: Any) -> str | None:
        if str(getattr(options, "method", "")).lower() != "post":
            return None
        path = _path(options)
        if path.endswith("/chat/completions"):
            return "chat"
        if path.endswith("/responses"):
            return "responses"
        if path.endswith("/completions"):
            return "text_completion"
        if path.endswith("/embeddings"):
            return "embeddings"
        return None

    def read_result(self, pending: PendingCall, result: Any) -> None:
        pending.read_identity(result)
        _read_usage(pending, getattr(result, "usage", None))
        if pending.operation == "responses" and getattr(result, "status", None) == "failed":
            err = getattr(result, "error", None)
            pending.error = f"response failed: {getattr(err, 'message', err)}"

    def read_item(self, pending: PendingCall, item: Any) -> None:
        if pending.operation == "responses":
            kind = getattr(item, "type", None)
            if not isinstance(kind, str):
                return
            if kind.endswith(".delta"):
                pending.first_content()
            elif kind in ("response.completed", "response.incomplete", "response.failed"):
                self.read_result(pending, getattr(item, "response", None))
            elif kind == "response.created":
                rid = getattr(getattr(item, "response", None), "id", None)
                if isinstance(rid, str):
                    pending.response_id = rid
            elif kind == "error":
                pending.error = f"stream error: {getattr(item, 'message', '')}"
            return
        if pending.ttft_s is None:
            for choice in getattr(item, "choices", None) or ():
                delta = getattr(choice, "delta", None)
                if delta is not None and (
                    getattr(delta, "content", None)
                    or getattr(delta, "tool_calls", None)
                    or getattr(delta, "refusal", None)
                ):
                    pending.first_content()
                    break
        if pending.response_model is None:
            pending.read_identity(item)
        usage = getattr(item, "usage", None)
        if usage is not None:
            _read_usage(pending, usage)


def _clean(value: Any) -> int | None:
    """A token count as reported: an int (not a bool), else unknown."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _read_usage(pending: PendingCall, usage: Any) -> None:
    # inline getattr with a type check per figure: this runs inside every captured call
    if usage is None:
        return
    prompt = getattr(usage, "prompt_tokens", None)
    if type(prompt) is not int:
        prompt = _clean(prompt)
    if prompt is not None:  # chat completions, embeddings
        completion = getattr(usage, "completion_tokens", None)
        prompt_details = getattr(usage, "prompt_tokens_details", None)
        completion_details = getattr(usage, "completion_tokens_details", None)
    else:  # responses API
        prompt = getattr(usage, "input_tokens", None)
        if type(prompt) is not int:
            prompt = _clean(prompt)
            if prompt is None:
                return
        completion = getattr(usage, "output_tokens", None)
        prompt_details = getattr(usage, "input_tokens_details", None)
        completion_details = getattr(usage, "output_tokens_details", None)
    if type(completion) is not int:
        completion = _clean(completion)
    cached = None if prompt_details is None else getattr(prompt_details, "cached_tokens", None)
    if cached is not None and type(cached) is not int:
        cached = _clean(cached)
    reasoning = (None if completion_details is None
                 else getattr(completion_details, "reasoning_tokens", None))
    if reasoning is not None and type(reasoning) is not int:
        reasoning = _clean(reasoning)
    total = getattr(usage, "total_tokens", None)
    if type(total) is not int:
        total = _clean(total)
    pending.set_usage(prompt, completion, cached, reasoning, total)
