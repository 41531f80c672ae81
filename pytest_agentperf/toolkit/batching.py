"""BatchProcessor: the guide's micro-batcher, event-driven and failure-safe.

``await processor.process(item, fn)`` queues ``item`` for ``fn`` (which takes a
list of items and returns a list of results, one per item, in order).  A batch
is flushed when ``batch_size`` items are pending for that ``fn``, or
``max_wait_time`` seconds after the first of them arrived — a ``call_later``
timer, no polling, so an idle processor costs no CPU.  Items for different
functions never share a batch.

Sync functions run in a ``ThreadPoolExecutor`` of ``max_workers`` threads
(created on first use, shut down by :meth:`BatchProcessor.aclose`); ``async def``
functions are awaited on the loop.  A batch that raises gives that exception
to each of its callers; a result list of the wrong length gives each caller a
:class:`BatchResultError`; either way the processor keeps serving.  A caller
cancelled while waiting is dropped from its batch (or its result discarded)
without affecting anyone else.  ``aclose()`` / ``async with`` flush and wait for
everything pending; nothing keeps running afterwards.

Use one processor from one event loop at a time.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar, cast

from pytest_agentperf.stats import SampleSet

__all__ = ["BatchProcessor", "BatchResultError"]

T = TypeVar("T")
R = TypeVar("R")

#: ``fn(items) -> results``, sync or ``async def``; one result per item, in order.
ProcessorFunc = (
    Callable[[list[T]], Sequence[R]] | Callable[[list[T]], Awaitable[Sequence[R]]]
)


class BatchResultError(ValueError):
    """The processing function returned a result list of the wrong length."""


class _Pending(Generic[T, R]):
    """Items waiting for one processing function."""

    __slots__ = ("futures", "items", "loop", "timer", "waits_since")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: list[T] = []
        self.futures: list[asyncio.Future[R]] = []
        self.waits_since: list[float] = []
        self.timer: asyncio.TimerHandle | None = None


class BatchProcessor(Generic[T, R]):
    """Collects items into batches for a list-in, list-out processing function."""

    def __init__(
        self, batch_size: int = 100, max_wait_time: float = 0.1, max_workers: int = 4
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if not max_wait_time >= 0:
            raise ValueError(f"max_wait_time must be >= 0, got {max_wait_time!r}")
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers!r}")
        self.batch_size = batch_size
        self.max_wait_time = max_wait_time
        self.max_workers = max_workers
        self._pending: dict[Hashable, _Pending[T, R]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        # statistics
        self._batches = 0
        self._items = 0
        self._failed_batches = 0
        self._cancelled_items = 0
        self._flush_full = 0
        self._flush_timer = 0
        self._flush_close = 0
        self._queue_wait = SampleSet(max_exact=20_000)
        self._batch_time = SampleSet(max_exact=20_000)

    # -- public API -----------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    async def process(self, item: T, processor_func: ProcessorFunc[T, R]) -> R:
        """Queue ``item`` for ``processor_func``; return its result."""
        if self._closed:
            raise RuntimeError("BatchProcessor is closed")
        loop = asyncio.get_running_loop()
        key = cast(Hashable, processor_func)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(loop)
        elif pending.loop is not loop:
            raise RuntimeError("BatchProcessor used from two event loops at once")
        future: asyncio.Future[R] = loop.create_future()
        pending.items.append(item)
        pending.futures.append(future)
        pending.waits_since.append(time.perf_counter())
        if len(pending.items) >= self.batch_size:
            self._flush(key, "full")
        elif pending.timer is None:
            pending.timer = loop.call_later(self.max_wait_time, self._flush, key, "timer")
        return await future

    async def flush(self) -> None:
        """Send everything pending now and wait until all batches are done."""
        for key in list(self._pending):
            self._flush(key, "close")
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def aclose(self) -> None:
        """Drain what is pending, then stop the worker threads (idempotent)."""
        self._closed = True
        await self.flush()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)  # every batch is done: the threads are idle

    async def __aenter__(self) -> BatchProcessor[T, R]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- batching -----------------------------------------------------------------
    def _flush(self, key: Hashable, reason: str) -> None:
        pending = self._pending.get(key)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None
        now = time.perf_counter()
        items: list[T] = []
        futures: list[asyncio.Future[R]] = []
        n = min(len(pending.items), self.batch_size)
        for item, future, since in zip(
            pending.items[:n], pending.futures[:n], pending.waits_since[:n], strict=True
        ):
            if future.done():  # caller cancelled while queued
                self._cancelled_items += 1
                continue
            items.append(item)
            futures.append(future)
            self._queue_wait.add(now - since)
        del pending.items[:n], pending.futures[:n], pending.waits_since[:n]
        if pending.items:  # cannot happen with size-triggered flushes; be safe
            pending.timer = pending.loop.call_later(
                self.max_wait_time, self._flush, key, "timer"
            )
        else:
            del self._pending[key]
        if not items:
            return
        if reason == "full":
            self._flush_full += 1
        elif reason == "timer":
            self._flush_timer += 1
        else:
            self._flush_close += 1
        func = cast(ProcessorFunc[T, R], key)
        task = pending.loop.create_task(self._run(func, items, futures))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def _get_executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix="agentperf-batch"
            )
        return self._executor

    async def _run(
        self, func: ProcessorFunc[T, R], items: list[T], futures: list[asyncio.Future[R]]
    ) -> None:
        start = time.perf_counter()
        try:
            if inspect.iscoroutinefunction(func):
                results: Any = await func(items)
            else:
                loop = asyncio.get_running_loop()
                results = await loop.run_in_executor(self._get_executor(), func, items)
                if inspect.isawaitable(results):
                    results = await results
            results = list(results)
            if len(results) != len(items):
                name = getattr(func, "__qualname__", repr(func))
                raise BatchResultError(
                    f"processing function {name} returned {len(results)} results "
                    f"for a batch of {len(items)} items (it must return one per item)"
                )
        except Exception as exc:
            self._failed_batches += 1
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            # Cancelled (loop shutdown): don't leave callers hanging.
            for future in futures:
                if not future.done():
                    future.cancel()
            raise
        finally:
            self._batches += 1
            self._items += len(items)
            self._batch_time.add(time.perf_counter() - start)
        for future, result in zip(futures, results, strict=True):
            if not future.done():
                future.set_result(result)
            else:
                self._cancelled_items += 1

    # -- statistics -----------------------------------------------------------------
    def report_section(self) -> dict[str, Any]:
        """JSON-serialisable figures for the per-test report (``batch`` entry)."""
        wait = self._queue_wait.summary()
        batch = self._batch_time.summary()
        return {
            "batches": self._batches,
            "items": self._items,
            "mean_batch_size": self._items / self._batches if self._batches else 0.0,
            "queue_wait_p50_s": wait["p50"],
            "queue_wait_p95_s": wait["p95"],
            "queue_wait_max_s": wait["max"],
            "batch_time_p95_s": batch["p95"],
            "failed_batches": self._failed_batches,
            "cancelled_items": self._cancelled_items,
            "flushes": {
                "full": self._flush_full,
                "timer": self._flush_timer,
                "close": self._flush_close,
            },
            "batch_size": self.batch_size,
            "max_wait_time_s": self.max_wait_time,
        }
