"""BatchProcessor: the guide's example plus timing, failure and cancellation cases."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from pytest_agentperf.toolkit.batching import BatchProcessor, BatchResultError

# The guide's example test, as printed, runs in test_plugin_fixtures.py
# (importing from the package root, as users do).


# --- helpers -------------------------------------------------------------------------
class Recorder:
    """Sync processing function that records the batches it saw."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        return [x * 2 for x in items]


def test_defaults_and_validation() -> None:
    p: BatchProcessor[int, int] = BatchProcessor()
    assert (p.batch_size, p.max_wait_time, p.max_workers) == (100, 0.1, 4)
    with pytest.raises(ValueError, match="batch_size"):
        BatchProcessor(batch_size=0)
    with pytest.raises(ValueError, match="max_wait_time"):
        BatchProcessor(max_wait_time=-1)
    with pytest.raises(ValueError, match="max_workers"):
        BatchProcessor(max_workers=0)


@pytest.mark.asyncio
async def test_full_batches_flush_without_waiting_for_the_timer() -> None:
    rec = Recorder()
    async with BatchProcessor[int, int](batch_size=5, max_wait_time=10.0) as p:
        start = time.perf_counter()
        results = await asyncio.gather(*(p.process(i, rec) for i in range(10)))
        elapsed = time.perf_counter() - start
    assert results == [2 * i for i in range(10)]
    assert rec.batches == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert elapsed < 5.0  # the 10 s timer never fired
    assert rec.threads and all(t.startswith("agentperf-batch") for t in rec.threads)


@pytest.mark.asyncio
async def test_partial_batch_flushes_after_max_wait_time() -> None:
    rec = Recorder()
    async with BatchProcessor[int, int](batch_size=100, max_wait_time=0.05) as p:
        start = time.perf_counter()
        results = await asyncio.gather(*(p.process(i, rec) for i in range(3)))
        elapsed = time.perf_counter() - start
        section = p.report_section()
    assert results == [0, 2, 4]
    assert rec.batches == [[0, 1, 2]]
    assert elapsed >= 0.05
    assert section["flushes"]["timer"] == 1
    assert section["queue_wait_p95_s"] >= 0.05 * 0.9


@pytest.mark.asyncio
async def test_functions_never_share_a_batch_and_async_functions_are_awaited() -> None:
    rec = Recorder()
    seen: list[list[int]] = []

    async def negate(items: list[int]) -> list[int]:
        seen.append(list(items))
        await asyncio.sleep(0)
        return [-x for x in items]

    async with BatchProcessor[int, int](batch_size=4, max_wait_time=0.02) as p:
        coros = [p.process(i, rec if i % 2 else negate) for i in range(8)]
        results = await asyncio.gather(*coros)
    assert results == [0, 2, -2, 6, -4, 10, -6, 14]
    assert rec.batches == [[1, 3, 5, 7]]
    assert seen == [[0, 2, 4, 6]]


@pytest.mark.asyncio
async def test_exception_reaches_every_caller_and_processor_keeps_serving() -> None:
    calls = 0

    def sometimes_fails(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("model overloaded")
        return items

    async with BatchProcessor[int, int](batch_size=3, max_wait_time=0.01) as p:
        first = await asyncio.gather(
            *(p.process(i, sometimes_fails) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in first)
        assert await asyncio.gather(*(p.process(i, sometimes_fails) for i in range(3))) == [
            0, 1, 2,
        ]
        assert p.report_section()["failed_batches"] == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("returned", [1, 4])
async def test_wrong_result_count_is_a_clear_error_for_every_caller(returned: int) -> None:
    async def bad(items: list[int]) -> list[int]:
        return [0] * returned

    async with BatchProcessor[int, int](batch_size=3, max_wait_time=0.01) as p:
        results = await asyncio.wait_for(
            asyncio.gather(*(p.process(i, bad) for i in range(3)), return_exceptions=True),
            timeout=5,
        )
    assert len(results) == 3
    for r in results:
        assert isinstance(r, BatchResultError)
        assert f"returned {returned} results for a batch of 3 items" in str(r)


@pytest.mark.asyncio
async def test_cancelled_caller_while_queued_affects_nobody_else() -> None:
    rec = Recorder()
    async with BatchProcessor[int, int](batch_size=10, max_wait_time=0.05) as p:
        tasks = [asyncio.create_task(p.process(i, rec)) for i in range(4)]
        await asyncio.sleep(0.01)
        tasks[1].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        section = p.report_section()
    assert isinstance(results[1], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 1] == [0, 4, 6]
    assert rec.batches == [[0, 2, 3]]
    assert section["cancelled_items"] == 1


@pytest.mark.asyncio
async def test_cancelled_caller_during_processing_affects_nobody_else() -> None:
    started = asyncio.Event()

    async def slow(items: list[int]) -> list[int]:
        started.set()
        await asyncio.sleep(0.05)
        return [x + 1 for x in items]

    async with BatchProcessor[int, int](batch_size=3, max_wait_time=0.01) as p:
        tasks = [asyncio.create_task(p.process(i, slow)) for i in range(3)]
        await started.wait()
        tasks[0].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == [2, 3]


@pytest.mark.asyncio
async def test_aclose_drains_pending_items_and_leaves_no_task() -> None:
    rec = Recorder()
    p = BatchProcessor[int, int](batch_size=100, max_wait_time=60.0)
    tasks = [asyncio.create_task(p.process(i, rec)) for i in range(5)]
    await asyncio.sleep(0.01)
    assert not rec.batches
    before = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    await asyncio.wait_for(p.aclose(), timeout=5)
    assert await asyncio.gather(*tasks) == [0, 2, 4, 6, 8]
    after = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    assert not (after - before) and all(t.done() for t in tasks)
    assert p.closed and p._executor is None
    assert p.report_section()["flushes"]["close"] == 1
    with pytest.raises(RuntimeError, match="closed"):
        await p.process(1, rec)
    await p.aclose()  # idempotent


@pytest.mark.asyncio
async def test_sync_functions_run_in_at_most_max_workers_threads() -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    def slow(items: list[int]) -> list[int]:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        return items

    async with BatchProcessor[int, int](batch_size=2, max_wait_time=0.01, max_workers=2) as p:
        results = await asyncio.gather(*(p.process(i, slow) for i in range(12)))
    assert results == list(range(12))
    assert 1 <= peak <= 2


@pytest.mark.asyncio
async def test_many_concurrent_items_and_report_section() -> None:
    async def ident(items: list[int]) -> list[int]:
        return items

    async with BatchProcessor[int, int](batch_size=50, max_wait_time=0.01) as p:
        results = await asyncio.gather(*(p.process(i, ident) for i in range(1000)))
        section = p.report_section()
    assert results == list(range(1000))
    json.dumps(section)
    assert section["batches"] == 20
    assert section["items"] == 1000
    assert section["mean_batch_size"] == 50
    assert section["queue_wait_p95_s"] is not None


@pytest.mark.asyncio
async def test_idle_processor_schedules_nothing() -> None:
    p = BatchProcessor[int, int](batch_size=10, max_wait_time=30.0)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(p.process(1, lambda xs: xs))
    await asyncio.sleep(0.01)
    # exactly one pending timer, no polling task
    assert len(p._pending) == 1
    assert not p._running
    handles = [h for h in getattr(loop, "_scheduled", []) if not h.cancelled()]
    assert handles and all(h.when() - loop.time() > 1 for h in handles)
    await p.aclose()
    assert await task == 1
