"""IntelligentCache: the guide's cost-aware memoising cache, done right.

The guide's API is kept (``IntelligentCache(max_size, ttl_seconds)``,
``@cache.cached(ttl_override=None)``, ``get_cache_stats()`` and its keys) but:

* **Eviction is GreedyDual-Size-Frequency** (Cherkasova 1998): every entry has a
  priority ``H = L + frequency * computation_time``; the entry with the lowest
  ``H`` is evicted and the cache's "inflation" value ``L`` becomes that ``H``, so
  entries that were valuable long ago age out.  Priorities live in a binary heap
  with lazy invalidation: a hit only bumps the entry's frequency (O(1)); the
  heap is corrected when a stale minimum surfaces during eviction.  Eviction is
  O(log n) amortised, flat from 10^3 to 10^5 entries (the guide scans them all).
  Expired entries are evicted before valuable ones (a second, expiry heap).
* **TTL on a monotonic clock**; ``ttl_override`` per decorator.  The clock
  (``time.perf_counter`` by default) also times computations and can be
  injected (``clock=``), so eviction and expiry can be tested without sleeping.
* **sync and ``async def``** functions (the guide cached coroutine objects).
* **Single-flight**: concurrent misses on one key compute once, for threads
  and for asyncio tasks; the others wait and count as hits (``coalesced``).
  If the computing caller fails with an exception, the waiters get the same
  exception; if it is cancelled (or interrupted), one waiter computes instead.
* **Exceptions are not cached.**
* **Exact statistics** under threads (one lock), kept in counters that survive
  eviction (the guide derived them from per-entry data and lost them).
* **Canonical keys**: arguments are bound to the signature (cached per
  function) with defaults applied, so ``f(1)``, ``f(x=1)`` and ``f(b=2, a=1)`` /
  ``f(a=1, b=2)`` are one key.  Hashable arguments are used as they are (no
  pickling); lists, dicts, sets are frozen structurally; anything else is
  pickled; an argument that can be neither gets a ``TypeError`` naming it.
  Like ``functools.lru_cache(typed=False)``, equal values of different types
  (``1`` and ``1.0``) share a key.
"""

from __future__ import annotations

import functools
import heapq
import inspect
import math
import pickle
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, cast

__all__ = ["IntelligentCache"]

F = TypeVar("F", bound=Callable[..., Any])

#: Computation time assumed for an entry whose cost could not be measured.
_MIN_COST: Final = 1e-9


class _Marker:
    """Tags for frozen (structurally keyed) unhashable arguments."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_LIST: Final = _Marker("list")
_TUPLE: Final = _Marker("tuple")
_DICT: Final = _Marker("dict")
_SET: Final = _Marker("set")
_BYTES: Final = _Marker("bytearray")
_PICKLED: Final = _Marker("pickled")
_MISS: Final = _Marker("miss")

# Flight outcomes.
_OK: Final = 0
_ERROR: Final = 1
_RETRY: Final = 2


def _freeze(value: Any, label: str, func_name: str) -> Any:
    """A hashable, equality-preserving stand-in for ``value``."""
    try:
        hash(value)
    except TypeError:
        pass
    else:
        return value
    if isinstance(value, (list, tuple)):
        tag = _LIST if isinstance(value, list) else _TUPLE
        return (tag, tuple(
            _freeze(v, f"{label}[{i}]", func_name) for i, v in enumerate(value)
        ))
    if isinstance(value, dict):
        return (_DICT, frozenset(
            (k, _freeze(v, f"{label}[{k!r}]", func_name)) for k, v in value.items()
        ))
    if isinstance(value, (set, frozenset)):
        return (_SET, frozenset(value))
    if isinstance(value, bytearray):
        return (_BYTES, bytes(value))
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise TypeError(
            f"cannot build a cache key for {func_name}(): argument {label!r} "
            f"({type(value).__qualname__}) is neither hashable nor picklable"
        ) from exc
    return (_PICKLED, type(value).__qualname__, data)


class _Keyer:
    """Canonical argument keys for one function (signature bound once)."""

    __slots__ = ("_params", "_sig", "name", "simple_arity")

    def __init__(self, func: Callable[..., Any]) -> None:
        self.name = getattr(func, "__qualname__", repr(func))
        try:
            sig: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):  # some builtins have no signature
            sig = None
        self._sig = sig
        self._params = list(sig.parameters.values()) if sig is not None else []
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        simple = sig is not None and all(p.kind in positional for p in self._params)
        # Calls with exactly this many positional arguments and no keywords are
        # already canonical: the key is the args tuple itself.
        self.simple_arity = len(self._params) if simple else -1

    def _labelled(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
        if self._sig is None:
            return [(f"args[{i}]", a) for i, a in enumerate(args)] + [
                (f"{k}", v) for k, v in sorted(kwargs.items())
            ]
        bound = self._sig.bind(*args, **kwargs)
        bound.apply_defaults()
        out: list[tuple[str, Any]] = []
        for p in self._params:
            v = bound.arguments[p.name]
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                v = tuple(sorted(v.items()))
            out.append((p.name, v))
        return out

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The canonical key (may be unhashable: callers then use :meth:`frozen`)."""
        if self._sig is None:
            return (args, tuple(sorted(kwargs.items())))
        return tuple(v for _, v in self._labelled(args, kwargs))

    def frozen(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Like :meth:`key`, with every unhashable argument frozen."""
        if self._sig is None:
            return (
                tuple(_freeze(a, f"args[{i}]", self.name) for i, a in enumerate(args)),
                tuple((k, _freeze(v, k, self.name)) for k, v in sorted(kwargs.items())),
            )
        return tuple(_freeze(v, name, self.name) for name, v in self._labelled(args, kwargs))


class _Entry:
    __slots__ = ("base", "cost", "expires", "freq", "seq", "value")

    def __init__(
        self, value: Any, expires: float, cost: float, base: float, seq: int
    ) -> None:
        self.value = value
        self.expires = expires
        self.cost = cost
        self.freq = 1
        self.base = base  # inflation value L at the last access
        self.seq = seq


class _Flight:
    """One in-progress computation that concurrent callers of a key wait for.

    The wake-up primitive (a ``threading.Event`` or an asyncio future) is made
    by the first waiter, under the cache lock, so a flight nobody waits for
    costs one small object.  The leader records the outcome under the same
    lock, then wakes whoever registered.
    """

    __slots__ = ("cost", "event", "future", "loop", "outcome", "owner", "value")

    def __init__(self, owner: Any, loop: Any = None) -> None:
        self.owner = owner
        self.loop = loop
        self.event: threading.Event | None = None
        self.future: Any = None
        self.outcome = _RETRY
        self.value: Any = None
        self.cost = 0.0

    def add_waiter_locked(self) -> None:
        if self.loop is None:
            if self.event is None:
                self.event = threading.Event()
        elif self.future is None:
            self.future = self.loop.create_future()

    def wake(self) -> None:
        """Wake the waiters (outside the lock, after the outcome was set)."""
        if self.event is not None:
            self.event.set()
        if self.future is not None and not self.future.done():
            self.future.set_result(None)


class IntelligentCache:
    """Cost-aware memoising cache for expensive (sync or async) functions.

    ``max_size`` bounds the number of entries; ``ttl_seconds`` is the default
    time to live (``math.inf`` for none).  ``clock`` is a monotonic clock in
    seconds, used both for expiry and to time computations (the cost that
    eviction weighs).  Thread-safe; async functions are single-flighted per
    event loop.
    """

    def __init__(
        self,
        max_size: int = 1000,
        ttl_seconds: float = 3600,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size!r}")
        if not ttl_seconds > 0:
            raise ValueError(f"ttl_seconds must be > 0, got {ttl_seconds!r}")
        self.max_size = max_size
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._data: dict[Any, _Entry] = {}
        self._heap: list[tuple[float, int, Any]] = []  # (priority, seq, key)
        self._exp_heap: list[tuple[float, int, Any]] = []  # (expires, seq, key)
        self._flights: dict[Any, _Flight] = {}
        self._inflation = 0.0  # GDSF "L"
        self._seq = 0
        self._func_ids = 0
        # statistics (exact, never reset by eviction)
        self._hits = 0
        self._misses = 0
        self._coalesced = 0
        self._evictions = 0
        self._expirations = 0
        self._computations = 0
        self._compute_total = 0.0
        self._saved = 0.0

    # -- decorator -------------------------------------------------------------
    def cached(self, ttl_override: float | None = None) -> Callable[[F], F]:
        """Decorator caching a function's results (sync or ``async def``)."""
        if ttl_override is not None and not ttl_override > 0:
            raise ValueError(f"ttl_override must be > 0, got {ttl_override!r}")

        def decorator(func: F) -> F:
            with self._lock:
                self._func_ids += 1
                fid = (self._func_ids, getattr(func, "__qualname__", "?"))
            keyer = _Keyer(func)
            arity = keyer.simple_arity
            ttl = self.ttl_seconds if ttl_override is None else ttl_override

            def make_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                if not kwargs and len(args) == arity:
                    return (fid, args)
                return (fid, keyer.key(args, kwargs))

            if inspect.iscoroutinefunction(func):
                afunc = cast(Callable[..., Awaitable[Any]], func)

                @functools.wraps(func)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    key = make_key(args, kwargs)
                    try:
                        value = self._lookup(key)
                    except TypeError:
                        key = (fid, keyer.frozen(args, kwargs))
                        value = self._lookup(key)
                    if value is not _MISS:
                        return value
                    return await self._miss_async(key, afunc, args, kwargs, ttl)

                async_wrapper.cache = self  # type: ignore[attr-defined]
                async_wrapper.cache_function_id = fid  # type: ignore[attr-defined]
                return cast(F, async_wrapper)

            lock = self._lock
            data = self._data
            monotonic = self._clock

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                if not kwargs and len(args) == arity:
                    key: Any = (fid, args)
                else:
                    key = (fid, keyer.key(args, kwargs))
                try:
                    # The hit path, inlined: one lock, one dict lookup.
                    with lock:
                        entry = data.get(key)
                        if entry is not None and entry.expires > monotonic():
                            entry.freq += 1
                            entry.base = self._inflation
                            self._hits += 1
                            self._saved += entry.cost
                            return entry.value
                except TypeError:
                    key = (fid, keyer.frozen(args, kwargs))
                return self._miss_sync(key, func, args, kwargs, ttl)

            wrapper.cache = self  # type: ignore[attr-defined]
            wrapper.cache_function_id = fid  # type: ignore[attr-defined]
            return cast(F, wrapper)

        return decorator

    # -- lookup / store (all under the lock, never calling user code) -----------
    def _lookup(self, key: Any) -> Any:
        with self._lock:
            return self._lookup_locked(key)

    def _lookup_locked(self, key: Any) -> Any:
        entry = self._data.get(key)
        if entry is None:
            return _MISS
        if entry.expires <= self._clock():
            del self._data[key]
            self._expirations += 1
            return _MISS
        entry.freq += 1
        entry.base = self._inflation
        self._hits += 1
        self._saved += entry.cost
        return entry.value

    def _store_locked(self, key: Any, value: Any, cost: float, ttl: float) -> None:
        self._computations += 1
        self._compute_total += cost
        data = self._data
        if key in data:  # a recursive call stored it meanwhile
            del data[key]
        while len(data) >= self.max_size:
            self._evict_one_locked()
        cost = max(cost, _MIN_COST)
        self._seq += 1
        seq = self._seq
        expires = self._clock() + ttl
        data[key] = _Entry(value, expires, cost, self._inflation, seq)
        heapq.heappush(self._heap, (self._inflation + cost, seq, key))
        if expires != math.inf:
            heapq.heappush(self._exp_heap, (expires, seq, key))
        self._compact_locked()

    def _evict_one_locked(self) -> None:
        data = self._data
        exp_heap = self._exp_heap
        # Expired entries go first.
        now = self._clock()
        while exp_heap and exp_heap[0][0] <= now:
            _, seq, key = heapq.heappop(exp_heap)
            entry = data.get(key)
            if entry is not None and entry.seq == seq:
                del data[key]
                self._expirations += 1
                return
        heap = self._heap
        while heap:
            prio, seq, key = heap[0]
            entry = data.get(key)
            if entry is None or entry.seq != seq:  # stale tuple
                heapq.heappop(heap)
                continue
            current = entry.base + entry.freq * entry.cost
            if current > prio:  # hits raised it since it was pushed
                heapq.heapreplace(heap, (current, seq, key))
                continue
            heapq.heappop(heap)
            del data[key]
            self._inflation = prio
            self._evictions += 1
            return
        # Unreachable while heap and data agree; keep the bound anyway.
        data.pop(next(iter(data)))  # pragma: no cover
        self._evictions += 1  # pragma: no cover

    def _compact_locked(self) -> None:
        """Drop stale heap tuples once they outnumber live entries."""
        data = self._data
        limit = 2 * len(data) + 64
        if len(self._heap) > limit:
            self._heap = [
                (e.base + e.freq * e.cost, e.seq, k) for k, e in data.items()
            ]
            heapq.heapify(self._heap)
        if len(self._exp_heap) > limit:
            self._exp_heap = [
                (e.expires, e.seq, k) for k, e in data.items() if e.expires != math.inf
            ]
            heapq.heapify(self._exp_heap)

    # -- misses with single-flight ----------------------------------------------
    def _join_locked(self, key: Any, owner: Any, loop: Any) -> tuple[Any, _Flight | None, bool]:
        """Under the lock: (cached value or _MISS, flight, am I the leader)."""
        value = self._lookup_locked(key)
        if value is not _MISS:
            return value, None, False
        flight = self._flights.get(key)
        if flight is None or flight.owner == owner or flight.loop is not loop:
            # New flight, or a recursive call / another event loop: compute.
            self._misses += 1
            mine = _Flight(owner, loop)
            if flight is None:
                self._flights[key] = mine
            return _MISS, mine, True
        flight.add_waiter_locked()
        return _MISS, flight, False

    def _finish_leader(
        self, key: Any, flight: _Flight, value: Any, cost: float, ttl: float
    ) -> None:
        with self._lock:
            self._store_locked(key, value, cost, ttl)
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.outcome, flight.value, flight.cost = _OK, value, cost
        flight.wake()

    def _fail_leader(self, key: Any, flight: _Flight, exc: BaseException) -> None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if isinstance(exc, Exception):
                flight.outcome, flight.value = _ERROR, exc
            else:  # cancelled / interrupted: let a waiter compute instead
                flight.outcome = _RETRY
        flight.wake()

    def _follower_done(self, flight: _Flight) -> Any:
        """Account a waiter's outcome; return the value or _MISS to retry."""
        with self._lock:
            if flight.outcome == _OK:
                self._hits += 1
                self._coalesced += 1
                self._saved += flight.cost
                return flight.value
            if flight.outcome == _ERROR:
                self._misses += 1
        if flight.outcome == _ERROR:
            raise flight.value
        return _MISS

    def _miss_sync(
        self,
        key: Any,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ttl: float,
    ) -> Any:
        me = threading.get_ident()
        while True:
            with self._lock:
                value, flight, leader = self._join_locked(key, me, None)
            if value is not _MISS:
                return value
            assert flight is not None
            if leader:
                start = self._clock()
                try:
                    value = func(*args, **kwargs)
                except BaseException as exc:
                    self._fail_leader(key, flight, exc)
                    raise
                self._finish_leader(key, flight, value, self._clock() - start, ttl)
                return value
            assert flight.event is not None
            flight.event.wait()
            value = self._follower_done(flight)
            if value is not _MISS:
                return value

    async def _miss_async(
        self,
        key: Any,
        func: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ttl: float,
    ) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        while True:
            with self._lock:
                value, flight, leader = self._join_locked(key, me, loop)
            if value is not _MISS:
                return value
            assert flight is not None
            if leader:
                start = self._clock()
                try:
                    value = await func(*args, **kwargs)
                except BaseException as exc:
                    self._fail_leader(key, flight, exc)
                    raise
                self._finish_leader(key, flight, value, self._clock() - start, ttl)
                return value
            # shield: a cancelled waiter must not cancel the shared future
            await asyncio.shield(flight.future)
            value = self._follower_done(flight)
            if value is not _MISS:
                return value

    # -- management --------------------------------------------------------------
    def clear(self) -> None:
        """Drop every entry (statistics are kept)."""
        with self._lock:
            self._data.clear()
            self._heap.clear()
            self._exp_heap.clear()

    def invalidate(self, func: Callable[..., Any]) -> int:
        """Drop the entries of one function decorated by this cache; return how many."""
        fid = getattr(func, "cache_function_id", None)
        if fid is None or getattr(func, "cache", None) is not self:
            raise ValueError(f"{func!r} is not decorated by this cache")
        with self._lock:
            target = [k for k in self._data if k[0] == fid]
            for k in target:
                del self._data[k]
            self._compact_locked()
            return len(target)

    def close(self) -> None:
        """Release the cached values (the cache stays usable)."""
        self.clear()

    def __len__(self) -> int:
        return len(self._data)

    # -- statistics ----------------------------------------------------------------
    def get_cache_stats(self) -> dict[str, Any]:
        """The guide's statistics (same keys and meanings) plus a few more.

        ``hit_rate`` = hits / (hits + misses); ``estimated_time_saved`` is the
        sum, over hits, of the computation time of the value served (seconds);
        ``avg_computation_time`` is the mean time of the computations done.
        """
        with self._lock:
            hits, misses = self._hits, self._misses
            calls = hits + misses
            return {
                "cache_size": len(self._data),
                "hit_rate": hits / calls if calls else 0.0,
                "total_hits": hits,
                "total_misses": misses,
                "estimated_time_saved": self._saved,
                "avg_computation_time": (
                    self._compute_total / self._computations if self._computations else 0.0
                ),
                "max_size": self.max_size,
                "evictions": self._evictions,
                "expirations": self._expirations,
                "coalesced": self._coalesced,
            }

    def report_section(self) -> dict[str, Any]:
        """JSON-serialisable figures for the per-test report (``cache`` entry)."""
        s = self.get_cache_stats()
        return {
            "hit_rate": s["hit_rate"],
            "hits": s["total_hits"],
            "misses": s["total_misses"],
            "time_saved_s": s["estimated_time_saved"],
            "size": s["cache_size"],
            "evictions": s["evictions"],
            "expirations": s["expirations"],
            "coalesced": s["coalesced"],
            "max_size": s["max_size"],
            "avg_computation_time_s": s["avg_computation_time"],
        }
