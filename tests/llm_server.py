"""OpenAI- and Anthropic-compatible HTTP endpoints on 127.0.0.1 for the LLM capture tests.

A real aiohttp server in a background thread with its own event loop (so that sync SDK
clients can reach it too).  Usage is deterministic: prompt tokens are the words of the
request's messages/input, completion tokens the words of the fixed reply.  Request headers
drive the special cases:

* ``x-delay-ms``: sleep before the first content (streams) or before answering;
* ``x-cached`` / ``x-reasoning`` (OpenAI) and ``x-cache-read`` / ``x-cache-write``
  (Anthropic): the cached, reasoning and cache-creation token counts reported;
* ``x-fail-key`` + ``x-fail-times``: the first N requests with that key get a 429 with
  ``retry-after-ms: 1``; ``x-status``: answer with that error status;
* ``x-no-usage``: send no usage at all.

Every response has a fresh id (``chatcmpl-N``, ``resp_N``, ``msg_N``, ``emb-N``); the server
counts what it answered in :attr:`LLMServer.sent` (requests, and the usage it reported).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

REPLY = ["hello", "from", "the", "server"]


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    if isinstance(value, dict):
        return _words(value.get("content")) + _words(value.get("text"))
    return 0


def _int_header(request: web.Request, name: str) -> int:
    return int(request.headers.get(name, "0"))


class Sent:
    """What the server answered successfully: requests and the token usage it reported."""

    def __init__(self) -> None:
        self.requests = 0
        self.prompt = 0
        self.completion = 0
        self.no_usage = 0

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    def add(self, prompt: int | None, completion: int | None) -> None:
        self.requests += 1
        if prompt is None:
            self.no_usage += 1
        else:
            self.prompt += prompt
            self.completion += completion or 0


class LLMServer:
    """Start with :meth:`start` (returns self), stop with :meth:`stop`; ``base_url`` is the root."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._failures: dict[str, int] = {}
        self.sent = Sent()
        self._ids = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LLMServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def reset(self) -> Sent:
        """Start counting afresh; returns what was counted so far."""
        sent, self.sent = self.sent, Sent()
        return sent

    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids}"

    # -- shared ----------------------------------------------------------------------------
    async def _prelude(
        self, request: web.Request, kind: str
    ) -> tuple[dict[str, Any], web.Response | None]:
        body = await request.json()
        self.requests.append((kind, body))
        key = request.headers.get("x-fail-key")
        if key is not None:
            done = self._failures.get(key, 0)
            if done < _int_header(request, "x-fail-times"):
                self._failures[key] = done + 1
                return body, web.json_response(
                    {"error": {"message": "slow down", "type": "rate_limit"}},
                    status=429, headers={"retry-after-ms": "1"},
                )
        status = _int_header(request, "x-status")
        if status:
            return body, web.json_response(
                {"type": "error", "error": {"message": "boom", "type": "api_error"}}, status=status
            )
        return body, None

    @staticmethod
    async def _sse(
        request: web.Request, events: AsyncIterator[tuple[str | None, Any]]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        async for event, data in events:
            payload = data if isinstance(data, str) else json.dumps(data)
            head = f"event: {event}\n" if event else ""
            await resp.write(f"{head}data: {payload}\n\n".encode())
        await resp.write_eof()
        return resp

    # -- OpenAI chat completions -------------------------------------------------------------
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, error = await self._prelude(request, "chat")
        if error is not None:
            return error
        model = body["model"]
        prompt = _words(body.get("messages"))
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": len(REPLY),
            "total_tokens": prompt + len(REPLY),
            "prompt_tokens_details": {"cached_tokens": _int_header(request, "x-cached")},
            "completion_tokens_details": {"reasoning_tokens": _int_header(request, "x-reasoning")},
        }
        delay = _int_header(request, "x-delay-ms") / 1000
        base = {"id": self._next_id("chatcmpl-"), "created": 0, "model": model}
        no_usage = "x-no-usage" in request.headers
        if not body.get("stream"):
            await asyncio.sleep(delay)
            self.sent.add(None if no_usage else prompt, len(REPLY))
            return web.json_response({
                **base, "object": "chat.completion",
                "choices": [{
                    "index": 0, "finish_reason": "stop", "logprobs": None,
                    "message": {"role": "assistant", "content": " ".join(REPLY)},
                }],
                "usage": None if no_usage else usage,
            })
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        include = include and not no_usage
        self.sent.add(prompt if include else None, len(REPLY))

        async def events() -> AsyncIterator[tuple[str | None, Any]]:
            def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
                out: dict[str, Any] = {
                    **base, "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                if include:
                    out["usage"] = None
                return out

            yield None, chunk({"role": "assistant", "content": ""})
            await asyncio.sleep(delay)
            for word in REPLY:
                yield None, chunk({"content": word + " "})
            yield None, chunk({}, "stop")
            if include:
                yield None, {
                    **base, "object": "chat.completion.chunk", "choices": [], "usage": usage
                }
            yield None, "[DONE]"

        return await self._sse(request, events())

    # -- OpenAI responses --------------------------------------------------------------------
    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body, error = await self._prelude(request, "responses")
        if error is not None:
            return error
        model = body["model"]
        prompt = _words(body.get("input"))
        text = " ".join(REPLY)
        delay = _int_header(request, "x-delay-ms") / 1000
        rid = self._next_id("resp_")
        no_usage = "x-no-usage" in request.headers
        self.sent.add(None if no_usage else prompt, len(REPLY))

        def response(status: str, with_output: bool) -> dict[str, Any]:
            return {
                "id": rid, "object": "response", "created_at": 0, "model": model,
                "status": status, "parallel_tool_calls": True, "tool_choice": "auto",
                "tools": [], "metadata": {}, "error": None, "incomplete_details": None,
                "instructions": None, "temperature": 1.0, "top_p": 1.0,
                "output": [{
                    "type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }] if with_output else [],
                "usage": {
                    "input_tokens": prompt, "output_tokens": len(REPLY),
                    "total_tokens": prompt + len(REPLY),
                    "input_tokens_details": {"cached_tokens": _int_header(request, "x-cached")},
                    "output_tokens_details": {
                        "reasoning_tokens": _int_header(request, "x-reasoning")
                    },
                } if with_output and not no_usage else None,
            }

        if not body.get("stream"):
            await asyncio.sleep(delay)
            return web.json_response(response("completed", True))

        async def events() -> AsyncIterator[tuple[str | None, Any]]:
            seq = 0
            yield "response.created", {
                "type": "response.created", "sequence_number": seq,
                "response": response("in_progress", False),
            }
            yield "response.output_item.added", {
                "type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
                "item": {
                    "type": "message", "id": "msg_1", "status": "in_progress",
                    "role": "assistant", "content": [],
                },
            }
            yield "response.content_part.added", {
                "type": "response.content_part.added", "sequence_number": 2,
                "item_id": "msg_1", "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []},
            }
            seq = 2
            await asyncio.sleep(delay)
            for word in REPLY:
                seq += 1
                yield "response.output_text.delta", {
                    "type": "response.output_text.delta", "sequence_number": seq,
                    "item_id": "msg_1", "output_index": 0, "content_index": 0,
                    "delta": word + " ", "logprobs": [],
                }
            yield "response.completed", {
                "type": "response.completed", "sequence_number": seq + 1,
                "response": response("completed", True),
            }

        return await self._sse(request, events())

    # -- Anthropic messages ------------------------------------------------------------------
    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body, error = await self._prelude(request, "messages")
        if error is not None:
            return error
        model = body["model"]
        prompt = _words(body.get("messages")) + _words(body.get("system"))
        read = _int_header(request, "x-cache-read")
        write = _int_header(request, "x-cache-write")
        delay = _int_header(request, "x-delay-ms") / 1000
        usage = {
            "input_tokens": prompt, "output_tokens": len(REPLY),
            "cache_read_input_tokens": read, "cache_creation_input_tokens": write,
        }
        self.sent.add(prompt + read + write, len(REPLY))
        message = {
            "id": self._next_id("msg_"), "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": " ".join(REPLY)}],
            "stop_reason": "end_turn", "stop_sequence": None, "usage": usage,
        }
        if not body.get("stream"):
            await asyncio.sleep(delay)
            return web.json_response(message)

        async def events() -> AsyncIterator[tuple[str | None, Any]]:
            start = {
                **message, "content": [], "stop_reason": None,
                "usage": {**usage, "output_tokens": 1},
            }
            yield "message_start", {"type": "message_start", "message": start}
            yield "content_block_start", {
                "type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
            await asyncio.sleep(delay)
            for word in REPLY:
                yield "content_block_delta", {
                    "type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": word + " "},
                }
            yield "content_block_stop", {"type": "content_block_stop", "index": 0}
            yield "message_delta", {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(REPLY)},
            }
            yield "message_stop", {"type": "message_stop"}

        return await self._sse(request, events())

    # -- OpenAI embeddings -------------------------------------------------------------------
    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body, error = await self._prelude(request, "embeddings")
        if error is not None:
            return error
        prompt = _words(body.get("input"))
        self.sent.add(prompt, 0)
        return web.json_response({
            "object": "list", "model": body["model"],
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        })
