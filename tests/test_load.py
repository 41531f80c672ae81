"""LoadTester: closed and open models against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from pytest_agentperf.histogram import FastHdr, LatencyHistogram, clamp_ns, new_hdr
from pytest_agentperf.stats import SampleSet, percentile
from pytest_agentperf.toolkit.load import LoadRun, LoadTester, _arrivals_before, _intended_offset


@dataclass
class Server:
    base: str
    session: aiohttp.ClientSession
    hits: int = 0
    stall_at: int | None = None  # the request number that starts a stall
    stall_s: float = 0.3
    stall_until: float = 0.0
    starts: list[float] = field(default_factory=list)

    async def get(self, path: str) -> None:
        async with self.session.get(self.base + path) as resp:
            await resp.read()
            resp.raise_for_status()


def _app(state: Server) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        state.hits += 1
        now = time.perf_counter()
        if state.stall_at is not None and state.hits == state.stall_at:
            state.stall_until = now + state.stall_s
        if now < state.stall_until:  # the whole server is stalled (think: a GC pause)
            await asyncio.sleep(state.stall_until - now)
        return web.Response(text="ok")

    async def fail(request: web.Request) -> web.Response:
        raise web.HTTPInternalServerError(text="boom")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "0.05")))
        return web.Response(text="slow")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/fail", fail)
    app.router.add_get("/slow", slow)
    return app


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(base="", session=None)  # type: ignore[arg-type]
    runner = web.AppRunner(_app(state), shutdown_timeout=0.2)  # do not wait out slow handlers
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
        state.session = session
        yield state
    await runner.cleanup()


# -- closed model -------------------------------------------------------------
@pytest.mark.asyncio
async def test_closed_model_result_keys_and_counts(server: Server) -> None:
    tester = LoadTester()

    async def call(user_id: int, request_id: int) -> None:
        await server.get("/ok")

    result = await tester.run_load_test(call, concurrent_users=4, requests_per_user=25,
                                        ramp_up_time=0.0)
    assert result["total_requests"] == 100 == server.hits
    assert result["successful_requests"] == 100
    assert result["failed_requests"] == 0
    assert result["error_rate"] == 0.0
    assert result["throughput_rps"] > 0
    rt = result["response_time"]
    for key in ("min", "max", "mean", "median", "p50", "p90", "p95", "p99", "p999"):
        assert rt[key] is not None
    assert rt["min"] <= rt["p50"] <= rt["p90"] <= rt["p95"] <= rt["p99"] <= rt["p999"] <= rt["max"]
    assert rt["median"] == rt["p50"]
    assert sum(e["requests"] for e in result["timeline"]) == 100
    assert result["interrupted"] is False
    assert tester.last_result is result
    assert tester.report_section()["runs"][0]["total_requests"] == 100


@pytest.mark.asyncio
async def test_failures_counted_apart_and_grouped(server: Server) -> None:
    tester = LoadTester()

    async def call(user_id: int, request_id: int) -> None:
        if request_id % 4 == 0:
            await server.get("/fail")
        elif request_id % 4 == 1:
            raise ValueError(f"bad input {user_id}/{request_id}")
        else:
            await server.get("/slow?s=0.02")

    result = await tester.run_load_test(call, concurrent_users=2, requests_per_user=8,
                                        ramp_up_time=0.0)
    assert result["total_requests"] == 16
    assert result["failed_requests"] == 8
    assert result["successful_requests"] == 8
    assert result["error_rate"] == pytest.approx(0.5)
    errors = result["errors"]
    assert errors["ClientResponseError"]["count"] == 4
    assert "500" in errors["ClientResponseError"]["first_message"]
    assert errors["ValueError"] == {"count": 4, "first_message": "bad input 0/1"}
    # latency statistics come from the successful (20 ms) requests only
    assert result["response_time"]["min"] >= 0.02
    assert len(tester.latency_histogram()) == 8
    assert sum(e["errors"] for e in result["timeline"]) == 8


@pytest.mark.asyncio
async def test_timeout_is_a_failure(server: Server) -> None:
    tester = LoadTester(timeout=0.5)  # wide: /ok stays far below it on a busy CPU

    async def call(user_id: int, request_id: int) -> None:
        await server.get("/slow?s=1.5" if request_id == 0 else "/ok")

    result = await tester.run_load_test(call, concurrent_users=2, requests_per_user=3,
                                        ramp_up_time=0.0)
    assert result["failed_requests"] == 2
    assert result["errors"]["TimeoutError"]["count"] == 2
    assert "0.5" in result["errors"]["TimeoutError"]["first_message"]
    assert result["successful_requests"] == 4
    assert result["response_time"]["max"] < 0.5
    assert result["timeout"] == 0.5
    # the run argument overrides the constructor's timeout
    result = await tester.run_load_test(call, 1, 1, 0.0, timeout=None)
    assert result["failed_requests"] == 0
    assert result["response_time"]["min"] >= 1.5


@pytest.mark.asyncio
async def test_closed_ramp_up_is_honoured(server: Server) -> None:
    tester = LoadTester()
    first_start: dict[int, float] = {}

    async def call(user_id: int, request_id: int) -> None:
        first_start.setdefault(user_id, time.perf_counter())
        await server.get("/ok")

    t0 = time.perf_counter()
    result = await tester.run_load_test(call, concurrent_users=4, requests_per_user=3,
                                        ramp_up_time=0.6)
    assert result["total_requests"] == 12
    for user_id in range(4):
        assert first_start[user_id] - t0 >= user_id * 0.15 - 0.005
    assert result["parameters"]["ramp_up_time"] == 0.6
    assert result["throughput_window_s"][0] >= 0.0


@pytest.mark.asyncio
async def test_max_duration_bounds_closed_run(server: Server) -> None:
    tester = LoadTester()

    async def call(user_id: int, request_id: int) -> None:
        await server.get("/slow?s=0.05")

    t0 = time.perf_counter()
    result = await tester.run_load_test(call, 3, 10_000, 0.0, max_duration=0.3)
    assert time.perf_counter() - t0 < 5.0  # bounded, not a speed claim: 10k x 50 ms is 500 s
    assert result["truncated"] is True
    assert 0 < result["total_requests"] < 30_000
    assert result["unfinished"] == 3


# -- open model ---------------------------------------------------------------
def test_schedule_arithmetic() -> None:
    assert _arrivals_before(1.0, 100, 0.0) == 100
    assert _arrivals_before(1.0, 200, 0.5) == 150  # 200*0.5/2 + 200*0.5
    for k in (0, 1, 10, 49, 50, 120):
        t = _intended_offset(k, 200, 0.5)
        assert _arrivals_before(t, 200, 0.5) == k  # arrival k is the (k+1)-th
    offsets = [_intended_offset(k, 50, 0.4) for k in range(60)]
    assert offsets == sorted(offsets)


@pytest.mark.asyncio
async def test_open_model_rate_and_ramp(server: Server) -> None:
    tester = LoadTester()
    starts: list[float] = []

    async def call(user_id: int, request_id: int) -> None:
        starts.append(time.perf_counter())
        await server.get("/ok")

    t0 = time.perf_counter()
    result = await tester.run_rate_test(call, rate=200, duration=1.0, ramp_up_time=0.5)
    assert result["model"] == "open"
    assert result["parameters"]["planned_requests"] == 150
    assert result["total_requests"] + result["not_started"] == 150
    assert result["total_requests"] == len(starts)
    # linear ramp: 12.5 arrivals in the first quarter second, 37.5 in the second
    first = sum(1 for s in starts if s - t0 < 0.25)
    second = sum(1 for s in starts if 0.25 <= s - t0 < 0.5)
    assert first < second
    assert result["throughput_window_s"] == [0.5, 1.0] or result["throughput_basis"] != "steady"
    assert "late_starts" in result and "start_lag" in result


@pytest.mark.asyncio
async def test_open_run_is_bounded_by_drain_timeout(server: Server) -> None:
    tester = LoadTester(drain_timeout=0.1)

    async def call(user_id: int, request_id: int) -> None:
        await server.get("/slow?s=5")

    result = await tester.run_rate_test(call, rate=50, duration=0.2)
    assert result["duration_s"] < 2.0  # not the 5 s the requests would take
    assert result["truncated"] is True
    assert result["unfinished"] == 10
    assert result["total_requests"] == 0
    assert result["response_time"]["p99"] is None


@pytest.mark.asyncio
async def test_max_concurrency_late_starts_are_reported(server: Server) -> None:
    tester = LoadTester()

    async def call(user_id: int, request_id: int) -> None:
        await server.get("/slow?s=0.05")

    result = await tester.run_rate_test(call, rate=200, duration=0.5, max_concurrency=2)
    planned = result["parameters"]["planned_requests"]
    assert planned == 100
    # capacity is 2 / 50 ms = 40/s against 200/s asked: most starts are late or never happen
    assert result["not_started"] > 0
    assert result["late_starts"] > result["total_requests"] // 2
    assert result["total_requests"] + result["not_started"] == planned
    # latency counts from the intended start: far above the 50 ms service time
    assert result["response_time"]["p99"] >= 0.2
    assert result["start_lag"]["max"] >= 0.2


@pytest.mark.asyncio
async def test_stall_shows_in_open_model_not_in_closed(server: Server) -> None:
    """A 1 s server-wide stall: the open model's p99 shows it, the closed one's hides it.
    (Margins wide enough for a busy CPU: ordinary requests stay far below the stall.)"""
    server.stall_at = 300
    server.stall_s = 1.0
    closed = LoadTester()

    async def call(user_id: int, request_id: int) -> None:
        await server.get("/ok")

    c = await closed.run_load_test(call, concurrent_users=10, requests_per_user=120,
                                   ramp_up_time=0.0)
    assert c["response_time"]["max"] >= 0.9  # the stall did happen during the closed run
    assert c["response_time"]["p99"] < 0.5  # ... but only ~10 of 1200 requests saw it

    server.hits = 0
    server.stall_at = 50
    opened = LoadTester()
    o = await opened.run_rate_test(call, rate=200, duration=1.2)
    assert o["total_requests"] >= 200
    assert o["response_time"]["p99"] >= 0.6  # every request due during the stall waited
    assert o["response_time"]["p95"] >= 0.3


@pytest.mark.asyncio
async def test_frozen_process_counts_from_intended_start(server: Server) -> None:
    """A 300 ms freeze of the load generator itself (think: a GC pause) delays the
    starts due meanwhile; measured from their intended start, the delay shows."""
    tester = LoadTester()

    async def call(user_id: int, request_id: int) -> None:
        if user_id == 40:
            time.sleep(0.3)  # blocks the event loop: the dispatcher cannot start anything
        await server.get("/ok")

    result = await tester.run_rate_test(call, rate=200, duration=0.8)
    assert result["late_starts"] >= 40  # ~60 starts were due during the freeze
    assert result["start_lag"]["max"] >= 0.25
    assert result["response_time"]["p90"] >= 0.18  # a quarter of the due starts waited >= 0.2 s
    assert result["response_time"]["max"] >= 0.25


@pytest.mark.asyncio
async def test_runs_do_not_mix_and_histograms_merge(server: Server) -> None:
    tester = LoadTester()

    async def fast(user_id: int, request_id: int) -> None:
        await server.get("/ok")

    async def slow(user_id: int, request_id: int) -> None:
        await server.get("/slow?s=0.05")

    first = await tester.run_load_test(fast, 2, 25, 0.0)
    snapshot = dict(first)
    second = await tester.run_load_test(slow, 2, 5, 0.0)
    assert first == snapshot
    assert first["total_requests"] == 50
    assert second["total_requests"] == 10
    assert second["response_time"]["min"] >= 0.05
    merged = tester.latency_histogram()
    assert len(merged) == 60
    assert merged.max_s == pytest.approx(second["response_time"]["max"])
    assert merged.min_s == pytest.approx(first["response_time"]["min"])
    samples = tester.latency_samples()  # the same latencies as a stats.SampleSet
    assert len(samples) == 60
    assert samples.summary()["max"] == pytest.approx(second["response_time"]["max"], rel=1e-6)
    assert [r["total_requests"] for r in tester.report_section()["runs"]] == [50, 10]
    assert tester.report_section()["latency"]["count"] == 60


@pytest.mark.asyncio
async def test_progress_snapshots(server: Server) -> None:
    snaps: list[dict[str, Any]] = []
    tester = LoadTester(progress=snaps.append, progress_interval=0.1)

    async def call(user_id: int, request_id: int) -> None:
        await server.get("/ok")

    await tester.run_rate_test(call, rate=100, duration=0.5)
    periodic = [s for s in snaps if not s["final"]]
    assert len(periodic) >= 2
    assert snaps[-1]["final"] is True and snaps[-1]["requests"] == 50
    for s in snaps:
        assert set(s) >= {"elapsed_s", "requests", "rps", "errors", "p95_s"}
    gaps = [b["elapsed_s"] - a["elapsed_s"] for a, b in itertools.pairwise(periodic)]
    assert all(g >= 0.09 for g in gaps)


@pytest.mark.asyncio
async def test_progress_callback_errors_surface(server: Server) -> None:
    def broken(snapshot: dict[str, Any]) -> None:
        raise KeyError("progress bug")

    tester = LoadTester(progress=broken, progress_interval=0.05)

    async def call(user_id: int, request_id: int) -> None:
        await server.get("/ok")

    with pytest.raises(KeyError, match="progress bug"):
        await tester.run_rate_test(call, rate=50, duration=0.2)
    assert tester.last_result is not None
    assert tester.last_result["total_requests"] == 10


@pytest.mark.asyncio
@pytest.mark.parametrize("model", ["open", "closed"])
async def test_cancellation_keeps_partial_results(server: Server, model: str) -> None:
    tester = LoadTester()

    async def call(user_id: int, request_id: int) -> None:
        await server.get("/slow?s=0.01")

    if model == "open":
        task = asyncio.ensure_future(tester.run_rate_test(call, rate=100, duration=10.0))
    else:
        task = asyncio.ensure_future(tester.run_load_test(call, 3, 100_000, 0.0))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    partial = tester.last_result
    assert partial is not None
    assert partial["interrupted"] is True
    assert partial["successful_requests"] > 0
    assert partial["duration_s"] < 5.0
    assert tester.report_section()["runs"][0]["interrupted"] is True
    assert len(tester.latency_histogram()) == partial["successful_requests"]


def test_invalid_arguments() -> None:
    tester = LoadTester()

    async def call(user_id: int, request_id: int) -> None:
        return None

    with pytest.raises(ValueError, match="concurrent_users"):
        asyncio.run(tester.run_load_test(call, concurrent_users=0))
    with pytest.raises(ValueError, match="rate"):
        asyncio.run(tester.run_rate_test(call, rate=0, duration=1))
    with pytest.raises(ValueError, match="timeout"):
        LoadTester(timeout=0)


# -- memory and histograms ----------------------------------------------------
def _peak_bytes(n_per_user: int) -> tuple[int, dict[str, Any]]:
    async def noop(user_id: int, request_id: int) -> None:
        return None

    async def main() -> dict[str, Any]:
        return await LoadTester().run_load_test(noop, 10, n_per_user, 0.0)

    tracemalloc.start()
    try:
        result = asyncio.run(main())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result


def test_memory_is_flat_in_the_number_of_requests() -> None:
    peak_small, small = _peak_bytes(500)  # 5 * 10^3 requests
    peak_big, big = _peak_bytes(5_000)  # 5 * 10^4 requests
    assert small["total_requests"] == 5_000
    assert big["total_requests"] == 50_000
    # a list of per-request records would add several MiB per 10^5 requests
    assert peak_big < peak_small + 512 * 1024, (peak_small, peak_big)


def test_histogram_percentiles_within_a_tenth_of_a_percent() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-4, 1) for _ in range(20_000)]
    hist = LatencyHistogram()
    for v in values:
        hist.record(v)
    assert not hist.exact
    ordered = sorted(values)
    for q in (50.0, 90.0, 95.0, 99.0):
        nearest_rank = ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
        assert hist.percentile(q) == pytest.approx(nearest_rank, rel=1e-3)
        assert hist.percentile(q) == pytest.approx(percentile(ordered, q), rel=1e-2)
    assert hist.min_s == pytest.approx(ordered[0], rel=1e-5)  # kept exact to the ns
    assert hist.max_s == pytest.approx(ordered[-1], rel=1e-5)


def test_small_histogram_uses_the_project_percentile() -> None:
    hist = LatencyHistogram()
    values = [0.001 * i for i in range(1, 21)]
    for v in values:
        hist.record(v)
    assert hist.exact
    assert hist.percentile(95) == pytest.approx(percentile(values, 95))
    assert hist.percentile(95) < max(values)  # the guide's p95 = max for n <= 20 is gone


def test_histograms_merge_and_travel_encoded() -> None:
    rng = random.Random(3)
    parts = [LatencyHistogram(exact_limit=10) for _ in range(3)]
    everything = LatencyHistogram(exact_limit=10)
    for i in range(3000):
        v = rng.uniform(0.001, 0.5)
        parts[i % 3].record(v)
        everything.record(v)
    blobs = [p.encode() for p in parts]
    assert all(isinstance(b, str) for b in blobs)
    merged = LatencyHistogram.merged(LatencyHistogram.decode(b) for b in blobs)
    assert len(merged) == 3000
    for q in (50.0, 99.0, 99.9):
        assert merged.percentile(q) == pytest.approx(everything.percentile(q), rel=1e-3)
    assert merged.mean_s == pytest.approx(everything.mean_s, rel=1e-3)
    with pytest.raises(ValueError):
        LatencyHistogram().percentile(50)


def test_fast_recording_matches_hdrh() -> None:
    rng = random.Random(11)
    for lowest, digits in ((1, 3), (1000, 2)):
        reference = new_hdr(lowest, digits)
        fast = FastHdr(new_hdr(lowest, digits))
        for _ in range(5000):
            v = max(lowest, clamp_ns(int(rng.lognormvariate(14, 4))))
            reference.record_value(v)
            fast.record(v)
        hdr = fast.sync()
        assert list(hdr.counts) == list(reference.counts)
        assert hdr.get_total_count() == reference.get_total_count() == 5000
        assert hdr.get_min_value() == reference.get_min_value()
        assert hdr.get_max_value() == reference.get_max_value()
        assert hdr.get_value_at_percentile(99.9) == reference.get_value_at_percentile(99.9)


def test_large_histogram_to_sample_set() -> None:
    hist = LatencyHistogram(exact_limit=100)
    for i in range(1, 3001):
        hist.record(i / 1000)
    samples = SampleSet.from_histogram(hist)
    assert len(samples) == 3000
    assert samples.percentile(95) == pytest.approx(hist.percentile(95), rel=2e-3)
    assert samples.summary()["max"] == pytest.approx(3.0)


# -- every planned request accounted for (issue 15) ---------------------------
@pytest.mark.asyncio
async def test_cancelled_error_from_test_func_fails_one_request_not_the_user() -> None:
    tester = LoadTester()
    calls: list[tuple[int, int]] = []

    async def call(user_id: int, request_id: int) -> None:
        calls.append((user_id, request_id))
        await asyncio.sleep(0)
        if (user_id, request_id) == (1, 2):
            raise asyncio.CancelledError  # e.g. a future the request awaited was cancelled

    result = await tester.run_load_test(call, concurrent_users=4, requests_per_user=10,
                                        ramp_up_time=0.0)
    assert len(calls) == 40  # user 1 went on after its third request
    assert result["planned_requests"] == 40
    assert result["successful_requests"] == 39 and result["failed_requests"] == 1
    assert result["cancelled_requests"] == 1
    assert result["unfinished"] == 0 and result["not_started"] == 0
    assert "test_func raised CancelledError" in result["errors"]["CancelledError"]["first_message"]
    assert result["error_rate"] == pytest.approx(1 / 40)


@pytest.mark.asyncio
async def test_unfinished_requests_count_as_failures() -> None:
    tester = LoadTester()

    async def hang(user_id: int, request_id: int) -> None:
        await asyncio.sleep(3600)

    result = await tester.run_load_test(hang, concurrent_users=5, requests_per_user=8,
                                        ramp_up_time=0.0, max_duration=0.05)
    assert result["total_requests"] == 0 and result["unfinished"] == 5
    assert result["not_started"] == 35
    assert (result["successful_requests"] + result["failed_requests"] + result["unfinished"]
            + result["not_started"]) == result["planned_requests"] == 40
    assert result["error_rate"] == 1.0  # not 0.0: nothing succeeded


def test_one_record_per_request_feeds_histogram_and_timeline() -> None:
    """A request's latency is written once (its second's list); the run's histogram and the
    per-second timeline are derived from it, also past the per-second exact limit and for a
    progress snapshot taken mid-second."""
    run = LoadRun("closed", {"concurrent_users": 1, "requests_per_user": 6000,
                             "ramp_up_time": 0.0, "max_duration": None}, None)
    t0 = run.t0_ns
    rng = random.Random(3)
    recorded: list[int] = []
    by_second: dict[int, list[int]] = {0: [], 1: [], 3: []}
    counts = {0: 10, 1: 5000, 3: 3}  # second 1 spills past the exact per-second limit
    for sec, n in counts.items():
        for i in range(n):
            latency = int(rng.lognormvariate(13, 1)) + 1
            run.record_success(t0 + sec * 1_000_000_000 + i * 1000, latency)
            recorded.append(latency)
            by_second[sec].append(latency)
        run.record_failure(t0 + sec * 1_000_000_000 + n * 1000, ValueError("x"))
        if sec == 0:
            snap = run.snapshot(t0 + 500_000_000, 0.0)  # mid-second: folded, not lost
            assert snap["requests"] == 11
            assert snap["p95_s"] == pytest.approx(percentile(sorted(recorded), 95) / 1e9)
    run.finish()
    hist = run.histogram
    assert len(hist) == len(recorded) == 5013
    assert hist.min_ns == min(recorded) and hist.max_ns == max(recorded)
    assert hist.total_s == pytest.approx(sum(recorded) / 1e9)
    assert hist.percentile(95) == pytest.approx(percentile(sorted(recorded), 95) / 1e9,
                                                rel=1e-3)
    entries = run.timeline.entries
    assert [e["t"] for e in entries] == [0, 1, 2, 3]
    assert [e["requests"] for e in entries] == [11, 5001, 0, 4]
    assert [e["errors"] for e in entries] == [1, 1, 0, 1]
    assert entries[0]["p95"] == pytest.approx(percentile(sorted(by_second[0]), 95) / 1e9)
    assert entries[1]["p95"] == pytest.approx(percentile(sorted(by_second[1]), 95) / 1e9,
                                              rel=0.01)
    assert entries[2]["p95"] is None
    assert entries[3]["p95"] == pytest.approx(percentile(sorted(by_second[3]), 95) / 1e9)
