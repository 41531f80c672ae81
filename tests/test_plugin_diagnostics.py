"""Diagnostics through real pytest runs: loop blocking, leaks, N+1, async_monitor."""

from __future__ import annotations

import pytest

from _support import by_id, read_report


def test_blocking_call_is_caught_with_its_culprit(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        test_agent="""
        import asyncio, time, pytest

        @pytest.mark.asyncio
        @pytest.mark.perf_budget(loop_block=0.05)
        async def test_blocks():
            await asyncio.sleep(0)
            time.sleep(0.2)
            await asyncio.sleep(0)

        @pytest.mark.asyncio
        @pytest.mark.perf_budget(loop_block=0.05)
        async def test_clean():
            for _ in range(20):
                await asyncio.sleep(0.005)

        @pytest.mark.asyncio
        async def test_blocks_unbudgeted(profiler):
            time.sleep(0.15)
        """
    )
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*perf budget exceeded: loop_block 0.2?? s > 0.050 s (n=1)*",
        "*culprit: *test_agent.py:7 in test_blocks",
        "*time.sleep(0.2)",
    ])
    result.stdout.fnmatch_lines(["*test_blocks_unbudgeted: [[]blocking_call[]]*"])
    tests = by_id(read_report(pt.path / "r.json"))
    blocks = tests["test_blocks"]["loop_block"]
    assert blocks["block_count"] == 1 and blocks["max_block_s"] >= 0.2
    assert tests["test_clean"]["loop_block"]["block_count"] == 0
    assert tests["test_clean"]["findings"] == []
    assert tests["test_blocks_unbudgeted"]["findings_count"] == {"blocking_call": 1}


def test_leak_budget_catches_retained_memory_not_transients(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        test_mem="""
        import pytest

        HELD = []

        @pytest.mark.perf_budget(leak_mb=5)
        def test_leaks():
            HELD.append(bytearray(20 * 1024 * 1024))

        @pytest.mark.perf_budget(leak_mb=5)
        def test_transient():
            block = bytearray(50 * 1024 * 1024)
            del block
        """
    )
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*leak_mb 20.* MiB > 5.0 MiB*", "*test_mem.py:7*"])
    tests = by_id(read_report(pt.path / "r.json"))
    assert tests["test_leaks"]["leak"]["retained_mb"] >= 19
    assert tests["test_transient"]["leak"]["retained_mb"] < 5
    assert tests["test_transient"]["memory"]["peak_mb"] >= 45  # the peak was seen


def test_n_plus_one_warns_and_the_budget_key_makes_it_fail(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import pytest

        def run(profiler, varied):
            for i in range(20):
                key = f"tool-{i}" if varied else "lookup"
                with profiler.profile_operation("agent", key):
                    pass

        def test_loop_warns(profiler):
            run(profiler, varied=False)

        @pytest.mark.perf_budget(n_plus_one=0)
        def test_loop_fails(profiler):
            run(profiler, varied=False)

        @pytest.mark.perf_budget(n_plus_one=0)
        def test_varied_is_clean(profiler):
            run(profiler, varied=True)

        @pytest.mark.perf_budget(n_plus_one=0.5)
        def test_bad_value():
            pass
        """
    )
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*n_plus_one=0.5 must be a whole number >= 0*"])
    result.stdout.fnmatch_lines(["*n_plus_one 1 findings > 0 findings*"])
    result.stdout.fnmatch_lines(["*test_loop_warns: [[]n_plus_one[]]*agent:lookup*"])
    tests = by_id(read_report(pt.path / "r.json"))
    assert tests["test_loop_warns"]["outcome"] == "passed"
    assert tests["test_loop_warns"]["findings"][0]["kind"] == "n_plus_one"
    assert tests["test_varied_is_clean"]["findings"] == []


def test_async_monitor_fixture_reports_concurrency(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import asyncio, pytest

        @pytest.mark.asyncio
        async def test_fan_out(async_monitor):
            async def step(i):
                async with async_monitor.monitor_async_operation("tool"):
                    await asyncio.sleep(0.01)
            await asyncio.gather(*(step(i) for i in range(5)))
            assert async_monitor.get_concurrency_report()["max_concurrent_tasks"] == 5
        """
    )
    pt.runpytest("--perf-report=r.json").assert_outcomes(passed=1)
    section = read_report(pt.path / "r.json")["tests"][0]["async_monitor"]
    assert section["max_concurrent_tasks"] == 5
    assert section["operation_stats"]["tool"]["count"] == 5
    assert section["operation_stats"]["tool"]["max_concurrent"] == 5
