"""IntelligentCache: the guide's example plus correctness under concurrency."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pytest_agentperf.toolkit.cache import IntelligentCache

# The guide's example test, as printed, runs in test_plugin_fixtures.py
# (importing from the package root, as users do).


class FakeClock:
    """A clock the test moves: computations and expiry without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- construction and stats -----------------------------------------------------
def test_defaults_and_validation() -> None:
    cache = IntelligentCache()
    assert cache.max_size == 1000
    assert cache.ttl_seconds == 3600
    with pytest.raises(ValueError, match="max_size"):
        IntelligentCache(max_size=0)
    with pytest.raises(ValueError, match="ttl_seconds"):
        IntelligentCache(ttl_seconds=0)
    with pytest.raises(ValueError, match="ttl_override"):
        cache.cached(ttl_override=-1)


def test_empty_stats_have_every_key() -> None:
    stats = IntelligentCache().get_cache_stats()
    assert stats["cache_size"] == 0
    assert stats["hit_rate"] == 0.0
    assert stats["total_hits"] == stats["total_misses"] == 0
    assert stats["estimated_time_saved"] == 0.0
    assert stats["avg_computation_time"] == 0.0


def test_report_section_is_json_and_has_keys() -> None:
    cache = IntelligentCache(max_size=2)

    @cache.cached()
    def f(x: int) -> int:
        return x

    for x in (1, 1, 2, 3, 3):
        f(x)
    section = cache.report_section()
    json.dumps(section)
    assert section["hits"] == 2
    assert section["misses"] == 3
    assert section["hit_rate"] == pytest.approx(0.4)
    assert section["size"] == 2
    assert section["evictions"] == 1
    assert section["time_saved_s"] >= 0.0


# --- keys ------------------------------------------------------------------------
def test_canonical_keys_across_call_styles() -> None:
    cache = IntelligentCache()
    calls: list[tuple[int, int, int]] = []

    @cache.cached()
    def f(a: int, b: int, c: int = 3) -> int:
        calls.append((a, b, c))
        return a + b + c

    assert f(1, 2) == 6
    assert f(a=1, b=2) == 6
    assert f(b=2, a=1) == 6
    assert f(1, b=2, c=3) == 6
    assert f(1, 2, 3) == 6
    assert calls == [(1, 2, 3)]
    assert f(1, 2, 4) == 7
    assert len(calls) == 2


def test_var_keyword_order_is_canonical() -> None:
    cache = IntelligentCache()
    calls = 0

    @cache.cached()
    def f(*args: int, **kwargs: int) -> int:
        nonlocal calls
        calls += 1
        return sum(args) + sum(kwargs.values())

    assert f(1, x=2, y=3) == 6
    assert f(1, y=3, x=2) == 6
    assert calls == 1
    assert f(1, 2, 3) == 6  # different arguments: another key
    assert calls == 2


def test_unhashable_arguments_are_keyed_structurally() -> None:
    cache = IntelligentCache()
    calls = 0

    @cache.cached()
    def f(messages: list[dict[str, Any]], opts: dict[str, Any]) -> int:
        nonlocal calls
        calls += 1
        return len(messages) + len(opts)

    assert f([{"role": "user", "content": "hi"}], {"t": 0.1, "n": [1]}) == 3
    assert f([{"content": "hi", "role": "user"}], {"n": [1], "t": 0.1}) == 3
    assert calls == 1
    assert f([{"role": "user", "content": "bye"}], {"t": 0.1, "n": [1]}) == 3
    assert calls == 2
    # a list and a tuple of the same items are different arguments
    assert f(({"role": "user", "content": "hi"},), {"t": 0.1, "n": [1]}) == 3
    assert calls == 3


class _Opaque:
    """Unhashable and unpicklable."""

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        raise TypeError("no pickling")


def test_unkeyable_argument_gets_typeerror_naming_it() -> None:
    cache = IntelligentCache()

    @cache.cached()
    def f(prompt: str, client: Any) -> str:
        return prompt

    with pytest.raises(TypeError, match=r"argument 'client'.*_Opaque"):
        f("hi", _Opaque())
    with pytest.raises(TypeError, match=r"argument \"client\['x'\]\[1\]\""):
        f("hi", {"x": [1, _Opaque()]})


def test_wrong_call_raises_the_functions_own_typeerror() -> None:
    cache = IntelligentCache()

    @cache.cached()
    def f(a: int) -> int:
        return a

    with pytest.raises(TypeError, match="missing a required argument"):
        f()  # type: ignore[call-arg]


def test_same_arguments_different_functions_do_not_collide() -> None:
    cache = IntelligentCache()

    @cache.cached()
    def double(x: int) -> int:
        return 2 * x

    @cache.cached()
    def triple(x: int) -> int:
        return 3 * x

    assert (double(2), triple(2), double(2), triple(2)) == (4, 6, 4, 6)


# --- TTL, exceptions, eviction -------------------------------------------------------
def test_ttl_override_expires_entries() -> None:
    clock = FakeClock()
    cache = IntelligentCache(ttl_seconds=3600, clock=clock)
    calls = 0

    @cache.cached(ttl_override=0.05)
    def f(x: int) -> int:
        nonlocal calls
        calls += 1
        return x

    f(1)
    clock.advance(0.049)
    f(1)
    assert calls == 1
    clock.advance(0.002)
    f(1)
    assert calls == 2
    stats = cache.get_cache_stats()
    assert stats["expirations"] == 1
    assert stats["total_misses"] == 2


def test_exceptions_are_not_cached() -> None:
    cache = IntelligentCache()
    calls = 0

    @cache.cached()
    def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return x

    with pytest.raises(RuntimeError, match="boom"):
        flaky(1)
    assert flaky(1) == 1
    assert flaky(1) == 1
    assert calls == 2
    assert len(cache) == 1


def test_eviction_keeps_size_bounded_and_stats_survive() -> None:
    clock = FakeClock()
    cache = IntelligentCache(max_size=10, clock=clock)

    @cache.cached()
    def f(x: int) -> int:
        clock.advance(0.001)  # every computation costs the same
        return x

    for i in range(100):
        f(i)
    for i in range(95, 100):
        f(i)
    stats = cache.get_cache_stats()
    assert stats["cache_size"] == 10
    assert stats["evictions"] == 90
    assert stats["total_misses"] == 100
    assert stats["total_hits"] == 5
    # heaps stay bounded (lazy invalidation is compacted)
    assert len(cache._heap) <= 2 * 10 + 64


def test_eviction_prefers_cheap_rarely_used_entries() -> None:
    clock = FakeClock()
    cache = IntelligentCache(max_size=3, clock=clock)
    calls: list[str] = []

    @cache.cached()
    def compute(name: str, cost: float) -> str:
        calls.append(name)
        clock.advance(cost)
        return name

    compute("expensive", 0.05)
    compute("popular", 0.0)
    for _ in range(50):
        compute("popular", 0.0)
    compute("cheap", 0.0)
    compute("newcomer", 0.0)  # evicts the cheap, once-used entry
    calls.clear()
    compute("expensive", 0.05)
    compute("popular", 0.0)
    assert calls == []  # both still cached
    compute("cheap", 0.0)
    assert calls == ["cheap"]


def test_expired_entries_are_evicted_first() -> None:
    clock = FakeClock()
    cache = IntelligentCache(max_size=2, clock=clock)
    calls: list[str] = []

    @cache.cached(ttl_override=0.03)
    def short(name: str) -> str:
        calls.append(name)
        return name

    @cache.cached()
    def slow(name: str) -> str:
        calls.append(name)
        clock.advance(0.02)
        return name

    slow("keep")
    short("old")
    clock.advance(0.04)
    short("new")  # full: the expired entry goes, not the valuable one
    calls.clear()
    slow("keep")
    assert calls == []
    assert cache.get_cache_stats()["expirations"] == 1


def test_invalidate_and_clear() -> None:
    cache = IntelligentCache()

    @cache.cached()
    def f(x: int) -> int:
        return x

    @cache.cached()
    def g(x: int) -> int:
        return x

    f(1)
    f(2)
    g(1)
    assert cache.invalidate(f) == 2
    assert len(cache) == 1
    with pytest.raises(ValueError, match="not decorated"):
        cache.invalidate(len)
    cache.clear()
    assert len(cache) == 0
    assert cache.get_cache_stats()["total_misses"] == 3


# --- concurrency: threads ---------------------------------------------------------------
def test_thread_single_flight_computes_once() -> None:
    cache = IntelligentCache()
    calls = 0
    calls_lock = threading.Lock()
    barrier = threading.Barrier(8)

    @cache.cached()
    def slow(x: int) -> int:
        nonlocal calls
        with calls_lock:
            calls += 1
        time.sleep(0.1)
        return x * 10

    def worker() -> int:
        barrier.wait(timeout=5)
        return slow(7)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: worker(), range(8)))
    assert results == [70] * 8
    assert calls == 1
    stats = cache.get_cache_stats()
    assert stats["total_misses"] == 1
    assert stats["total_hits"] == 7
    assert stats["coalesced"] == 7


def test_thread_single_flight_propagates_error_then_recomputes() -> None:
    cache = IntelligentCache()
    calls = 0
    barrier = threading.Barrier(4)

    @cache.cached()
    def fails_once(x: int) -> int:
        nonlocal calls
        calls += 1
        time.sleep(0.1)
        if calls == 1:
            raise ValueError("first")
        return x

    def worker() -> Any:
        barrier.wait(timeout=5)
        try:
            return fails_once(1)
        except ValueError as exc:
            return exc

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: worker(), range(4)))
    assert all(isinstance(r, ValueError) for r in results)
    assert calls == 1
    assert fails_once(1) == 1
    assert calls == 2


def test_stats_exact_under_threads_with_eviction() -> None:
    cache = IntelligentCache(max_size=50)

    @cache.cached()
    def f(x: int) -> int:
        return x

    n_threads, per_thread = 4, 3000

    def worker(t: int) -> None:
        for i in range(per_thread):
            assert f((i * 7 + t) % 120) == (i * 7 + t) % 120

    with ThreadPoolExecutor(n_threads) as pool:
        list(pool.map(worker, range(n_threads)))
    stats = cache.get_cache_stats()
    assert stats["total_hits"] + stats["total_misses"] == n_threads * per_thread
    assert stats["cache_size"] <= 50
    # every computed value was stored once: misses = stored = evicted + resident
    assert stats["total_misses"] == stats["evictions"] + stats["cache_size"]


def test_recursive_call_on_same_key_does_not_deadlock() -> None:
    cache = IntelligentCache()
    inner = False

    @cache.cached()
    def g(x: int) -> int:
        nonlocal inner
        if not inner:
            inner = True
            return g(x) + 1  # same key, same thread: computed, not awaited
        return x

    @cache.cached()
    def fib(n: int) -> int:
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert g(1) == 2
    assert g(1) == 2
    assert fib(60) == 1548008755920


# --- async -------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_async_function_result_is_cached_not_the_coroutine() -> None:
    cache = IntelligentCache()
    calls = 0

    @cache.cached()
    async def fetch(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return x + 1

    assert await fetch(1) == 2
    assert await fetch(1) == 2  # the guide's version fails here
    assert await fetch(x=1) == 2
    assert calls == 1
    stats = cache.get_cache_stats()
    assert stats["hit_rate"] == pytest.approx(2 / 3)
    assert stats["estimated_time_saved"] >= 0.02


@pytest.mark.asyncio
async def test_task_single_flight_computes_once() -> None:
    cache = IntelligentCache()
    calls = 0

    @cache.cached()
    async def llm(prompt: str) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return prompt.upper()

    results = await asyncio.gather(*(llm("hi") for _ in range(20)))
    assert results == ["HI"] * 20
    assert calls == 1
    assert cache.get_cache_stats()["coalesced"] == 19


@pytest.mark.asyncio
async def test_task_single_flight_error_reaches_waiters_and_is_not_cached() -> None:
    cache = IntelligentCache()
    calls = 0

    @cache.cached()
    async def fails_once() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        if calls == 1:
            raise ConnectionError("down")
        return 1

    results = await asyncio.gather(*(fails_once() for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert calls == 1
    assert await fails_once() == 1


@pytest.mark.asyncio
async def test_cancelled_leader_lets_a_waiter_compute() -> None:
    cache = IntelligentCache()
    started = 0

    @cache.cached()
    async def slow() -> str:
        nonlocal started
        started += 1
        await asyncio.sleep(0.05)
        return "done"

    leader = asyncio.create_task(slow())
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(slow()) for _ in range(3)]
    await asyncio.sleep(0.01)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert await asyncio.gather(*waiters) == ["done"] * 3
    assert started == 2


@pytest.mark.asyncio
async def test_cancelled_waiter_does_not_disturb_others() -> None:
    cache = IntelligentCache()

    @cache.cached()
    async def slow() -> str:
        await asyncio.sleep(0.05)
        return "done"

    tasks = [asyncio.create_task(slow()) for _ in range(4)]
    await asyncio.sleep(0.01)
    tasks[2].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[2].__class__ is asyncio.CancelledError
    assert [r for i, r in enumerate(results) if i != 2] == ["done"] * 3
