"""The optimisation fixtures through real pytest runs: wiring, report sections, teardown."""

from __future__ import annotations

import pytest

from _support import by_id, read_report


def test_agent_cache_batch_and_pool_sections(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import asyncio, pytest
        from aiohttp import web

        def test_cache(agent_cache, cache):
            calls = []

            @agent_cache.cached()
            def expensive(x):
                calls.append(x)
                return x * 2

            assert expensive(2) == expensive(x=2) == 4
            assert calls == [2]
            cache.set("still/works", 1)   # pytest's own cache fixture is untouched
            assert cache.get("still/works", None) == 1

        @pytest.mark.asyncio
        async def test_batch(batch_processor):
            def double(items):
                return [i * 2 for i in items]
            out = await asyncio.gather(*(batch_processor.process(i, double) for i in range(10)))
            assert out == [i * 2 for i in range(10)]

        @pytest.mark.asyncio
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
                for _ in range(5):
                    session = await connection_pool.acquire()
                    async with session.get(f"http://127.0.0.1:{port}/") as resp:
                        assert await resp.text() == "hi"
                    await connection_pool.release(session)
            finally:
                await runner.cleanup()
        """
    )
    result = pt.runpytest("--perf-report=r.json", "-W", "error")
    result.assert_outcomes(passed=3)
    tests = by_id(read_report(pt.path / "r.json"))
    cache = tests["test_cache"]["cache"]
    assert (cache["hits"], cache["misses"], cache["hit_rate"]) == (1, 1, 0.5)
    assert set(cache) >= {"hit_rate", "hits", "misses", "time_saved_s", "size", "evictions"}
    batch = tests["test_batch"]["batch"]
    assert batch["items"] == 10 and batch["batches"] >= 1
    assert batch["queue_wait_p95_s"] is not None
    pool = tests["test_pool"]["pool"]
    assert pool["created"] >= 1
    assert pool["created"] + pool["reused"] == 5
    assert pool["reuse_rate"] == pytest.approx(pool["reused"] / 5)


def test_guide_examples_pass_as_printed(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import asyncio, time, pytest
        from typing import List
        from pytest_agentperf import BatchProcessor, IntelligentCache, ConnectionPool

        @pytest.mark.asyncio
        async def test_batch_processor():
            processor = BatchProcessor[int, int](batch_size=5, max_wait_time=0.05)
            # Process function that doubles values
            def double_batch(items: List[int]) -> List[int]:
                return [x * 2 for x in items]
            # Submit multiple items
            tasks = []
            for i in range(10):
                task = processor.process(i, double_batch)
                tasks.append(task)
            results = await asyncio.gather(*tasks)
            assert results == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]

        def test_intelligent_cache():
            cache = IntelligentCache(max_size=3)
            call_count = 0
            @cache.cached()
            def expensive_function(x):
                nonlocal call_count
                call_count += 1
                time.sleep(0.1) # Simulate expensive operation
                return x * 2
            # First call - cache miss
            result1 = expensive_function(5)
            assert result1 == 10
            assert call_count == 1
            # Second call - cache hit
            result2 = expensive_function(5)
            assert result2 == 10
            assert call_count == 1
            # Check cache stats
            stats = cache.get_cache_stats()
            assert stats["hit_rate"] == 0.5
            assert stats["estimated_time_saved"] >= 0.1

        @pytest.mark.asyncio
        async def test_connection_pool():
            pool = ConnectionPool(min_connections=2, max_connections=5)
            await pool.initialize()
            # Acquire multiple connections
            connections = []
            for _ in range(3):
                conn = await pool.acquire()
                connections.append(conn)
            stats = pool.get_pool_stats()
            assert stats["active_connections"] == 3
            # Release connections
            for conn in connections:
                await pool.release(conn)
            stats = pool.get_pool_stats()
            assert stats["active_connections"] == 0
        """
    )
    pt.runpytest("-W", "error").assert_outcomes(passed=3)
