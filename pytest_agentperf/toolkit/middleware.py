"""Server-side request timing: an aiohttp middleware and an ASGI middleware.

Both record, per ``(route template, method, status)``, the duration of every HTTP
request into a shared :class:`RequestRecorder` (HDR histograms in nanoseconds,
``time.perf_counter_ns``), so a load test against an in-process app can report
server-side latency next to the client-side latency the load tester measured::

    recorder = RequestRecorder()
    app = web.Application(middlewares=[aiohttp_middleware(recorder)])
    ...
    tester = LoadTester(server=recorder)      # its report_section() holds both

The duration is the time spent inside the application: for aiohttp from the
middleware's entry until the handler returns its response (a prepared
``StreamResponse`` includes writing its body; a plain ``Response`` body is
written after it); for ASGI until the application coroutine returns (the body
has been sent).  Unmatched aiohttp routes are grouped as ``<unmatched>``; a
request cancelled by a client disconnect is recorded with status 499.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ..histogram import LatencyHistogram

if TYPE_CHECKING:
    from aiohttp import web
    from aiohttp.typedefs import Middleware

__all__ = ["ASGIMiddleware", "RequestRecorder", "aiohttp_middleware"]

#: Status recorded for a request whose client went away before the response.
STATUS_CLIENT_CLOSED = 499
OTHER_ROUTE = "<other>"
UNMATCHED_ROUTE = "<unmatched>"

ASGIScope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[ASGIMessage]]
ASGISend = Callable[[ASGIMessage], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, ASGIReceive, ASGISend], Awaitable[None]]


class RequestRecorder:
    """Per-route request durations, thread-safe, bounded in memory.

    At most ``max_routes`` distinct routes are kept; requests to further
    routes are folded into the route ``"<other>"`` (their count is reported),
    so raw paths used as route names cannot grow memory without bound.
    """

    def __init__(self, max_routes: int = 200) -> None:
        if max_routes < 1:
            raise ValueError("max_routes must be >= 1")
        self._max_routes = max_routes
        self._lock = threading.Lock()
        self._histograms: dict[tuple[str, str, int], LatencyHistogram] = {}
        self._routes: set[str] = set()
        self._folded = 0

    def record_ns(self, route: str, method: str, status: int, duration_ns: int) -> None:
        """Record one request that took ``duration_ns`` nanoseconds."""
        with self._lock:
            if route not in self._routes:
                if len(self._routes) >= self._max_routes:
                    route = OTHER_ROUTE
                    self._folded += 1
                else:
                    self._routes.add(route)
            key = (route, method, status)
            hist = self._histograms.get(key)
            if hist is None:
                hist = self._histograms[key] = LatencyHistogram()
            hist.record_ns(duration_ns)

    def histogram(
        self, route: str | None = None, method: str | None = None, status: int | None = None
    ) -> LatencyHistogram:
        """Merged histogram of the requests matching the given filters (None: any)."""
        out = LatencyHistogram()
        with self._lock:
            for (r, m, s), hist in self._histograms.items():
                if (route is None or r == route) and (method is None or m == method) and (
                    status is None or s == status
                ):
                    out.merge(hist)
        return out

    def encode(self) -> dict[str, str]:
        """Histoblobs keyed ``"METHOD route status"`` (for transport between processes)."""
        with self._lock:
            return {f"{m} {r} {s}": h.encode() for (r, m, s), h in self._histograms.items()}

    def __len__(self) -> int:
        with self._lock:
            return sum(len(h) for h in self._histograms.values())

    def reset(self) -> None:
        """Forget everything recorded."""
        with self._lock:
            self._histograms.clear()
            self._routes.clear()
            self._folded = 0

    def report_section(self) -> dict[str, Any]:
        """``total_requests``, ``folded_requests`` and ``routes``: one summary
        (route, method, status, count, min, mean, p50, p90, p95, p99, p999, max, in
        seconds) per key, sorted by route, method, status."""
        with self._lock:
            items = sorted(self._histograms.items())
            routes = [
                {"route": r, "method": m, "status": s, **h.summary()} for (r, m, s), h in items
            ]
            folded = self._folded
        return {
            "total_requests": sum(row["count"] for row in routes),
            "folded_requests": folded,
            "routes": routes,
        }


def _aiohttp_route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    if resource is None:
        return UNMATCHED_ROUTE
    return str(resource.canonical)


def aiohttp_middleware(recorder: RequestRecorder) -> Middleware:
    """An aiohttp middleware recording every request's duration into ``recorder``."""
    from aiohttp import web

    @web.middleware
    async def agentperf_timing(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        start = time.perf_counter_ns()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = STATUS_CLIENT_CLOSED
            raise
        finally:
            recorder.record_ns(
                _aiohttp_route(request), request.method, status,
                time.perf_counter_ns() - start,
            )

    return agentperf_timing


def _default_asgi_route(scope: ASGIScope) -> str:
    # Starlette / FastAPI routers put the matched route into the (shared) scope.
    route = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    if isinstance(path, str):
        return path
    return str(scope.get("path", UNMATCHED_ROUTE))


class ASGIMiddleware:
    """ASGI middleware recording every HTTP request's duration into ``recorder``.

    ``route_of(scope)`` names the route after the app ran; by default the
    template of the route a Starlette/FastAPI router matched, else the raw path
    (kept bounded by the recorder's ``max_routes``).  Other scope types
    (websocket, lifespan) pass through untimed.
    """

    def __init__(
        self,
        app: ASGIApp,
        recorder: RequestRecorder,
        route_of: Callable[[ASGIScope], str] | None = None,
    ) -> None:
        self.app = app
        self.recorder = recorder
        self.route_of = route_of or _default_asgi_route

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter_ns()
        status: list[int] = []

        async def send_wrapper(message: ASGIMessage) -> None:
            if message.get("type") == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        final = 500
        try:
            await self.app(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            final = STATUS_CLIENT_CLOSED
            raise
        finally:
            if status:
                final = status[0]
            self.recorder.record_ns(
                self.route_of(scope), str(scope.get("method", "GET")), final,
                time.perf_counter_ns() - start,
            )
