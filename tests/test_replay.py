"""Replayed calls: cassettes recorded by pytest-recording (vcrpy) from the loopback server,
then replayed with the server stopped.  Replayed calls count for calls and tokens exactly as
recorded; their latency is the cassette's and is kept out of the latency samples."""

from __future__ import annotations

import os

import pytest

from _support import by_id, read_report

if os.environ.get("CI") != "true":
    pytest.importorskip("openai")
    pytest.importorskip("anthropic")
    pytest.importorskip("vcr")
    pytest.importorskip("pytest_recording")

from llm_server import LLMServer

SUITE = """
import asyncio

import anthropic, openai, pytest

URL = "{url}"
MSG = [{{"role": "user", "content": "one two three"}}]

def client():
    return openai.OpenAI(base_url=URL + "/v1", api_key="t", max_retries=0)

@pytest.mark.vcr
@pytest.mark.perf_budget(tokens=100, llm_calls=3)
def test_tokens_and_calls():
    c = client()
    c.chat.completions.create(model="gpt-test", messages=MSG)
    for _ in c.chat.completions.create(model="gpt-test", messages=MSG, stream=True,
                                       stream_options={{"include_usage": True}}):
        pass
    c.responses.create(model="gpt-test", input="four five")

@pytest.mark.vcr
@pytest.mark.perf_budget(p95=10)
def test_p95():
    client().chat.completions.create(model="gpt-test", messages=MSG)

@pytest.mark.vcr
@pytest.mark.asyncio
@pytest.mark.perf_budget(ttft_p95=10)
async def test_async_streams():
    oc = openai.AsyncOpenAI(base_url=URL + "/v1", api_key="t", max_retries=0)
    ac = anthropic.AsyncAnthropic(base_url=URL, api_key="t", max_retries=0)
    async for _ in await oc.chat.completions.create(
            model="gpt-test", messages=MSG, stream=True,
            stream_options={{"include_usage": True}}):
        pass
    async for _ in await ac.messages.create(model="claude-test", max_tokens=9,
                                            messages=MSG, stream=True):
        pass

@pytest.mark.vcr
def test_with_profiler(profiler):
    with profiler.profile_operation("agent", "plan"):
        pass
    client().chat.completions.create(model="gpt-test", messages=MSG)

@pytest.mark.vcr
@pytest.mark.perf_budget(llm_calls=2, enforce="hard")
def test_hard_limit_counts_replayed_calls():
    c = client()
    for _ in range(5):
        c.chat.completions.create(model="gpt-test", messages=MSG)
"""


def test_recorded_then_replayed_with_the_server_stopped(pt: pytest.Pytester) -> None:
    server = LLMServer().start()
    try:
        pt.makepyfile(test_agent=SUITE.format(url=server.base_url))
        live = pt.runpytest_subprocess("--record-mode=once", "--perf-report=live.json")
        # recording: everything live (the hard-limit test fails as it must, live or replayed)
        live.assert_outcomes(passed=4, failed=1)
        sent = server.sent
    finally:
        server.stop()
    assert (pt.path / "cassettes" / "test_agent" / "test_tokens_and_calls.yaml").is_file()
    recorded = by_id(read_report(pt.path / "live.json"))
    assert all(t["llm"]["replayed_calls"] == 0 for t in recorded.values())
    assert recorded["test_p95"]["latency"]["source"] == "llm"

    replay = pt.runpytest_subprocess("--perf-report=replay.json")
    out = replay.stdout.str()
    replay.assert_outcomes(passed=2, failed=3)
    tests = by_id(read_report(pt.path / "replay.json"))
    # exact tokens and calls, as recorded
    for name in ("test_tokens_and_calls", "test_async_streams", "test_p95"):
        assert tests[name]["tokens"] == recorded[name]["tokens"], name
        assert tests[name]["llm"]["calls"] == recorded[name]["llm"]["calls"]
        assert tests[name]["llm"]["replayed_calls"] == tests[name]["llm"]["calls"] > 0
        # no latency sample from a replayed call
        assert tests[name]["latency"]["count"] == 0
        assert "replayed from a cassette" in tests[name]["latency"]["note"]
        assert not any(k.startswith("llm:") for k in tests[name]["operations"])
    tokens = tests["test_tokens_and_calls"]
    assert tokens["outcome"] == "passed" and tokens["tokens"]["total"] > 0
    assert tokens["llm"]["calls"] == 3
    assert sent.total >= tokens["tokens"]["total"]
    # a latency budget over replayed calls only is not measurable, not a pass
    assert tests["test_p95"]["outcome"] == "failed"
    assert ("p95 unknown > 10 s (n=0) [unverifiable: latency/p95 missing: not measurable: "
            "all 1 LLM calls were replayed from a cassette") in out
    streams = tests["test_async_streams"]
    assert streams["outcome"] == "failed" and streams["llm"]["ttft_p95_s"] is None
    assert "no live streamed LLM call measured a time to first token (2 calls were " \
           "replayed" in out
    # other samples stay: the profiler's operation is the test's latency
    prof = tests["test_with_profiler"]
    assert prof["outcome"] == "passed" and prof["latency"]["count"] == 1
    assert prof["latency"]["source"] == "profiler"
    hard = tests["test_hard_limit_counts_replayed_calls"]
    assert hard["llm"]["calls"] == 2 and hard["hard_limit"]["refused_calls"] == 1


def test_replayed_calls_count_but_are_not_latency_samples() -> None:
    from pytest_agentperf.llm import LLMCall, aggregate_calls, operation_samples

    live = LLMCall("openai", "m", "chat", 0.5, prompt_tokens=3, completion_tokens=4,
                   total_tokens=7, ttft_s=0.1, streamed=True)
    replayed = LLMCall("openai", "m", "chat", 0.001, prompt_tokens=3, completion_tokens=4,
                       total_tokens=7, ttft_s=0.0005, streamed=True, replayed=True)
    section = aggregate_calls([live, replayed, replayed])
    assert section["llm"]["calls"] == 3 and section["llm"]["replayed_calls"] == 2
    assert section["tokens"]["total"] == 21
    assert section["llm"]["ttft_p95_s"] == pytest.approx(0.1)
    assert len(operation_samples([live, replayed])["llm:m"].latency) == 1
    assert operation_samples([replayed]) == {}
