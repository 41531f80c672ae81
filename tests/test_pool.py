"""ConnectionPool against real aiohttp servers on 127.0.0.1 (port 0)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from pytest_agentperf.toolkit.pool import (
    ConnectionPool,
    PoolClosedError,
    PooledSession,
    PoolTimeoutError,
)

# The guide's example test, as printed, runs in test_plugin_fixtures.py
# (importing from the package root, as users do).


# --- servers ----------------------------------------------------------------------
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest_asyncio.fixture
async def server_url() -> AsyncIterator[str]:
    async def ok(request: web.Request) -> web.Response:
        delay = float(request.query.get("delay", "0"))
        if delay:
            await asyncio.sleep(delay)
        return web.Response(text="ok")

    runner, url = await _serve(ok)
    yield url
    await runner.cleanup()


@pytest_asyncio.fixture
async def flaky_url() -> AsyncIterator[str]:
    """A server that drops the connection without answering for /drop."""

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/drop":
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0)
            raise asyncio.CancelledError  # the connection is gone
        return web.Response(text="ok")

    runner, url = await _serve(handler)
    yield url
    await runner.cleanup()


@pytest.fixture
def down_url() -> str:
    """A loopback address nothing listens on (port bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest_asyncio.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    async with ConnectionPool(min_connections=2, max_connections=4, connection_timeout=5) as p:
        yield p


async def _get(session: PooledSession, url: str) -> str:
    async with session.get(url) as resp:
        resp.raise_for_status()
        return await resp.text()


# --- tests -------------------------------------------------------------------------
def test_defaults_and_validation() -> None:
    p = ConnectionPool()
    assert (p.min_connections, p.max_connections, p.connection_timeout) == (5, 20, 30.0)
    with pytest.raises(ValueError, match="max_connections"):
        ConnectionPool(max_connections=0)
    with pytest.raises(ValueError, match="min_connections"):
        ConnectionPool(min_connections=3, max_connections=2)
    with pytest.raises(ValueError, match="connection_timeout"):
        ConnectionPool(connection_timeout=0)


@pytest.mark.asyncio
async def test_requests_reuse_tcp_connections(pool: ConnectionPool, server_url: str) -> None:
    for _ in range(5):
        session = await pool.acquire()
        assert await _get(session, server_url) == "ok"
        await pool.release(session)
    stats = pool.get_pool_stats()
    assert stats["connections_created"] == 1  # one TCP connection, kept alive
    assert stats["connections_reused"] == 4
    assert stats["connection_reuse_rate"] == pytest.approx(0.8)
    assert stats["connection_errors"] == 0
    assert stats["requests"] == 5
    section = pool.report_section()
    json.dumps(section)
    assert (section["created"], section["reused"], section["errors"]) == (1, 4, 0)
    assert section["wait_time_s"]["total"] >= 0.0


@pytest.mark.asyncio
async def test_concurrent_requests_bounded_by_max_connections(
    pool: ConnectionPool, server_url: str
) -> None:
    async def user() -> str:
        async with pool.connection() as session:
            return await _get(session, f"{server_url}/?delay=0.02")

    results = await asyncio.wait_for(asyncio.gather(*(user() for _ in range(12))), timeout=10)
    assert results == ["ok"] * 12
    stats = pool.get_pool_stats()
    assert stats["peak_active"] == 4
    assert 1 <= stats["connections_created"] <= 4
    assert stats["connections_created"] + stats["connections_reused"] == 12
    assert stats["active_connections"] == 0
    assert stats["wait_time_total"] > 0


@pytest.mark.asyncio
async def test_one_session_many_concurrent_requests_limited_by_connector(
    server_url: str,
) -> None:
    async with ConnectionPool(min_connections=1, max_connections=3) as pool:
        session = await pool.acquire()
        results = await asyncio.gather(
            *(_get(session, f"{server_url}/?delay=0.02") for _ in range(9))
        )
        await pool.release(session)
        assert results == ["ok"] * 9
        assert pool.get_pool_stats()["connections_created"] <= 3


@pytest.mark.asyncio
async def test_exhausted_pool_times_out_with_clear_error() -> None:
    async with ConnectionPool(min_connections=0, max_connections=2, connection_timeout=0.05) as p:
        held = [await p.acquire(), await p.acquire()]
        with pytest.raises(PoolTimeoutError, match=r"max_connections=2.*0.05s") as info:
            await p.acquire()
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, asyncio.TimeoutError)
        assert p.get_pool_stats()["acquire_timeouts"] == 1
        # the slot count is intact: releasing one lets the next acquire through
        await p.release(held.pop())
        got = await asyncio.wait_for(p.acquire(), timeout=1)
        assert p.get_pool_stats()["active_connections"] == 2
        await p.release(got)
        await p.release(held.pop())


@pytest.mark.asyncio
async def test_waiters_are_served_in_order_when_released() -> None:
    async with ConnectionPool(min_connections=0, max_connections=1, connection_timeout=5) as p:
        first = await p.acquire()
        order: list[int] = []

        async def waiter(i: int) -> None:
            s = await p.acquire()
            order.append(i)
            await asyncio.sleep(0)
            await p.release(s)

        tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
        await asyncio.sleep(0.01)
        assert p.get_pool_stats()["waiting"] == 3
        await p.release(first)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
        assert order == [0, 1, 2]
        assert p.get_pool_stats()["peak_active"] == 1


@pytest.mark.asyncio
async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    async with ConnectionPool(min_connections=0, max_connections=1, connection_timeout=5) as p:
        first = await p.acquire()
        doomed = asyncio.create_task(p.acquire())
        await asyncio.sleep(0.01)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        await p.release(first)
        again = await asyncio.wait_for(p.acquire(), timeout=1)
        await p.release(again)
        assert p.get_pool_stats()["active_connections"] == 0


@pytest.mark.asyncio
async def test_double_release_is_an_error(pool: ConnectionPool) -> None:
    s = await pool.acquire()
    await pool.release(s)
    with pytest.raises(ValueError, match="not leased"):
        await pool.release(s)


@pytest.mark.asyncio
async def test_server_closing_connections_counts_errors_and_pool_recovers(
    pool: ConnectionPool, flaky_url: str
) -> None:
    errors = 0
    for i in range(6):
        async with pool.connection() as session:
            try:
                await _get(session, f"{flaky_url}/drop" if i % 2 else flaky_url)
            except aiohttp.ClientError:
                errors += 1
    assert errors == 3
    stats = pool.get_pool_stats()
    assert stats["connection_errors"] >= 3
    assert stats["connections_created"] >= 3  # dropped connections were replaced
    async with pool.connection() as session:
        assert await _get(session, flaky_url) == "ok"
    assert pool.get_pool_stats()["active_connections"] == 0


@pytest.mark.asyncio
async def test_server_down_counts_errors_and_pool_recovers(
    pool: ConnectionPool, down_url: str, server_url: str
) -> None:
    for _ in range(3):
        async with pool.connection() as session:
            with pytest.raises(aiohttp.ClientConnectionError):
                await _get(session, down_url)
    stats = pool.get_pool_stats()
    assert stats["connection_errors"] == 3
    assert stats["active_connections"] == 0
    async with pool.connection() as session:
        assert await _get(session, server_url) == "ok"


@pytest.mark.asyncio
async def test_user_closed_session_is_retired_and_replaced(
    pool: ConnectionPool, server_url: str
) -> None:
    s = await pool.acquire()
    assert await _get(s, server_url) == "ok"
    await s.close()
    assert s.closed
    await pool.release(s)
    s2 = await pool.acquire()
    assert s2 is not s
    assert await _get(s2, server_url) == "ok"
    await pool.release(s2)
    assert pool.get_pool_stats()["total_connections"] >= pool.min_connections


@pytest.mark.asyncio
async def test_close_closes_leased_sessions_and_rejects_new_acquires(server_url: str) -> None:
    p = ConnectionPool(min_connections=1, max_connections=1, connection_timeout=5)
    await p.initialize()
    s = await p.acquire()
    assert await _get(s, server_url) == "ok"
    waiting = asyncio.create_task(p.acquire())
    await asyncio.sleep(0.01)
    await p.close()
    assert s.closed
    with pytest.raises(PoolClosedError):
        await waiting
    with pytest.raises(PoolClosedError):
        await p.acquire()
    await p.close()  # idempotent
    assert p.closed


@pytest.mark.asyncio
async def test_session_is_aiohttp_compatible(pool: ConnectionPool, server_url: str) -> None:
    s = await pool.acquire()
    assert isinstance(s.session, aiohttp.ClientSession)
    assert s.connector is pool._connector  # forwarded attribute, shared connector
    assert s.connector_owner is False
    resp = await s.post(server_url, json={"a": 1})
    assert resp.status == 200
    resp.release()
    async with s.request("GET", server_url) as resp2:
        assert await resp2.text() == "ok"
    await pool.release(s)
