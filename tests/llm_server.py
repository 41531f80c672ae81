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
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from typing_extensions import Self

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


class LoopThread:
    """An event loop in a daemon thread (so that sync SDK clients can reach our servers)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class LoopbackServer:
    """An aiohttp app on 127.0.0.1 (port 0) in its own :class:`LoopThread`; subclasses add
    their routes in :meth:`routes`.  ``start()`` returns self; ``stop()`` when done."""

    def __init__(self) -> None:
        self._loop = LoopThread()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._loop.run(self._start())
        return self

    async def _start(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._runner is not None:
            self._loop.run(self._runner.cleanup())
        self._loop.close()

    @staticmethod
    async def sse(
        request: web.Request, events: AsyncIterator[tuple[str | None, Any]]
    ) -> web.StreamResponse:
        """Write ``(event name, data)`` pairs as server-sent events (data: JSON or a string)."""
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        async for event, data in events:
            payload = data if isinstance(data, str) else json.dumps(data)
            head = f"event: {event}\n" if event else ""
            await resp.write(f"{head}data: {payload}\n\n".encode())
        await resp.write_eof()
        return resp


# -- OpenAI wire shapes, shared by the servers of the tests ------------------------------------
def chat_completion(
    base: dict[str, Any], text: str, usage: dict[str, Any] | None
) -> web.Response:
    """A non-streamed chat completion (``base``: ``id``, ``created``, ``model``)."""
    return web.json_response({
        **base, "object": "chat.completion",
        "choices": [{
            "index": 0, "finish_reason": "stop", "logprobs": None,
            "message": {"role": "assistant", "content": text},
        }],
        "usage": usage,
    })


async def chat_chunks(
    base: dict[str, Any], text: str, usage: dict[str, Any] | None, delay: float = 0.0
) -> AsyncIterator[tuple[str | None, Any]]:
    """A chat completion stream of ``text``, a word a chunk; ``usage`` (when the request
    asked for it) rides on a last chunk without choices, as the API sends it with
    ``include_usage``."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            **base, "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            out["usage"] = None
        return out

    yield None, chunk({"role": "assistant", "content": ""})
    await asyncio.sleep(delay)
    for word in text.split(" "):
        yield None, chunk({"content": word + " "})
    yield None, chunk({}, "stop")
    if usage is not None:
        yield None, {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
    yield None, "[DONE]"


def response_object(
    rid: str, model: str, status: str, text: str | None, usage: dict[str, Any] | None,
    item: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A responses-API ``Response``; ``text`` None: no output yet; ``item``: the output item
    (default: a message of ``text``)."""
    return {
        "id": rid, "object": "response", "created_at": 0, "model": model,
        "status": status, "parallel_tool_calls": True, "tool_choice": "auto",
        "tools": [], "metadata": {}, "error": None, "incomplete_details": None,
        "instructions": None, "temperature": 1.0, "top_p": 1.0,
        "output": [] if text is None else [item or _message(text, "completed")],
        "usage": usage,
    }


def _message(text: str | None, status: str) -> dict[str, Any]:
    return {
        "type": "message", "id": "msg_1", "status": status, "role": "assistant",
        "content": [] if text is None else
        [{"type": "output_text", "text": text, "annotations": []}],
    }


async def response_events(
    rid: str, model: str, text: str, usage: dict[str, Any] | None, delay: float = 0.0,
    item: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[str | None, Any]]:
    """A responses-API stream of ``text`` (a word a delta), ending in ``response.completed``
    with ``usage``; ``item``: the output item (default: a message of ``text``)."""
    done = item or _message(text, "completed")
    started = response_object(rid, model, "in_progress", None, None)
    part = {"type": "output_text", "text": "", "annotations": []}
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    head: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**done, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", **where, "part": part},
    ]
    tail: list[dict[str, Any]] = [
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": {**part, "text": text}},
        {"type": "response.output_item.done", "output_index": 0, "item": done},
        {"type": "response.completed",
         "response": response_object(rid, model, "completed", text, usage, item)},
    ]
    seq = 0
    for ev in head:
        yield ev["type"], {**ev, "sequence_number": seq}
        seq += 1
    await asyncio.sleep(delay)
    for word in text.split(" "):
        yield "response.output_text.delta", {
            "type": "response.output_text.delta", "sequence_number": seq, **where,
            "delta": word + " ", "logprobs": [],
        }
        seq += 1
    for ev in tail:
        yield ev["type"], {**ev, "sequence_number": seq}
        seq += 1


class LLMServer(LoopbackServer):
    """Start with :meth:`start` (returns self), stop with :meth:`stop`; ``base_url`` is the root."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._failures: dict[str, int] = {}
        self.sent = Sent()
        self._ids = 0

    @property
    def base_url(self) -> str:
        return self.root

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/embeddings", self._embeddings)

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

    # -- OpenAI chat completions -------------------------------------------------------------
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, error = await self._prelude(request, "chat")
        if error is not None:
            return error
        prompt = _words(body.get("messages"))
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": len(REPLY),
            "total_tokens": prompt + len(REPLY),
            "prompt_tokens_details": {"cached_tokens": _int_header(request, "x-cached")},
            "completion_tokens_details": {"reasoning_tokens": _int_header(request, "x-reasoning")},
        }
        delay = _int_header(request, "x-delay-ms") / 1000
        base = {"id": self._next_id("chatcmpl-"), "created": 0, "model": body["model"]}
        no_usage = "x-no-usage" in request.headers
        if not body.get("stream"):
            await asyncio.sleep(delay)
            self.sent.add(None if no_usage else prompt, len(REPLY))
            return chat_completion(base, " ".join(REPLY), None if no_usage else usage)
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        include = include and not no_usage
        self.sent.add(prompt if include else None, len(REPLY))
        return await self.sse(
            request, chat_chunks(base, " ".join(REPLY), usage if include else None, delay)
        )

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
        usage = None if no_usage else {
            "input_tokens": prompt, "output_tokens": len(REPLY),
            "total_tokens": prompt + len(REPLY),
            "input_tokens_details": {"cached_tokens": _int_header(request, "x-cached")},
            "output_tokens_details": {"reasoning_tokens": _int_header(request, "x-reasoning")},
        }
        if not body.get("stream"):
            await asyncio.sleep(delay)
            return web.json_response(response_object(rid, model, "completed", text, usage))
        return await self.sse(request, response_events(rid, model, text, usage, delay))

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

        return await self.sse(request, events())

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
