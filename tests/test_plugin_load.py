"""load_tester through real pytest runs: samples, budgets, report section, live progress."""

from __future__ import annotations

import pytest

from _support import by_id, read_report

SERVER = """
import asyncio, itertools, pytest, pytest_asyncio
from aiohttp import ClientSession, web

@pytest_asyncio.fixture
async def url():
    counter = itertools.count()
    async def handler(request):
        n = next(counter)
        if request.query.get("fail") and n % 4 == 0:
            return web.Response(status=500)
        await asyncio.sleep(0.002)
        return web.Response(text="ok")
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    await runner.cleanup()

def make_call(session, url):
    async def call(user_id, request_id):
        async with session.get(url) as resp:
            resp.raise_for_status()
            await resp.read()
    return call
"""


def test_load_runs_feed_latency_and_budgets(pt: pytest.Pytester) -> None:
    pt.makeconftest(SERVER)
    pt.makepyfile(
        """
        import pytest
        from aiohttp import ClientSession
        from conftest import make_call

        @pytest.mark.asyncio
        @pytest.mark.perf_budget(p95=5.0, error_rate=0.0, throughput=1)
        async def test_healthy(load_tester, url):
            async with ClientSession() as s:
                result = await load_tester.run_load_test(
                    make_call(s, url), concurrent_users=4, requests_per_user=10,
                    ramp_up_time=0.05)
            assert result["total_requests"] == 40

        @pytest.mark.asyncio
        @pytest.mark.perf_budget(error_rate=0.1, throughput=1_000_000)
        async def test_failing_backend(load_tester, url):
            async with ClientSession() as s:
                await load_tester.run_load_test(
                    make_call(s, url + "?fail=1"), concurrent_users=4, requests_per_user=10,
                    ramp_up_time=0.05)
        """
    )
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*perf budget exceeded: error_rate 0.25 > 0.1 (n=40); "
        "throughput * req/s < 1000000 req/s (n=40)*",
    ])
    tests = by_id(read_report(pt.path / "r.json"))
    healthy = tests["test_healthy"]
    assert healthy["latency"]["count"] == 40
    assert healthy["latency"]["source"] == "load"
    assert healthy["latency"]["p50"] >= 0.002
    load = healthy["load"]
    assert load["error_rate"] == 0.0 and load["total_requests"] == 40
    assert len(load["runs"]) == 1 and load["runs"][0]["timeline"]
    failing = tests["test_failing_backend"]
    assert failing["load"]["error_rate"] == pytest.approx(0.25)
    assert failing["latency"]["count"] == 30  # failed requests are not latency samples


def test_long_load_runs_show_live_progress_unless_quiet(pt: pytest.Pytester) -> None:
    pt.makeconftest(SERVER)
    pt.makepyfile(
        """
        import pytest
        from aiohttp import ClientSession
        from conftest import make_call

        @pytest.mark.asyncio
        async def test_rate(load_tester, url):
            async with ClientSession() as s:
                result = await load_tester.run_rate_test(make_call(s, url), rate=40,
                                                         duration=2.6)
            print("captured output stays captured")
            assert result["total_requests"] > 0
        """
    )
    result = pt.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["load open: *s * requests, * req/s, 0 errors, p95 *ms*"])
    result.stdout.no_fnmatch_line("captured output stays captured")
    quiet = pt.runpytest("-q")
    quiet.assert_outcomes(passed=1)
    quiet.stdout.no_fnmatch_line("load open:*")


def test_a_load_run_with_no_completed_request_never_passes(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import asyncio, pytest

        async def hang(user_id, request_id):
            await asyncio.sleep(3600)

        @pytest.mark.asyncio
        @pytest.mark.perf_budget(error_rate=0.5)
        async def test_all_hung(load_tester):
            await load_tester.run_load_test(hang, concurrent_users=5, requests_per_user=1,
                                            ramp_up_time=0.0, max_duration=0.05)

        @pytest.mark.asyncio
        @pytest.mark.perf_budget(throughput=0.001)
        async def test_nothing_planned(load_tester):
            await load_tester.run_load_test(hang, concurrent_users=1, requests_per_user=0)
        """
    )
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*error_rate unknown > 0.5 (n=0) [unverifiable: load/error_rate missing: no load run "
        "completed a request*",
        "*throughput unknown < 0.001 req/s (n=0) [unverifiable: load/throughput_rps missing*",
    ])
