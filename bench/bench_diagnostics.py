"""Overhead of the diagnostics: event-loop blocking detection, leak checking
and the async monitor, as ratios to the same workloads without them.

    /work/venv/bin/python bench/bench_diagnostics.py [--quick]

Each workload is run alternately bare and diagnosed, ``repeats`` times, in one
process; the table shows the median time of each and the ratio
diagnosed / bare (1.00 = no overhead).  Workloads:

* ``steps``    — 20 tasks x N ``await asyncio.sleep(0)``: empty event-loop
                 steps, the worst case for the per-step hook.
* ``http``     — N GET requests to an aiohttp server on 127.0.0.1 (port 0):
                 a realistic agent I/O loop.
* ``alloc``    — builds and drops N JSON-like messages, keeps 1 in 10: leak
                 checking (tracemalloc on) around it, plus the checker's own
                 start/stop; ``alloc+types`` adds the retained-types walk.
* fixed cost — start + stop around an empty body (what every diagnosed test
                 pays once).
* ``monitor``  — N ``async with monitor.monitor_async_operation()`` around an
                 ``await asyncio.sleep(0)``, against the bare await.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import ClientSession, web

from pytest_agentperf.measurement.leaks import LeakChecker
from pytest_agentperf.measurement.loopblock import LoopBlockDetector
from pytest_agentperf.toolkit.monitor import AsyncPerformanceMonitor


# -- workloads -----------------------------------------------------------------
async def _steps(n: int) -> None:
    async def worker() -> None:
        for _ in range(n):
            await asyncio.sleep(0)

    await asyncio.gather(*(worker() for _ in range(20)))


async def _http(n: int) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "n": request.query.get("n")})

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with ClientSession() as session:
            for i in range(n):
                async with session.get(f"http://127.0.0.1:{port}/?n={i}") as resp:
                    await resp.json()
    finally:
        await runner.cleanup()


def _alloc(n: int, keep: list[Any]) -> None:
    for i in range(n):
        msg = {"role": "assistant", "content": f"message {i} " * 8, "tokens": list(range(20))}
        if i % 10 == 0:
            keep.append(msg)


async def _monitored(n: int, monitor: AsyncPerformanceMonitor | None) -> None:
    for _ in range(n):
        if monitor is None:
            await asyncio.sleep(0)
        else:
            async with monitor.monitor_async_operation("op"):
                await asyncio.sleep(0)


# -- measurement ---------------------------------------------------------------
def _time(fn: Callable[[], None]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _pair(bare: Callable[[], None], diag: Callable[[], None], repeats: int) -> tuple[float, float]:
    bare_t, diag_t = [], []
    for _ in range(repeats):  # interleaved: both see the same machine noise
        bare_t.append(_time(bare))
        diag_t.append(_time(diag))
    return statistics.median(bare_t), statistics.median(diag_t)


def _with_detector(run: Callable[[], None]) -> Callable[[], None]:
    def go() -> None:
        det = LoopBlockDetector(threshold_s=0.1)
        det.start()
        try:
            run()
        finally:
            det.stop()
        if det.block_count:
            raise AssertionError(f"unexpected block: {det.blocks}")

    return go


def _with_leaks(run: Callable[[], None], types: bool) -> Callable[[], None]:
    def go() -> None:
        checker = LeakChecker(types=types)
        checker.start()
        run()
        checker.stop()

    return go


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads (< 20 s)")
    args = parser.parse_args()
    q = args.quick
    repeats = 3 if q else 7
    n_steps = 2_000 if q else 5_000
    n_http = 100 if q else 300
    n_alloc = 20_000 if q else 50_000
    n_mon = 5_000 if q else 20_000

    rows: list[tuple[str, str, float, float]] = []

    def steps() -> None:
        asyncio.run(_steps(n_steps))

    b, d = _pair(steps, _with_detector(steps), repeats)
    rows.append(("loop_block", f"steps 20x{n_steps}", b, d))

    def http() -> None:
        asyncio.run(_http(n_http))

    b, d = _pair(http, _with_detector(http), repeats)
    rows.append(("loop_block", f"http {n_http} GET", b, d))

    keep: list[Any] = []

    def alloc() -> None:
        _alloc(n_alloc, keep)
        keep.clear()

    b, d = _pair(alloc, _with_leaks(alloc, types=False), repeats)
    rows.append(("leak_mb", f"alloc {n_alloc} msgs", b, d))
    b, d = _pair(alloc, _with_leaks(alloc, types=True), 1 if q else 2)
    rows.append(("leak_mb+types", f"alloc {n_alloc} msgs", b, d))

    def mon_bare() -> None:
        asyncio.run(_monitored(n_mon, None))

    def mon_diag() -> None:
        asyncio.run(_monitored(n_mon, AsyncPerformanceMonitor()))

    b, d = _pair(mon_bare, mon_diag, repeats)
    rows.append(("async_monitor", f"{n_mon} ops", b, d))

    def noop() -> None:
        pass

    fixed = [
        ("loop_block", statistics.median(_time(_with_detector(noop)) for _ in range(repeats))),
        ("leak_mb", statistics.median(_time(_with_leaks(noop, False)) for _ in range(repeats))),
        ("leak_mb+types", _time(_with_leaks(noop, True))),
    ]

    print(f"python {sys.version.split()[0]}, repeats={repeats}, median seconds")
    print(f"{'diagnostic':<15} {'workload':<22} {'bare s':>9} {'with s':>9} {'ratio':>7}")
    for name, workload, bare_s, diag_s in rows:
        print(f"{name:<15} {workload:<22} {bare_s:9.4f} {diag_s:9.4f} {diag_s / bare_s:7.2f}")
    print("\nfixed cost per test (start + stop around an empty body)")
    for name, seconds in fixed:
        print(f"{name:<15} {seconds * 1000:9.2f} ms")


if __name__ == "__main__":
    main()
