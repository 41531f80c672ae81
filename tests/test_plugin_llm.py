"""LLM capture through the plugin: calls are found without code in the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _support import by_id, read_report

pytest.importorskip("openai")

from llm_server import LLMServer


@pytest.fixture(scope="module")
def server() -> Iterator[LLMServer]:
    srv = LLMServer().start()
    yield srv
    srv.stop()


SUITE = """
import openai, pytest

URL = "{url}/v1"

def client():
    return openai.OpenAI(base_url=URL, api_key="test", max_retries=0)

def test_unmarked_llm_user():
    client().chat.completions.create(
        model="gpt-test", messages=[{{"role": "user", "content": "one two three"}}])

@pytest.mark.perf_budget(llm_calls=2)
def test_too_many_calls():
    c = client()
    for _ in range(3):
        c.chat.completions.create(model="gpt-test", messages=[{{"role": "user", "content": "x"}}])

@pytest.mark.perf_budget(tokens=1000)
def test_stream_without_usage_is_not_a_silent_pass():
    stream = client().chat.completions.create(
        model="gpt-test", messages=[{{"role": "user", "content": "x"}}], stream=True)
    for _ in stream:
        pass

@pytest.mark.perf_budget(ttft_p95=10, cost_usd=1.0)
def test_stream_with_usage_ttft_and_cost():
    stream = client().chat.completions.create(
        model="gpt-test", messages=[{{"role": "user", "content": "a b c d"}}], stream=True,
        stream_options={{"include_usage": True}}, extra_headers={{"x-delay-ms": "30"}})
    for _ in stream:
        pass

def test_no_llm():
    pass
"""


def test_llm_calls_are_captured_and_budgeted(pt: pytest.Pytester, server: LLMServer) -> None:
    pt.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        perf_llm_prices =
            gpt-test 1000 2000
        """
    )
    pt.makepyfile(SUITE.format(url=server.base_url))
    # a subprocess, as in real use: one capture per process
    result = pt.runpytest_subprocess("--perf-report=r.json")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines([
        "*llm_calls 3 calls > 2 calls*",
        "*tokens * > 1000 tokens*1 LLM calls reported no usage*lower bound*",
    ])
    tests = by_id(read_report(pt.path / "r.json"))
    assert "test_no_llm" not in tests
    plain = tests["test_unmarked_llm_user"]
    assert plain["budget"] is None
    assert plain["llm"]["calls"] == 1
    assert plain["tokens"]["prompt"] == 3 and plain["tokens"]["completion"] == 4
    assert plain["operations"]["llm:gpt-test"]["count"] == 1
    assert plain["latency"]["source"] == "llm"
    streamed = tests["test_stream_with_usage_ttft_and_cost"]
    assert streamed["outcome"] == "passed"
    assert streamed["llm"]["ttft_p95_s"] >= 0.03
    assert streamed["llm"]["cost"]["complete"] is True
    assert streamed["llm"]["cost"]["usd"] == pytest.approx((4 * 1000 + 4 * 2000) / 1e6)
    assert tests["test_stream_without_usage_is_not_a_silent_pass"]["tokens"]["unknown_calls"] == 1


def test_bad_price_table_is_a_usage_error(pt: pytest.Pytester) -> None:
    pt.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        perf_llm_prices =
            gpt-test cheap 2
        """
    )
    pt.makepyfile("def test_x(): pass")
    result = pt.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*perf_llm_prices ini option: *gpt-test*input_per_mtok*"])


def test_ttft_budget_without_a_streamed_call_fails_plainly(
    pt: pytest.Pytester, server: LLMServer
) -> None:
    pt.makepyfile(
        f"""
        import openai, pytest

        @pytest.mark.perf_budget(ttft_p95=1, cost_usd=1)
        def test_x():
            openai.OpenAI(base_url="{server.base_url}/v1", api_key="t", max_retries=0
                ).chat.completions.create(model="m", messages=[{{"role": "user", "content": "x"}}])
        """
    )
    result = pt.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*ttft_p95 unknown > 1 s*no streamed LLM call measured a time to first token*"
        "cost_usd unknown > 1 USD*no price table*",
    ])
