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
        @pytest.mark.perf_budget(loop_block=1.0)  # wide: a busy CPU delays steps
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
        "*perf budget exceeded: loop_block 2?? ms > 50 ms (n=1)*",
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
    result.stdout.fnmatch_lines(["*leak_mb 20* MiB > 5 MiB*", "*test_mem.py:7*"])
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


def test_loop_block_budget_without_a_watched_loop_is_unverifiable(pt: pytest.Pytester) -> None:
    """No asyncio step seen (a sync test, trio, uvloop): unknown, never 0 s."""
    pt.makepyfile(
        test_loops="""
        import asyncio, pytest, uvloop

        @pytest.mark.perf_budget(loop_block=0.05)
        def test_sync():
            pass

        @pytest.mark.anyio
        @pytest.mark.perf_budget(loop_block=0.05)
        async def test_on_trio():
            import trio
            await trio.sleep(0)

        @pytest.fixture
        def anyio_backend():
            return "trio"

        @pytest.fixture
        def event_loop_policy():
            return uvloop.EventLoopPolicy()

        @pytest.mark.asyncio
        @pytest.mark.perf_budget(loop_block=0.05)
        async def test_on_uvloop():
            assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
            await asyncio.sleep(0)
        """
    )
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines([
        "*loop_block unknown > 50 ms (n=0) [[]unverifiable: loop_block/max_block_s missing: "
        "no asyncio event loop was watched*",
    ])
    tests = by_id(read_report(pt.path / "r.json"))
    for name in ("test_sync", "test_on_trio", "test_on_uvloop"):
        section = tests[name]["loop_block"]
        assert section["watched"] is False and section["max_block_s"] is None, name


def test_n_plus_one_counts_are_exact_past_the_profilers_cap(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        def test_long_loop(profiler):
            for _ in range(12_000):  # the profiler keeps the last 10,000 operations
                with profiler.profile_operation("db", "get"):
                    pass
        """
    )
    pt.runpytest("--perf-report=r.json").assert_outcomes(passed=1)
    [finding] = by_id(read_report(pt.path / "r.json"))["test_long_loop"]["findings"]
    assert finding["calls"] == 12_000 and finding["calls_examined"] == 10_000
    assert "db:get called 12000 times" in finding["message"]


def test_loops_driven_by_benchmark_or_hypothesis_are_not_n_plus_one(
    pt: pytest.Pytester,
) -> None:
    """pytest-benchmark and hypothesis call the body in a tight loop: each profiled
    operation repeats by construction.  Not a finding; an n_plus_one budget there
    is unverifiable, not a pass."""
    pt.makepyfile(
        """
        import pytest
        from hypothesis import HealthCheck, given, settings, strategies as st

        def op(profiler):
            with profiler.profile_operation("db", "get"):
                pass

        def test_bench(benchmark, profiler):
            benchmark.pedantic(op, args=(profiler,), rounds=30, iterations=1)

        @settings(max_examples=30, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(st.integers())
        def test_prop(profiler, n):
            op(profiler)

        @pytest.mark.perf_budget(n_plus_one=0)
        def test_bench_budget(benchmark, profiler):
            benchmark.pedantic(op, args=(profiler,), rounds=30, iterations=1)
        """
    )
    result = pt.runpytest("--perf-report=r.json", "-p", "no:cacheprovider",
                          "-W", "ignore::pytest.PytestDeprecationWarning")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*n_plus_one 0 findings > 0 findings [[]unverifiable: the test body is repeated by "
        "pytest-benchmark; N+1 is not judged*",
    ])
    tests = by_id(read_report(pt.path / "r.json"))
    assert tests["test_bench"]["findings"] == []
    assert tests["test_prop"]["findings"] == []
