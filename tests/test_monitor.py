"""AsyncPerformanceMonitor: concurrency numbers right, failures recorded, bounded."""

from __future__ import annotations

import asyncio
import json

import pytest

from pytest_agentperf.toolkit.monitor import AsyncPerformanceMonitor


async def _op(monitor: AsyncPerformanceMonitor, name: str, delay: float) -> None:
    async with monitor.monitor_async_operation(name):
        await asyncio.sleep(delay)


@pytest.mark.asyncio
async def test_concurrent_operations_are_counted() -> None:
    monitor = AsyncPerformanceMonitor()
    await asyncio.gather(*(_op(monitor, "fetch", 0.03) for _ in range(5)))
    report = monitor.get_concurrency_report()
    assert report["max_concurrent_tasks"] == 5
    assert report["current_active_tasks"] == 0
    assert report["total_completed_tasks"] == 5
    assert report["avg_execution_time"] >= 0.03
    stats = report["operation_stats"]["fetch"]
    assert stats["count"] == 5
    assert stats["max_concurrent"] == 5
    assert stats["total_time"] >= 5 * 0.03
    assert stats["p95"] >= 0.03
    assert "message" not in report


@pytest.mark.asyncio
async def test_sequential_operations_never_overlap() -> None:
    monitor = AsyncPerformanceMonitor()
    for _ in range(4):
        await _op(monitor, "step", 0)
    report = monitor.get_concurrency_report()
    assert report["max_concurrent_tasks"] == 1
    assert report["operation_stats"]["step"]["max_concurrent"] == 1
    assert report["operation_stats"]["step"]["count"] == 4


@pytest.mark.asyncio
async def test_max_concurrency_is_per_operation() -> None:
    monitor = AsyncPerformanceMonitor()
    await asyncio.gather(
        *(_op(monitor, "llm", 0.03) for _ in range(3)),
        *(_op(monitor, "tool", 0.03) for _ in range(2)),
    )
    await _op(monitor, "tool", 0)
    report = monitor.get_concurrency_report()
    assert report["max_concurrent_tasks"] == 5
    assert report["operation_stats"]["llm"]["max_concurrent"] == 3
    assert report["operation_stats"]["tool"]["max_concurrent"] == 2
    assert report["operation_stats"]["tool"]["count"] == 3


@pytest.mark.asyncio
async def test_nested_operations_of_one_name_in_one_task_do_not_collide() -> None:
    monitor = AsyncPerformanceMonitor()
    async with monitor.monitor_async_operation("agent"):
        assert len(monitor.active_tasks) == 1
        async with monitor.monitor_async_operation("agent"):
            assert len(monitor.active_tasks) == 2
        assert len(monitor.active_tasks) == 1
    assert monitor.active_tasks == set()
    assert len(monitor.task_metrics) == 2
    report = monitor.get_concurrency_report()
    assert report["total_completed_tasks"] == 2
    assert report["operation_stats"]["agent"]["max_concurrent"] == 2


@pytest.mark.asyncio
async def test_failed_operation_is_recorded_and_reraised() -> None:
    monitor = AsyncPerformanceMonitor()
    with pytest.raises(ValueError, match="bad tool"):
        async with monitor.monitor_async_operation("tool"):
            raise ValueError("bad tool")
    [record] = monitor.task_metrics.values()
    assert record["status"] == "failed"
    assert record["error"] == "ValueError: bad tool"
    assert record["end_time"] >= record["start_time"]
    report = monitor.get_concurrency_report()
    assert report["message"] == "No completed tasks"
    assert report["total_completed_tasks"] == 0
    assert report["total_failed_tasks"] == 1
    assert report["avg_execution_time"] is None
    assert report["operation_stats"]["tool"]["failed"] == 1
    assert report["operation_stats"]["tool"]["count"] == 0
    assert report["current_active_tasks"] == 0


@pytest.mark.asyncio
async def test_cancelled_operation_is_recorded() -> None:
    monitor = AsyncPerformanceMonitor()
    task = asyncio.create_task(_op(monitor, "slow", 10))
    await asyncio.sleep(0.01)
    assert monitor.get_concurrency_report()["current_active_tasks"] == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    report = monitor.get_concurrency_report()
    assert report["total_cancelled_tasks"] == 1
    assert report["operation_stats"]["slow"]["cancelled"] == 1
    assert report["current_active_tasks"] == 0


@pytest.mark.asyncio
async def test_memory_is_bounded_but_totals_are_exact() -> None:
    monitor = AsyncPerformanceMonitor(max_records=3)
    for _ in range(10):
        await _op(monitor, "op", 0)
    assert len(monitor.task_metrics) == 3
    report = monitor.report_section()
    assert report["total_completed_tasks"] == 10
    assert report["operation_stats"]["op"]["count"] == 10
    json.dumps(report)


def test_invalid_max_records() -> None:
    with pytest.raises(ValueError):
        AsyncPerformanceMonitor(max_records=0)
