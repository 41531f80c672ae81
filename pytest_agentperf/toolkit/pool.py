"""ConnectionPool: the guide's HTTP connection pool over one shared aiohttp connector.

The guide's API is kept (``ConnectionPool(min_connections, max_connections,
connection_timeout)``, ``initialize``, ``acquire``, ``release``,
``get_pool_stats`` and its keys), with these meanings:

* A *pooled session* (what ``acquire`` returns) is a :class:`PooledSession`, an
  ``aiohttp.ClientSession``-compatible object (``get``/``post``/``request``/…
  and every other attribute are forwarded) over the pool's ONE shared
  ``TCPConnector`` (``connector_owner=False``).  The underlying ``ClientSession``
  is created on first use and reused across acquires.
* ``max_connections`` bounds the sessions leased at once (``acquire`` waits,
  FIFO, up to ``connection_timeout`` and then raises
  :class:`PoolTimeoutError`) and the TCP connections the connector opens.
  ``total/active/available_connections`` count these leases, as in the guide.
* ``connections_created`` / ``connections_reused`` are **real TCP
  connections**, counted with aiohttp's tracing hooks
  (``on_connection_create_end`` / ``on_connection_reuseconn``);
  ``connection_errors`` counts failed requests (``on_request_exception``:
  refused connections, server disconnects, timeouts).  The connector drops a
  broken connection, so the next request opens a new one: the pool recovers.
* ``close()`` / ``async with`` close every session and the connector; no
  "Unclosed client session" warning is left behind.

Use one pool from one event loop.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from pytest_agentperf.stats import SampleSet

if TYPE_CHECKING:
    import aiohttp

__all__ = ["ConnectionPool", "PoolClosedError", "PoolTimeoutError", "PooledSession"]


if sys.version_info >= (3, 11):

    class PoolTimeoutError(TimeoutError):
        """No pooled connection became free within ``connection_timeout``."""

else:  # pragma: no cover - asyncio.TimeoutError is distinct before 3.11

    class PoolTimeoutError(asyncio.TimeoutError, TimeoutError):
        """No pooled connection became free within ``connection_timeout``."""


class PoolClosedError(RuntimeError):
    """The pool was closed (or never initialised)."""


class PooledSession:
    """A leased ``aiohttp.ClientSession`` over the pool's shared connector.

    Behaves like the session it wraps (created lazily on first use); closing
    it is allowed and simply retires it from the pool.
    """

    __slots__ = ("_closed", "_pool", "_session")

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def session(self) -> aiohttp.ClientSession:
        """The underlying ``aiohttp.ClientSession`` (created on first access)."""
        if self._closed:
            raise RuntimeError("Session is closed")
        if self._session is None:
            self._session = self._pool._new_client_session()
        return self._session

    @property
    def closed(self) -> bool:
        return self._closed or (self._session is not None and self._session.closed)

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()

    # The common request methods, forwarded explicitly for speed and typing.
    def request(self, method: str, url: Any, **kwargs: Any) -> Any:
        return self.session.request(method, url, **kwargs)

    def get(self, url: Any, **kwargs: Any) -> Any:
        return self.session.get(url, **kwargs)

    def post(self, url: Any, **kwargs: Any) -> Any:
        return self.session.post(url, **kwargs)

    def put(self, url: Any, **kwargs: Any) -> Any:
        return self.session.put(url, **kwargs)

    def patch(self, url: Any, **kwargs: Any) -> Any:
        return self.session.patch(url, **kwargs)

    def delete(self, url: Any, **kwargs: Any) -> Any:
        return self.session.delete(url, **kwargs)

    def head(self, url: Any, **kwargs: Any) -> Any:
        return self.session.head(url, **kwargs)

    def options(self, url: Any, **kwargs: Any) -> Any:
        return self.session.options(url, **kwargs)

    def ws_connect(self, url: Any, **kwargs: Any) -> Any:
        return self.session.ws_connect(url, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<PooledSession {state} of {self._pool!r}>"


class ConnectionPool:
    """Bounded pool of HTTP sessions sharing one aiohttp ``TCPConnector``."""

    def __init__(
        self,
        min_connections: int = 5,
        max_connections: int = 20,
        connection_timeout: float = 30.0,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections!r}")
        if not 0 <= min_connections <= max_connections:
            raise ValueError(
                f"min_connections must be within 0..max_connections ({max_connections}), "
                f"got {min_connections!r}"
            )
        if not connection_timeout > 0:
            raise ValueError(f"connection_timeout must be > 0, got {connection_timeout!r}")
        self.min_connections = min_connections
        self.max_connections = max_connections
        self.connection_timeout = connection_timeout
        self._connector: aiohttp.TCPConnector | None = None
        self._trace: aiohttp.TraceConfig | None = None
        self._idle: list[PooledSession] = []
        self._leased: set[PooledSession] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._reserved = 0  # slots handed to woken waiters not yet resumed
        self._initialized = False
        self._closed = False
        # statistics
        self._stats: dict[str, Any] = {
            "connections_created": 0,
            "connections_reused": 0,
            "connection_errors": 0,
            "wait_time_total": 0.0,
        }
        self._acquires = 0
        self._timeouts = 0
        self._requests = 0
        self._peak_active = 0
        self._sessions_retired = 0
        self._waits = SampleSet(max_exact=20_000)

    # -- lifecycle ---------------------------------------------------------------
    async def initialize(self) -> None:
        """Create the shared connector and ``min_connections`` idle sessions."""
        if self._closed:
            raise PoolClosedError("ConnectionPool is closed")
        if self._initialized:
            return
        import aiohttp

        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(self._on_created)
        trace.on_connection_reuseconn.append(self._on_reused)
        trace.on_request_exception.append(self._on_error)
        trace.on_request_start.append(self._on_request)
        trace.freeze()
        self._trace = trace
        self._connector = aiohttp.TCPConnector(
            limit=self.max_connections, limit_per_host=self.max_connections
        )
        self._idle = [PooledSession(self) for _ in range(self.min_connections)]
        self._initialized = True

    async def close(self) -> None:
        """Close every session (leased ones too) and the connector (idempotent)."""
        if self._closed:
            return
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosedError("ConnectionPool closed while waiting"))
        sessions = [*self._idle, *self._leased]
        self._idle.clear()
        self._leased.clear()
        for s in sessions:
            await s.close()
        if self._connector is not None:
            await self._connector.close()

    async def __aenter__(self) -> ConnectionPool:
        await self.initialize()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- leasing -----------------------------------------------------------------
    async def acquire(self) -> PooledSession:
        """Lease a session; wait up to ``connection_timeout`` if all are leased."""
        if not self._initialized:
            await self.initialize()
        if self._closed:
            raise PoolClosedError("ConnectionPool is closed")
        start = time.perf_counter()
        if len(self._leased) + self._reserved >= self.max_connections or self._waiters:
            await self._wait_for_slot()
        waited = time.perf_counter() - start
        self._stats["wait_time_total"] += waited
        self._waits.add(waited)
        session = self._idle.pop() if self._idle else PooledSession(self)
        self._leased.add(session)
        self._acquires += 1
        self._peak_active = max(self._peak_active, len(self._leased))
        return session

    async def _wait_for_slot(self) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            done, _ = await asyncio.wait((waiter,), timeout=self.connection_timeout)
        except BaseException:
            self._abandon(waiter)
            raise
        if not done:
            self._abandon(waiter)
            self._timeouts += 1
            raise PoolTimeoutError(
                f"ConnectionPool exhausted: all {self.max_connections} connections "
                f"(max_connections={self.max_connections}, "
                f"min_connections={self.min_connections}) stayed in use for "
                f"connection_timeout={self.connection_timeout}s; release() the "
                f"connections you acquire or raise max_connections"
            )
        waiter.result()  # PoolClosedError if the pool closed meanwhile
        self._reserved -= 1
        if self._closed:
            raise PoolClosedError("ConnectionPool is closed")

    def _abandon(self, waiter: asyncio.Future[None]) -> None:
        """A waiter gives up: pass a slot it was handed on to the next one."""
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            self._reserved -= 1
            self._wake_next()
        else:
            waiter.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake_next(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._reserved += 1
                waiter.set_result(None)
                return

    async def release(self, connection: PooledSession) -> None:
        """Return a leased session; a closed one is retired (and replaced lazily)."""
        if connection not in self._leased:
            raise ValueError(f"{connection!r} is not leased from this pool (released twice?)")
        self._leased.discard(connection)
        if connection.closed or self._closed:
            self._sessions_retired += 1
            await connection.close()
            if not self._closed and len(self._idle) + len(self._leased) < self.min_connections:
                self._idle.append(PooledSession(self))
        else:
            self._idle.append(connection)
        if self._waiters and len(self._leased) + self._reserved < self.max_connections:
            # Hand the slot over before anyone else can take it (FIFO).
            self._wake_next()

    def connection(self) -> _Lease:
        """``async with pool.connection() as session:`` acquire and release."""
        return _Lease(self)

    # -- aiohttp plumbing --------------------------------------------------------
    def _new_client_session(self) -> aiohttp.ClientSession:
        if self._closed or self._connector is None:
            raise PoolClosedError("ConnectionPool is closed or not initialised")
        import aiohttp

        assert self._trace is not None
        return aiohttp.ClientSession(
            connector=self._connector,
            connector_owner=False,
            trace_configs=[self._trace],
            timeout=aiohttp.ClientTimeout(total=self.connection_timeout),
        )

    async def _on_created(self, session: Any, ctx: SimpleNamespace, params: Any) -> None:
        self._stats["connections_created"] += 1

    async def _on_reused(self, session: Any, ctx: SimpleNamespace, params: Any) -> None:
        self._stats["connections_reused"] += 1

    async def _on_error(self, session: Any, ctx: SimpleNamespace, params: Any) -> None:
        self._stats["connection_errors"] += 1

    async def _on_request(self, session: Any, ctx: SimpleNamespace, params: Any) -> None:
        self._requests += 1

    # -- statistics ----------------------------------------------------------------
    def get_pool_stats(self) -> dict[str, Any]:
        """The guide's statistics (same keys) plus a few more."""
        created = self._stats["connections_created"]
        reused = self._stats["connections_reused"]
        active = len(self._leased)
        return {
            "total_connections": active + len(self._idle),
            "active_connections": active,
            "available_connections": len(self._idle),
            "connection_reuse_rate": reused / max(created + reused, 1),
            **self._stats,
            "max_connections": self.max_connections,
            "acquires": self._acquires,
            "acquire_timeouts": self._timeouts,
            "waiting": sum(1 for w in self._waiters if not w.done()),
            "closed": self._closed,
            "peak_active": self._peak_active,
            "requests": self._requests,
        }

    def report_section(self) -> dict[str, Any]:
        """JSON-serialisable figures for the per-test report (``pool`` entry)."""
        s = self.get_pool_stats()
        waits = self._waits.summary()
        return {
            "created": s["connections_created"],
            "reused": s["connections_reused"],
            "reuse_rate": s["connection_reuse_rate"],
            "errors": s["connection_errors"],
            "requests": s["requests"],
            "wait_time_s": {
                "total": s["wait_time_total"],
                "p95": waits["p95"],
                "max": waits["max"],
            },
            "acquires": s["acquires"],
            "acquire_timeouts": s["acquire_timeouts"],
            "peak_active": s["peak_active"],
            "max_connections": s["max_connections"],
        }

    def __repr__(self) -> str:
        return (
            f"<ConnectionPool {len(self._leased)}/{self.max_connections} leased"
            f"{' closed' if self._closed else ''}>"
        )


class _Lease:
    __slots__ = ("_pool", "_session")

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._session: PooledSession | None = None

    async def __aenter__(self) -> PooledSession:
        self._session = await self._pool.acquire()
        return self._session

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._session is not None
        session, self._session = self._session, None
        if not self._pool.closed:
            await self._pool.release(session)
