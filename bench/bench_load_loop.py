"""Closed-model load loop: our ``LoadTester.run_load_test`` vs the guide's naive ``LoadTester``.

    python bench/bench_load_loop.py [--quick]

Both drive the same ``test_func`` with the same users and requests per user, no ramp-up,
interleaved rounds (order alternating), each timed from the call to its return:

1. loopback HTTP: an aiohttp server in a subprocess on 127.0.0.1 (``bench_load.py --serve``),
   one shared ``ClientSession``; the server pinned to one core, this client to the other
   (when the machine has two). Target: ours >= 0.97x the guide's requests per second.
2. no I/O: ``test_func`` returns at once, so the figure is the loop's own per-request
   cost (bookkeeping, clocks, coroutine calls) -- a magnifying glass, not a target.

Ratios are ours / guide in the same round; best and median over the rounds are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from guide_reference import LoadTester as _GuideLoadTester  # noqa: E402

from pytest_agentperf.toolkit.load import LoadTester  # noqa: E402

GuideLoadTester: Any = _GuideLoadTester  # the guide's code is untyped
Call = Callable[[int, int], Awaitable[None]]


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {cpu})


async def _timed(kind: str, call: Call, users: int, per_user: int) -> float:
    t0 = time.perf_counter()
    if kind == "ours":
        result = await LoadTester().run_load_test(call, users, per_user, 0.0)
        n = result["total_requests"]
    else:
        result = await GuideLoadTester().run_load_test(call, users, per_user, 0.0)
        n = result["total_requests"]
    assert n == users * per_user, (kind, n)
    return n / (time.perf_counter() - t0)


async def _compare(name: str, call: Call, users: int, per_user: int, rounds: int) -> None:
    await _timed("ours", call, users, max(1, per_user // 10))  # warm-up (connections)
    await _timed("guide", call, users, max(1, per_user // 10))
    rps: dict[str, list[float]] = {"ours": [], "guide": []}
    ratios = []
    for i in range(rounds):
        order = ("ours", "guide") if i % 2 == 0 else ("guide", "ours")
        got = {kind: await _timed(kind, call, users, per_user) for kind in order}
        for kind, value in got.items():
            rps[kind].append(value)
        ratios.append(got["ours"] / got["guide"])
    print(f"== {name}: {users} users x {per_user} requests, {rounds} interleaved rounds ==")
    for kind in ("guide", "ours"):
        print(f"    {kind:<6} best {max(rps[kind]):9.0f} req/s   median "
              f"{statistics.median(rps[kind]):9.0f} req/s")
    print(f"    ours/guide: best-of {max(rps['ours']) / max(rps['guide']):.3f}x   "
          f"median of per-round ratios {statistics.median(ratios):.3f}x   "
          f"(rounds: {' '.join(f'{r:.2f}' for r in ratios)})")


async def bench(port: int, quick: bool) -> None:
    import aiohttp
    from bench_load import make_call

    rounds = 4 if quick else 8
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as session:
        call = make_call(session, f"http://127.0.0.1:{port}/ok")
        await _compare("loopback HTTP (target >= 0.97x)", call, 32, 60 if quick else 150,
                       rounds)

    async def noop(user_id: int, request_id: int) -> None:
        return None

    await _compare("no I/O (per-request loop cost)", noop, 32, 1000 if quick else 5000, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    args = parser.parse_args()
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, "
          f"{os.cpu_count()} CPUs")
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bench_load.py"), "--serve"],
        stdout=subprocess.PIPE, text=True, preexec_fn=lambda: _pin(1),
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        _pin(0)
        asyncio.run(bench(port, args.quick))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
