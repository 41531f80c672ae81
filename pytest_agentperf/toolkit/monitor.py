"""AsyncPerformanceMonitor: concurrency of async operations.

The guide's class made to run: ``monitor_async_operation`` is a real
:func:`contextlib.asynccontextmanager` (the guide decorated an ``async def``
with ``@contextmanager``, which cannot be entered), durations use the
monotonic clock, failed and cancelled operations are recorded, two operations
of the same name in one task (nesting) get distinct ids, ``max_concurrent``
per operation is really measured, and memory stays bounded: only the last
``max_records`` finished operations are kept in ``task_metrics`` while the
report's figures are accumulated over all of them.

Bookkeeping is synchronous (a :class:`threading.Lock` held for a few
statements, never across an ``await``), so the monitor works from any number
of tasks and from loops in several threads, and never waits on the loop.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..stats import SampleSet

__all__ = ["AsyncPerformanceMonitor"]


class _OpStats:
    __slots__ = (
        "active", "cancelled", "count", "failed", "max_concurrent", "samples", "total_time",
    )

    def __init__(self, max_exact: int) -> None:
        self.count = 0  # completed
        self.failed = 0
        self.cancelled = 0
        self.total_time = 0.0  # completed only, as in the guide
        self.active = 0
        self.max_concurrent = 0
        self.samples = SampleSet(max_exact=max_exact, reservoir_size=0)


class AsyncPerformanceMonitor:
    """Monitor async operations and their concurrency (the guide's API).

    ``AsyncPerformanceMonitor(max_records=10_000)``;
    ``async with monitor.monitor_async_operation(name): ...``;
    ``get_concurrency_report()``; ``report_section()``.
    Attributes kept from the guide: ``active_tasks`` (ids running now),
    ``task_metrics`` (id -> ``{"operation", "start_time", "status",
    "end_time", "duration", "error"}``, times from :func:`time.perf_counter`),
    ``max_concurrent_tasks``.
    """

    def __init__(self, max_records: int = 10_000) -> None:
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records!r}")
        self.max_records = max_records
        self.active_tasks: set[str] = set()
        self.task_metrics: dict[str, dict[str, Any]] = {}
        self.max_concurrent_tasks = 0
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._finished: deque[str] = deque()
        self._ops: dict[str, _OpStats] = {}
        self._completed = 0
        self._failed = 0
        self._cancelled = 0
        self._completed_time = 0.0

    @asynccontextmanager
    async def monitor_async_operation(self, operation_name: str) -> AsyncIterator[None]:
        """Record one run of ``operation_name`` (``async with``)."""
        task = asyncio.current_task()
        task_id = f"{operation_name}_{id(task)}_{next(self._seq)}"
        with self._lock:
            self.active_tasks.add(task_id)
            self.max_concurrent_tasks = max(self.max_concurrent_tasks, len(self.active_tasks))
            op = self._ops.get(operation_name)
            if op is None:
                op = self._ops[operation_name] = _OpStats(self.max_records)
            op.active += 1
            op.max_concurrent = max(op.max_concurrent, op.active)
            record: dict[str, Any] = {
                "operation": operation_name,
                "start_time": time.perf_counter(),
                "status": "running",
            }
            self.task_metrics[task_id] = record
        status = "failed"
        error: str | None = None
        try:
            yield
            status = "completed"
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            end = time.perf_counter()
            self._finish(task_id, op, record, status, error, end)

    def _finish(
        self,
        task_id: str,
        op: _OpStats,
        record: dict[str, Any],
        status: str,
        error: str | None,
        end: float,
    ) -> None:
        duration = end - record["start_time"]
        with self._lock:
            self.active_tasks.discard(task_id)
            op.active -= 1
            record["status"] = status
            record["end_time"] = end
            record["duration"] = duration
            if error is not None:
                record["error"] = error
            if status == "completed":
                op.count += 1
                op.total_time += duration
                op.samples.add(duration)
                self._completed += 1
                self._completed_time += duration
            elif status == "cancelled":
                op.cancelled += 1
                self._cancelled += 1
            else:
                op.failed += 1
                self._failed += 1
            self._finished.append(task_id)
            while len(self._finished) > self.max_records:
                self.task_metrics.pop(self._finished.popleft(), None)

    def get_concurrency_report(self) -> dict[str, Any]:
        """The guide's keys — ``max_concurrent_tasks, current_active_tasks,
        total_completed_tasks, avg_execution_time, operation_stats{name:
        {count, total_time, max_concurrent}}`` — plus ``total_failed_tasks``,
        ``total_cancelled_tasks`` and per operation ``failed, cancelled,
        avg_time, p50, p95, max_time``.  Over every operation ever recorded.
        With nothing completed yet, ``message`` is ``"No completed tasks"``
        (the guide returned only that) and ``avg_execution_time`` is None.
        """
        with self._lock:
            operation_stats: dict[str, dict[str, Any]] = {}
            for name, op in self._ops.items():
                summary = op.samples.summary()
                operation_stats[name] = {
                    "count": op.count,
                    "total_time": op.total_time,
                    "max_concurrent": op.max_concurrent,
                    "failed": op.failed,
                    "cancelled": op.cancelled,
                    "avg_time": summary["mean"],
                    "p50": summary["p50"],
                    "p95": summary["p95"],
                    "max_time": summary["max"],
                }
            report: dict[str, Any] = {
                "max_concurrent_tasks": self.max_concurrent_tasks,
                "current_active_tasks": len(self.active_tasks),
                "total_completed_tasks": self._completed,
                "total_failed_tasks": self._failed,
                "total_cancelled_tasks": self._cancelled,
                "avg_execution_time": (
                    self._completed_time / self._completed if self._completed else None
                ),
                "operation_stats": operation_stats,
            }
        if not self._completed:
            report["message"] = "No completed tasks"
        return report

    def report_section(self) -> dict[str, Any]:
        """:meth:`get_concurrency_report` (JSON-serialisable, seconds)."""
        return self.get_concurrency_report()
