"""LLM capture through the plugin: calls are found without code in the test."""

from __future__ import annotations

import subprocess
import sys
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


def test_plugin_start_up_imports_no_sdk_http_client_or_otel() -> None:
    code = (
        "import sys, pytest_agentperf.plugin\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('openai', 'anthropic', 'opentelemetry', 'httpx', 'httpx2', 'aiohttp'))\n"
        "assert 'pytest_agentperf.llm.capture' not in sys.modules\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


FIRST_USE = """
import threading, pytest

URL = "{url}/v1"
MSG = [{{"role": "user", "content": "one two three"}}]

def call(openai):
    openai.OpenAI(base_url=URL, api_key="t", max_retries=0).chat.completions.create(
        model="gpt-test", messages=MSG)

@pytest.mark.perf_budget(tokens=6)
def test_a_first_import_in_the_test_body():
    import openai  # the first import of the session
    call(openai)

@pytest.mark.perf_budget(tokens=100)
def test_b_then_in_a_thread():
    def work():
        import openai
        call(openai)
    t = threading.Thread(target=work)
    t.start()
    t.join()
"""


def test_sdk_first_imported_in_a_test_body_is_captured_there(
    pt: pytest.Pytester, server: LLMServer
) -> None:
    pt.makepyfile(FIRST_USE.format(url=server.base_url))
    result = pt.runpytest_subprocess("--perf-report=r.json", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*tokens 7 tokens > 6 tokens*"])
    tests = by_id(read_report(pt.path / "r.json"))
    first = tests["test_a_first_import_in_the_test_body"]
    assert (first["llm"]["calls"], first["tokens"]["total"]) == (1, 7)
    assert tests["test_b_then_in_a_thread"]["llm"]["calls"] == 1


def test_sdk_first_imported_in_a_fixture_is_captured(
    pt: pytest.Pytester, server: LLMServer
) -> None:
    pt.makeconftest(
        f"""
        import pytest

        @pytest.fixture
        def client():
            import anthropic  # lazily, as frameworks do
            return anthropic.Anthropic(base_url="{server.base_url}", api_key="t",
                                       max_retries=0, open_telemetry=False)
        """
    )
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(tokens=7, llm_calls=1)
        def test_x(client):
            client.messages.create(model="claude-t", max_tokens=5,
                                   messages=[{"role": "user", "content": "one two three"}])
        """
    )
    result = pt.runpytest_subprocess("--perf-report=r.json")
    result.assert_outcomes(passed=1)
    entry = read_report(pt.path / "r.json")["tests"][0]
    assert (entry["llm"]["calls"], entry["tokens"]["total"]) == (1, 7)


def test_raw_responses_through_the_plugin_have_exact_usage(
    pt: pytest.Pytester, server: LLMServer
) -> None:
    pt.makepyfile(
        f"""
        import openai, pytest

        @pytest.mark.perf_budget(tokens=14, llm_calls=2)
        def test_langchain_like():
            chat = openai.OpenAI(base_url="{server.base_url}/v1", api_key="t",
                                 max_retries=0).chat.completions
            msg = [{{"role": "user", "content": "one two three"}}]
            chat.with_raw_response.create(model="m", messages=msg).parse()
            raw = chat.with_raw_response.create(model="m", messages=msg, stream=True,
                                                stream_options={{"include_usage": True}})
            for _ in raw.parse():
                pass
        """
    )
    result = pt.runpytest_subprocess("--perf-report=r.json")
    result.assert_outcomes(passed=1)
    entry = read_report(pt.path / "r.json")["tests"][0]
    assert (entry["llm"]["calls"], entry["tokens"]["total"]) == (2, 14)
    assert entry["tokens"]["unknown_calls"] == 0 and entry["llm"]["uncaptured_calls"] == 0


def test_llm_request_the_capture_did_not_see_makes_budgets_unverifiable(
    pt: pytest.Pytester, server: LLMServer
) -> None:
    pt.makepyfile(
        f"""
        import httpx2, pytest

        BODY = {{"model": "m", "messages": [{{"role": "user", "content": "x"}}]}}

        @pytest.mark.perf_budget(tokens=1000, llm_calls=5)
        def test_hand_rolled_client():
            httpx2.post("{server.base_url}/v1/chat/completions", json=BODY)

        @pytest.mark.perf_budget(p95=100)
        def test_no_llm_budget_is_not_affected():
            httpx2.post("{server.base_url}/v1/chat/completions", json=BODY)
        """
    )
    result = pt.runpytest_subprocess("--perf-report=r.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*tokens 0 tokens*unverifiable*1x POST /v1/chat/completions*"
        "llm_calls 0 calls*unverifiable*",
    ])
    tests = by_id(read_report(pt.path / "r.json"))
    entry = tests["test_hand_rolled_client"]
    assert entry["llm"]["uncaptured_calls"] == 1
    assert entry["llm"]["uncaptured_paths"] == {"/v1/chat/completions": 1}


def test_aiohttp_llm_request_first_imported_in_the_test_is_unverifiable(
    pt: pytest.Pytester, server: LLMServer
) -> None:
    pt.makepyfile(
        f"""
        import asyncio, pytest

        @pytest.mark.perf_budget(tokens=1000)
        def test_hand_rolled_aiohttp():
            import aiohttp

            async def post():
                async with aiohttp.ClientSession() as session:
                    async with session.post("{server.base_url}/v1/messages",
                                            json={{"model": "c", "max_tokens": 1}}) as resp:
                        await resp.read()

            asyncio.run(post())
        """
    )
    result = pt.runpytest_subprocess("--perf-report=r.json", "-p", "no:aiohttp")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*tokens 0 tokens*unverifiable*1x POST /v1/messages*"])
    entry = read_report(pt.path / "r.json")["tests"][0]
    assert entry["llm"]["uncaptured_paths"] == {"/v1/messages": 1}


def test_call_without_usage_is_not_blamed_on_include_usage(
    pt: pytest.Pytester, server: LLMServer
) -> None:
    pt.makepyfile(
        f"""
        import openai, pytest

        @pytest.mark.perf_budget(tokens=1000)
        def test_x():
            openai.OpenAI(base_url="{server.base_url}/v1", api_key="t", max_retries=0
                ).chat.completions.create(model="m", extra_headers={{"x-no-usage": "1"}},
                                          messages=[{{"role": "user", "content": "x"}}])
        """
    )
    result = pt.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*1 LLM calls reported no usage; the total is a lower bound*"])
    result.stdout.no_fnmatch_line("*stream_options*")


def test_tracer_provider_set_during_a_test_is_attached_at_once(pt: pytest.Pytester) -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(tokens=10)
        def test_x():
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            trace.set_tracer_provider(TracerProvider())
            attrs = {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 8,
                     "gen_ai.usage.output_tokens": 4}
            with trace.get_tracer("fw").start_as_current_span("chat m", attributes=attrs):
                pass
        """
    )
    result = pt.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*tokens 12 tokens > 10 tokens*"])


def test_perf_disable_patches_nothing(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import sys

        def test_x():
            import openai
            assert not any(type(f).__name__ == "PostImportHooks" for f in sys.meta_path)
            assert not hasattr(openai._base_client.SyncAPIClient.request,
                               "__agentperf_llm_original__")
        """
    )
    pt.runpytest_subprocess("--perf-disable").assert_outcomes(passed=1)
