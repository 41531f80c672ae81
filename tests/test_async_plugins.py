"""The async fixtures and the guide's async examples under pytest-asyncio and under anyio.

pytest-agentperf depends on no async plugin: ``batch_processor`` and
``connection_pool`` are made and closed in the loop of whichever plugin runs the test.
"""

from __future__ import annotations

import pytest

from _support import by_id, read_report

#: the fixtures used for real: a batch, and a pooled HTTP session against a local server
FIXTURE_TESTS = """
import asyncio, pytest
from aiohttp import web

{marker}
async def test_batch(batch_processor):
    out = await asyncio.gather(*(batch_processor.process(i, lambda xs: [x * 2 for x in xs])
                                 for i in range(10)))
    assert out == [i * 2 for i in range(10)]

{marker}
async def test_pool(connection_pool):
    async def hello(request):
        return web.Response(text="hi")
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        for _ in range(3):
            session = await connection_pool.acquire()
            async with session.get(f"http://127.0.0.1:{{port}}/") as resp:
                assert await resp.text() == "hi"
            await connection_pool.release(session)
    finally:
        await runner.cleanup()
"""

#: the guide's two async example tests, as printed apart from the marker
GUIDE_ASYNC = """
import asyncio, pytest
from typing import List
from pytest_agentperf import BatchProcessor, ConnectionPool

{marker}
async def test_batch_processor():
    processor = BatchProcessor[int, int](batch_size=5, max_wait_time=0.05)
    def double_batch(items: List[int]) -> List[int]:
        return [x * 2 for x in items]
    tasks = []
    for i in range(10):
        task = processor.process(i, double_batch)
        tasks.append(task)
    results = await asyncio.gather(*tasks)
    assert results == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]

{marker}
async def test_connection_pool():
    pool = ConnectionPool(min_connections=2, max_connections=5)
    await pool.initialize()
    connections = []
    for _ in range(3):
        conn = await pool.acquire()
        connections.append(conn)
    stats = pool.get_pool_stats()
    assert stats["active_connections"] == 3
    for conn in connections:
        await pool.release(conn)
    stats = pool.get_pool_stats()
    assert stats["active_connections"] == 0
"""

ANYIO_BACKEND = """
import pytest

@pytest.fixture
def anyio_backend():
    return "asyncio"
"""

ASYNCIO = "@pytest.mark.asyncio"
ANYIO = "@pytest.mark.anyio"


def _without_pytest_asyncio(pt: pytest.Pytester, disabled: tuple[str, ...]) -> None:
    if "no:asyncio" in disabled:  # its ini option would be unknown
        pt.makeini("[pytest]\n")


def _check_sections(pt: pytest.Pytester) -> None:
    tests = by_id(read_report(pt.path / "r.json"))
    assert tests["test_batch"]["batch"]["items"] == 10
    pool = tests["test_pool"]["pool"]
    assert pool["created"] + pool["reused"] == 3


@pytest.mark.parametrize("disabled", [(), ("-p", "no:asyncio")], ids=["asyncio-too", "anyio-only"])
def test_fixtures_under_anyio(pt: pytest.Pytester, disabled: tuple[str, ...]) -> None:
    _without_pytest_asyncio(pt, disabled)
    pt.makeconftest(ANYIO_BACKEND)
    pt.makepyfile(FIXTURE_TESTS.format(marker=ANYIO))
    result = pt.runpytest("--perf-report=r.json", "-W", "error", *disabled)
    result.assert_outcomes(passed=2)
    _check_sections(pt)


@pytest.mark.parametrize("disabled", [(), ("-p", "no:anyio")], ids=["anyio-too", "asyncio-only"])
def test_fixtures_under_pytest_asyncio(pt: pytest.Pytester, disabled: tuple[str, ...]) -> None:
    pt.makepyfile(FIXTURE_TESTS.format(marker=ASYNCIO))
    result = pt.runpytest("--perf-report=r.json", "-W", "error", *disabled)
    result.assert_outcomes(passed=2)
    _check_sections(pt)


@pytest.mark.parametrize(
    ("marker", "disabled"),
    [(ASYNCIO, ("-p", "no:anyio")), (ANYIO, ("-p", "no:asyncio"))],
    ids=["pytest-asyncio", "anyio"],
)
def test_guide_async_examples(pt: pytest.Pytester, marker: str, disabled: tuple[str, ...]) -> None:
    _without_pytest_asyncio(pt, disabled)
    pt.makeconftest(ANYIO_BACKEND)
    pt.makepyfile(GUIDE_ASYNC.format(marker=marker))
    pt.runpytest("-W", "error", *disabled).assert_outcomes(passed=2)


def test_async_fixture_without_an_async_plugin_says_what_to_install(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        def test_sync(connection_pool):
            pass
        """
    )
    pt.makeini("[pytest]\n")
    result = pt.runpytest("-p", "no:asyncio", "-p", "no:anyio")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*connection_pool fixture is made in the test's event loop and needs an async test "
        "plugin*pytest-agentperf[[]asyncio[]]*",
    ])
    result.stdout.no_fnmatch_line("*Traceback*")
