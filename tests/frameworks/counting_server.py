"""A loopback OpenAI-compatible server that counts exactly what it sent, and a network fence.

:class:`CountingServer` answers chat completions and the responses API (plain and streamed)
with a FIXED usage per request (``PROMPT`` + ``COMPLETION`` tokens) whatever the prompt, so
a test knows the totals the plugin must report without guessing a framework's system prompt:
they are the sums over :attr:`CountingServer.sent`.  A stream carries usage only when the
request asked for it (``stream_options.include_usage``; always for the responses API), as the
real API does, and :attr:`Tally.unknown_calls` counts the streams that got none.  The reply
is a short text that also works as a smolagents ``CodeAgent`` step (a code block calling
``final_answer``).

:class:`Fence` is a blackhole HTTP proxy: the framework tests point ``HTTP(S)_PROXY`` at it,
so a framework that tries to phone home (telemetry, a model-price download, a trace
exporter) reaches 127.0.0.1 instead of the internet, gets a 403, and is recorded in
:attr:`Fence.attempts`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

PROMPT = 21
COMPLETION = 8
REPLY = 'Thought: done.\n<code>\nfinal_answer("done")\n</code>'


@dataclass(frozen=True)
class Sent:
    """One answered LLM request, as the server sent it."""

    api: str  # "chat" or "responses"
    model: str
    stream: bool
    usage: bool  # whether the answer carried usage


@dataclass(frozen=True)
class Tally:
    calls: int
    prompt: int
    completion: int
    total: int
    unknown_calls: int
    streamed_calls: int


class _Loop:
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


class CountingServer:
    """``start()`` returns self; ``base_url`` ends in ``/v1``; ``stop()`` when done."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.unexpected: list[str] = []
        self._lock = threading.Lock()
        self._loop = _Loop()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> CountingServer:
        self._loop.run(self._start())
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._runner is not None:
            self._loop.run(self._runner.cleanup())
        self._loop.close()

    def tally(self, model: str | None = None) -> Tally:
        """What the server sent (to ``model`` only, when given)."""
        with self._lock:
            sent = [s for s in self.sent if model is None or s.model == model]
        with_usage = sum(s.usage for s in sent)
        return Tally(
            calls=len(sent),
            prompt=PROMPT * with_usage,
            completion=COMPLETION * with_usage,
            total=(PROMPT + COMPLETION) * with_usage,
            unknown_calls=len(sent) - with_usage,
            streamed_calls=sum(s.stream for s in sent),
        )

    def _record(self, api: str, body: dict[str, Any], usage: bool) -> None:
        with self._lock:
            self.sent.append(Sent(api, str(body.get("model")), bool(body.get("stream")), usage))

    async def _other(self, request: web.Request) -> web.Response:
        with self._lock:
            self.unexpected.append(f"{request.method} {request.path}")
        return web.json_response({"error": {"message": "not here", "type": "invalid"}}, status=404)

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

    # -- chat completions --------------------------------------------------------------------
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body["model"]
        usage = {
            "prompt_tokens": PROMPT, "completion_tokens": COMPLETION,
            "total_tokens": PROMPT + COMPLETION,
        }
        base = {"id": f"chatcmpl-{time.perf_counter_ns()}", "created": 0, "model": model}
        if not body.get("stream"):
            self._record("chat", body, usage=True)
            return web.json_response({
                **base, "object": "chat.completion",
                "choices": [{
                    "index": 0, "finish_reason": "stop", "logprobs": None,
                    "message": {"role": "assistant", "content": REPLY},
                }],
                "usage": usage,
            })
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        self._record("chat", body, usage=include)

        async def events() -> AsyncIterator[tuple[str | None, Any]]:
            def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
                return {
                    **base, "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }

            yield None, chunk({"role": "assistant", "content": ""})
            for part in REPLY.split(" "):
                yield None, chunk({"content": part + " "})
            yield None, chunk({}, "stop")
            if include:
                yield None, {**base, "object": "chat.completion.chunk", "choices": [],
                             "usage": usage}
            yield None, "[DONE]"

        return await self._sse(request, events())

    # -- responses API -----------------------------------------------------------------------
    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self._record("responses", body, usage=True)
        model = body["model"]
        rid = f"resp_{time.perf_counter_ns()}"
        message = {
            "type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": REPLY, "annotations": []}],
        }

        # an agent that can hand off (a ``transfer_to_*`` tool) does so, once per run
        handoff = next((str(t["name"]) for t in body.get("tools") or ()
                        if isinstance(t, dict) and str(t.get("name", "")).startswith(
                            "transfer_to_")), None)
        items = body.get("input") if isinstance(body.get("input"), list) else []
        if handoff is not None and not any(
                isinstance(i, dict) and i.get("type") == "function_call_output" for i in items):
            message = {"type": "function_call", "id": "fc_1", "call_id": "call_1",
                       "name": handoff, "arguments": "{}", "status": "completed"}

        def response(status: str, done: bool) -> dict[str, Any]:
            return {
                "id": rid, "object": "response", "created_at": 0, "model": model,
                "status": status, "parallel_tool_calls": True, "tool_choice": "auto",
                "tools": [], "metadata": {}, "error": None, "incomplete_details": None,
                "instructions": None, "temperature": 1.0, "top_p": 1.0,
                "output": [message] if done else [],
                "usage": {
                    "input_tokens": PROMPT, "output_tokens": COMPLETION,
                    "total_tokens": PROMPT + COMPLETION,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0},
                } if done else None,
            }

        if not body.get("stream"):
            return web.json_response(response("completed", True))

        async def events() -> AsyncIterator[tuple[str | None, Any]]:
            seq = iter(range(1000))
            part = {"type": "output_text", "text": "", "annotations": []}
            where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
            evs: list[dict[str, Any]] = [
                {"type": "response.created", "response": response("in_progress", False)},
                {"type": "response.in_progress", "response": response("in_progress", False)},
                {"type": "response.output_item.added", "output_index": 0,
                 "item": {**message, "status": "in_progress", "content": []}},
                {"type": "response.content_part.added", **where, "part": part},
                *({"type": "response.output_text.delta", **where, "delta": word + " ",
                   "logprobs": []} for word in REPLY.split(" ")),
                {"type": "response.output_text.done", **where, "text": REPLY, "logprobs": []},
                {"type": "response.content_part.done", **where,
                 "part": {**part, "text": REPLY}},
                {"type": "response.output_item.done", "output_index": 0, "item": message},
                {"type": "response.completed", "response": response("completed", True)},
            ]
            for ev in evs:
                yield ev["type"], {**ev, "sequence_number": next(seq)}

        return await self._sse(request, events())


class Fence:
    """A blackhole HTTP proxy on 127.0.0.1: records the request line, answers 403, closes."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self._loop = _Loop()
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Fence:
        self._server = self._loop.run(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            self.attempts.append(line.decode("latin-1").strip())
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            await writer.drain()
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._loop.run(self._server.wait_closed())
        self._loop.close()
