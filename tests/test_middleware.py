"""Server-side timing middleware (aiohttp and ASGI) and its recorder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from pytest_agentperf.toolkit.load import LoadTester
from pytest_agentperf.toolkit.middleware import ASGIMiddleware, RequestRecorder, aiohttp_middleware

Scope = MutableMapping[str, Any]


class App:
    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    async def status_of(self, path: str) -> int:
        async with self.session.get(self.base + path) as resp:
            await resp.read()
            return resp.status


@pytest_asyncio.fixture
async def recorder() -> RequestRecorder:
    return RequestRecorder()


@pytest_asyncio.fixture
async def app(recorder: RequestRecorder) -> AsyncIterator[App]:
    async def item(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "0")))
        return web.Response(text=request.match_info["id"])

    async def missing(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("handler bug")

    application = web.Application(middlewares=[aiohttp_middleware(recorder)])
    application.router.add_get("/items/{id}", item)
    application.router.add_get("/missing", missing)
    application.router.add_get("/broken", broken)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with aiohttp.ClientSession() as session:
        yield App(base, session)
    await runner.cleanup()


@pytest.mark.asyncio
async def test_aiohttp_routes_methods_statuses(app: App, recorder: RequestRecorder) -> None:
    assert await app.status_of("/items/1?s=0.03") == 200
    assert await app.status_of("/items/2") == 200
    assert await app.status_of("/missing") == 404
    assert await app.status_of("/broken") == 500
    assert await app.status_of("/nowhere/at/all") == 404
    section = recorder.report_section()
    rows = {(r["route"], r["method"], r["status"]): r for r in section["routes"]}
    assert set(rows) == {
        ("/items/{id}", "GET", 200),
        ("/missing", "GET", 404),
        ("/broken", "GET", 500),
        ("<unmatched>", "GET", 404),
    }
    assert rows[("/items/{id}", "GET", 200)]["count"] == 2
    assert rows[("/items/{id}", "GET", 200)]["max"] >= 0.03
    assert section["total_requests"] == 5
    assert len(recorder) == 5
    assert len(recorder.histogram(route="/items/{id}")) == 2
    assert len(recorder.histogram(status=404)) == 2


@pytest.mark.asyncio
async def test_server_latency_next_to_client_latency(app: App, recorder: RequestRecorder) -> None:
    tester = LoadTester(server=recorder)

    async def call(user_id: int, request_id: int) -> None:
        assert await app.status_of(f"/items/{request_id}?s=0.01") == 200

    client = await tester.run_load_test(call, concurrent_users=3, requests_per_user=10,
                                        ramp_up_time=0.0)
    section = tester.report_section()
    server = section["server"]
    (row,) = server["routes"]
    assert row["route"] == "/items/{id}" and row["count"] == client["total_requests"] == 30
    # every request's server time lies inside its client time, so each quantile does too
    for key in ("min", "p50", "p90", "max"):
        client_key = "median" if key == "p50" else key
        assert 0.01 <= row[key] <= client["response_time"][client_key]


@pytest.mark.asyncio
async def test_recorder_bounds_routes_and_encodes() -> None:
    recorder = RequestRecorder(max_routes=2)
    for i in range(5):
        recorder.record_ns(f"/raw/{i}", "GET", 200, 1_000_000)
    section = recorder.report_section()
    assert [r["route"] for r in section["routes"]] == ["/raw/0", "/raw/1", "<other>"]
    assert section["folded_requests"] == 3
    assert section["total_requests"] == 5
    blobs = recorder.encode()
    assert set(blobs) == {"GET /raw/0 200", "GET /raw/1 200", "GET <other> 200"}
    recorder.reset()
    assert len(recorder) == 0


def _asgi_app() -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        path = scope["path"]
        if path == "/boom":
            raise RuntimeError("boom")
        if path.startswith("/users/"):
            scope["route"] = type("Route", (), {"path": "/users/{name}"})()
        await asyncio.sleep(0.01 if path == "/slow" else 0)
        status = 201 if scope["method"] == "POST" else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def _call(app: Any, method: str, path: str, kind: str = "http") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app({"type": kind, "method": method, "path": path}, receive, send)
    return sent


@pytest.mark.asyncio
async def test_asgi_middleware() -> None:
    recorder = RequestRecorder()
    app = ASGIMiddleware(_asgi_app(), recorder)
    sent = await _call(app, "GET", "/slow")
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"ok"
    await _call(app, "POST", "/users/ann")
    await _call(app, "GET", "/users/bob")
    with pytest.raises(RuntimeError):
        await _call(app, "GET", "/boom")
    await _call(app, "GET", "/", kind="lifespan")  # passes through untimed
    rows = {(r["route"], r["method"], r["status"]): r for r in recorder.report_section()["routes"]}
    assert set(rows) == {
        ("/slow", "GET", 200),
        ("/users/{name}", "POST", 201),
        ("/users/{name}", "GET", 200),
        ("/boom", "GET", 500),
    }
    assert rows[("/slow", "GET", 200)]["min"] >= 0.01

    custom = RequestRecorder()
    named = ASGIMiddleware(_asgi_app(), custom, route_of=lambda scope: "all")
    await _call(named, "GET", "/a")
    await _call(named, "GET", "/b")
    assert custom.report_section()["routes"][0]["route"] == "all"
    assert custom.report_section()["routes"][0]["count"] == 2
