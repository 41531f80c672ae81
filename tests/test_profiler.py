"""PerformanceProfiler as a library (no pytest plugin involved)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from pytest_agentperf import PerformanceMetrics, PerformanceProfiler


def test_durations_use_a_monotonic_clock_and_are_at_least_the_sleep() -> None:
    prof = PerformanceProfiler()
    with prof.profile_operation("agent", "inference") as m:
        time.sleep(0.05)
    assert isinstance(m, PerformanceMetrics)
    assert m.duration_s is not None and m.duration_s >= 0.05
    assert m.end_time is not None and m.end_time - m.start_time == pytest.approx(m.duration_s)
    assert prof.operations()["agent:inference"]["count"] == 1


def test_cpu_time_not_cpu_percent() -> None:
    prof = PerformanceProfiler()
    with prof.profile_operation("a", "sleep") as idle:
        time.sleep(0.05)
    with prof.profile_operation("a", "spin") as busy:
        # spin until 20 ms of CPU were burnt (bounded by wall time on a starved machine)
        cpu_end = time.process_time() + 0.02
        deadline = time.perf_counter() + 10
        while time.process_time() < cpu_end and time.perf_counter() < deadline:
            pass
    assert idle.cpu_time_s < 0.04
    assert busy.cpu_time_s >= 0.019


def test_tokens_total_prompt_and_completion() -> None:
    prof = PerformanceProfiler()
    with prof.profile_operation("a", "llm") as m:
        m.record_tokens(prompt=100, completion=20)
    with prof.profile_operation("a", "llm") as m:
        m.tokens_used = 7
    assert prof.token_totals() == (127, 100, 20)
    assert prof.operations()["a:llm"]["tokens"] == 127


def test_nested_and_failing_operations_are_each_recorded() -> None:
    prof = PerformanceProfiler()
    with pytest.raises(ZeroDivisionError), prof.profile_operation("a", "outer"):
        with prof.profile_operation("a", "inner"):
            time.sleep(0.001)
        1 / 0  # noqa: B018
    ops = prof.operations()
    assert ops["a:outer"]["errors"] == 1 and ops["a:inner"]["errors"] == 0
    assert ops["a:outer"]["total_s"] >= ops["a:inner"]["total_s"]


def test_threads_with_the_same_operation_name_do_not_clobber() -> None:
    prof = PerformanceProfiler()

    def work() -> None:
        for _ in range(200):
            with prof.profile_operation("a", "same") as m:
                m.tokens_used = 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert prof.operations()["a:same"]["count"] == 800
    assert prof.token_totals()[0] == 800


def test_empty_operations_are_counted_exactly_across_batches_keys_and_readers() -> None:
    """Operations without tokens or errors are aggregated in batches: every reader sees
    every one of them at once, whatever the batch boundary, with exact durations."""
    now = [0]

    def clock() -> int:
        now[0] += 1_000  # each operation lasts exactly 1 us
        return now[0]

    prof = PerformanceProfiler(clock=clock)
    agent = "".join(["pla", "nner"])  # equal to "planner", not the same object
    for i in range(1000):  # 3 full batches of 256 and a partial one
        with prof.profile_operation("planner" if i % 3 else agent, "step" if i % 2 else "act"):
            pass
        if i in (0, 255, 256, 999):
            assert prof.operation_count == i + 1
    with prof.profile_operation("planner", "step") as m:
        m.tokens_used = 4
    assert prof.call_counts() == {"planner:act": 500, "planner:step": 501}
    ops = prof.operations()
    assert ops["planner:act"]["total_s"] == pytest.approx(500e-6)
    assert ops["planner:act"]["p95_s"] == ops["planner:act"]["max_s"] == pytest.approx(1e-6)
    assert ops["planner:step"]["tokens"] == 4
    assert len(prof.all_durations()) == 1001 == len(prof.timeline())
    assert "Executions: 501" in prof.get_profile_stats("planner", "step")


def test_tokens_set_after_the_block_are_not_counted_either_way() -> None:
    prof = PerformanceProfiler()
    with prof.profile_operation("a", "b") as empty:
        pass
    with prof.profile_operation("a", "b") as counted:
        counted.tokens_used = 3
    empty.tokens_used = counted.tokens_used = 100  # too late: the operation is over
    assert prof.token_totals() == (3, 0, 0)


@pytest.mark.parametrize("value", [-1, False, float("nan"), None])
def test_a_bad_token_count_fails_the_operation_and_is_not_recorded(value: object) -> None:
    prof = PerformanceProfiler()
    with (pytest.raises(ValueError, match=r"profile_operation\('a', 'b'\): tokens_used="),
          prof.profile_operation("a", "b") as m):
        m.tokens_used = value  # type: ignore[assignment]
    assert prof.operation_count == 0 and len(prof.metrics) == 0


def test_threads_of_empty_and_token_operations_lose_nothing() -> None:
    prof = PerformanceProfiler()

    def work(name: str) -> None:
        for i in range(3000):
            with prof.profile_operation("a", name if i % 2 else "same") as m:
                if i % 1000 == 0:
                    m.tokens_used = 2

    threads = [threading.Thread(target=work, args=(f"t{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = prof.call_counts()
    assert counts["a:same"] == 4 * 1500
    assert all(counts[f"a:t{k}"] == 1500 for k in range(4))
    assert prof.operation_count == 12_000 == len(prof.all_durations())
    assert prof.token_totals()[0] == 4 * 3 * 2


def test_async_with_and_concurrent_tasks() -> None:
    prof = PerformanceProfiler()

    async def one(i: int) -> None:
        async with prof.profile_operation("agent", "call"):
            await asyncio.sleep(0.02)
        with prof.profile_operation("agent", "sync-in-async"):
            pass

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(10)))

    asyncio.run(main())
    ops = prof.operations()
    assert ops["agent:call"]["count"] == 10
    assert ops["agent:call"]["p50_s"] >= 0.02
    assert ops["agent:sync-in-async"]["count"] == 10


def test_profile_stats_include_the_cprofile_table_when_asked() -> None:
    def slow_helper() -> None:
        time.sleep(0.01)

    prof = PerformanceProfiler(cprofile=True)
    for _ in range(2):
        with prof.profile_operation("agent", "inference"):
            slow_helper()
    text = prof.get_profile_stats("agent", "inference", top_n=5)
    assert "Executions: 2" in text
    assert "slow_helper" in text
    plain = PerformanceProfiler()
    with plain.profile_operation("agent", "inference"):
        slow_helper()
    assert "slow_helper" not in plain.get_profile_stats("agent", "inference")
    assert "cProfile off" in plain.get_profile_stats("agent", "inference")
    assert plain.get_profile_stats("x", "y") == "No profiling data for x:y"


def test_identify_bottlenecks_keeps_the_guide_keys() -> None:
    now = [0]
    prof = PerformanceProfiler(clock=lambda: now[0])
    with prof.profile_operation("a", "slow"):
        now[0] += 30_000_000  # 30 ms
    with prof.profile_operation("a", "fast"):
        now[0] += 1_000  # 1 µs
    found = prof.identify_bottlenecks(threshold_seconds=0.01)
    assert [b["operation"] for b in found] == ["a:slow"]
    assert set(found[0]) >= {"operation", "avg_execution_time", "max_execution_time",
                             "total_executions", "avg_memory_delta", "severity"}
    assert found[0]["severity"] == "high"


def test_memory_per_operation_is_opt_in_and_storage_is_bounded() -> None:
    prof = PerformanceProfiler(track_memory=True, metrics_limit=50)
    for _ in range(200):
        with prof.profile_operation("a", "b"):
            pass
    assert len(prof.metrics) == 50
    assert prof.operations()["a:b"]["count"] == 200
    assert prof.metrics[-1].memory_mb_end > 0
    assert "Average Memory Delta:" in prof.get_profile_stats("a", "b")


def test_cprofile_option_reaches_the_fixture(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import time

        def helper_to_find():
            time.sleep(0.001)

        def test_x(profiler):
            with profiler.profile_operation("agent", "step"):
                helper_to_find()
            print(profiler.get_profile_stats("agent", "step"))
        """
    )
    pt.runpytest("-s", "--perf-cprofile").stdout.fnmatch_lines(["*helper_to_find*"])
    pt.runpytest("-s").stdout.no_fnmatch_line("*helper_to_find*")
