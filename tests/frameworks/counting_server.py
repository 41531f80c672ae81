"""A loopback OpenAI-compatible server that counts exactly what it sent, and a network fence.

:class:`CountingServer` answers chat completions and the responses API (plain and streamed)
with a FIXED usage per request (``PROMPT`` + ``COMPLETION`` tokens) whatever the prompt, so
a test knows the totals the plugin must report without guessing a framework's system prompt:
they are the sums over :attr:`CountingServer.sent`.  A stream carries usage only when the
request asked for it (``stream_options.include_usage``; always for the responses API), as the
real API does, and :attr:`Tally.unknown_calls` counts the streams that got none.  The reply
is a short text that also works as a smolagents ``CodeAgent`` step (a code block calling
``final_answer``).

It builds on the shared loopback base of ``tests/llm_server.py`` (server thread, SSE writer,
the OpenAI wire shapes); only the fixed usage, the tally and the handoff are its own.

:class:`Fence` is a blackhole HTTP proxy: the framework tests point ``HTTP(S)_PROXY`` at it,
so a framework that tries to phone home (telemetry, a model-price download, a trace
exporter) reaches 127.0.0.1 instead of the internet, gets a 403, and is recorded in
:attr:`Fence.attempts`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from llm_server import (
    LoopbackServer,
    LoopThread,
    chat_chunks,
    chat_completion,
    response_events,
    response_object,
)

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


class CountingServer(LoopbackServer):
    """``start()`` returns self; ``base_url`` ends in ``/v1``; ``stop()`` when done."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Sent] = []
        self.unexpected: list[str] = []
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_route("*", "/{tail:.*}", self._other)

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

    # -- chat completions --------------------------------------------------------------------
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        usage = {
            "prompt_tokens": PROMPT, "completion_tokens": COMPLETION,
            "total_tokens": PROMPT + COMPLETION,
        }
        base = {"id": f"chatcmpl-{time.perf_counter_ns()}", "created": 0, "model": body["model"]}
        if not body.get("stream"):
            self._record("chat", body, usage=True)
            return chat_completion(base, REPLY, usage)
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        self._record("chat", body, usage=include)
        return await self.sse(request, chat_chunks(base, REPLY, usage if include else None))

    # -- responses API -----------------------------------------------------------------------
    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self._record("responses", body, usage=True)
        model = body["model"]
        rid = f"resp_{time.perf_counter_ns()}"
        usage = {
            "input_tokens": PROMPT, "output_tokens": COMPLETION,
            "total_tokens": PROMPT + COMPLETION,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        # an agent that can hand off (a ``transfer_to_*`` tool) does so, once per run
        handoff = next((str(t["name"]) for t in body.get("tools") or ()
                        if isinstance(t, dict) and str(t.get("name", "")).startswith(
                            "transfer_to_")), None)
        items = body.get("input") if isinstance(body.get("input"), list) else []
        item = None
        if handoff is not None and not any(
                isinstance(i, dict) and i.get("type") == "function_call_output" for i in items):
            item = {"type": "function_call", "id": "fc_1", "call_id": "call_1",
                    "name": handoff, "arguments": "{}", "status": "completed"}
        if not body.get("stream"):
            return web.json_response(
                response_object(rid, model, "completed", REPLY, usage, item))
        return await self.sse(request, response_events(rid, model, REPLY, usage, item=item))


class Fence:
    """A blackhole HTTP proxy on 127.0.0.1: records the request line, answers 403, closes."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self._loop = LoopThread()
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
