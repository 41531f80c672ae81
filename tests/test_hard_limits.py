"""Hard limits: ``perf_budget(..., enforce="hard")`` and ``perf_record.limit(...)`` refuse the
LLM call that would cross a limit before it is sent (real SDKs against the loopback server)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from _support import by_id, read_report

pytest.importorskip("openai")
pytest.importorskip("anthropic")

from llm_server import LLMServer


@pytest.fixture(scope="module")
def server() -> Iterator[LLMServer]:
    srv = LLMServer().start()
    yield srv
    srv.stop()


def _sent(server: LLMServer, tag: str) -> int:
    """Requests the server saw whose messages carry ``tag`` (one tag per inner test)."""
    return sum(1 for _, body in server.requests if tag in str(body.get("messages")))


SUITE = """
import asyncio, threading
from concurrent.futures import ThreadPoolExecutor

import anthropic, openai, pytest
import pytest_agentperf
from pytest_agentperf import BudgetExceeded

URL = "{url}"

def client():
    return openai.OpenAI(base_url=URL + "/v1", api_key="t", max_retries=0)

def aclient():
    return openai.AsyncOpenAI(base_url=URL + "/v1", api_key="t", max_retries=0)

def ask(c, tag, **kw):
    return c.chat.completions.create(
        model="gpt-test", messages=[{{"role": "user", "content": tag + " two three"}}], **kw)

@pytest.mark.perf_budget(llm_calls=3, enforce="hard")
def test_loop_sync():
    c = client()
    while True:  # a runaway agent
        ask(c, "loop-sync")

@pytest.mark.asyncio
@pytest.mark.perf_budget(llm_calls=3, enforce="hard")
async def test_loop_async():
    c = aclient()
    while True:
        await ask(c, "loop-async")

@pytest.mark.asyncio
@pytest.mark.perf_budget(llm_calls=3, enforce="hard")
async def test_concurrent_tasks():
    c = aclient()
    results = await asyncio.gather(*(ask(c, "tasks") for _ in range(10)),
                                   return_exceptions=True)
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(refused) == 7, results
    raise refused[0]

@pytest.mark.perf_budget(llm_calls=3, enforce="hard")
def test_threads():
    c = client()
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(ask, c, "threads") for _ in range(16)]
    errors = [f.exception() for f in futures if f.exception() is not None]
    assert len(errors) == 13 and all(isinstance(e, BudgetExceeded) for e in errors)
    raise errors[0]

@pytest.mark.perf_budget(tokens=20, enforce="hard")
def test_tokens_refuse_the_next_call():
    c = client()
    for _ in range(10):
        ask(c, "tokens")  # 7 tokens a call: 7, 14, 21 -> the 4th is refused

@pytest.mark.perf_budget(tokens=5, enforce="hard")
def test_stream_stops():
    stream = ask(client(), "ostrm", stream=True, stream_options={{"include_usage": True}})
    for _ in stream:
        pass

@pytest.mark.asyncio
@pytest.mark.perf_budget(tokens=5, enforce="hard")
async def test_async_anthropic_stream_stops_at_message_start():
    c = anthropic.AsyncAnthropic(base_url=URL, api_key="t", max_retries=0)
    seen = []
    stream = await c.messages.create(
        model="claude-test", max_tokens=10, stream=True,
        messages=[{{"role": "user", "content": "astrm one two three four five six"}}])
    with pytest.raises(BudgetExceeded) as info:
        async for event in stream:
            seen.append(event.type)
    assert seen == [] and info.value.streamed  # stopped before any content
    raise info.value

@pytest.mark.perf_budget(llm_calls=2, enforce="hard")
def test_anthropic_sync():
    c = anthropic.Anthropic(base_url=URL, api_key="t", max_retries=0)
    for _ in range(5):
        c.messages.create(model="claude-test", max_tokens=10,
                          messages=[{{"role": "user", "content": "anthropic-sync"}}])

@pytest.mark.perf_budget(cost_usd=0.02, enforce="hard")
def test_cost():
    c = client()
    for _ in range(5):
        ask(c, "cost")  # 0.011 USD a call: 0.011, 0.022 -> the 3rd is refused

@pytest.mark.perf_budget(llm_calls=3, enforce="hard")
def test_agent_that_swallows_errors():
    c = client()
    for _ in range(10):
        try:
            ask(c, "swallow")
        except Exception:
            pass

@pytest.mark.perf_budget(llm_calls=3, enforce="hard")
def test_within_limit_passes():
    ask(client(), "within")
    ask(client(), "within")
    ask(client(), "within")

def test_scoped_limits_nest(perf_record):
    c = client()
    ask(c, "nest")  # before the blocks: not counted by them
    with pytest.raises(BudgetExceeded, match="perf_record.limit") as outer_refusal:
        with perf_record.limit(llm_calls=3) as outer:
            with pytest.raises(BudgetExceeded) as inner_refusal:
                with perf_record.limit(llm_calls=1):
                    ask(c, "nest")
                    ask(c, "nest")  # refused by the inner block
            assert "llm_calls limit 1 calls reached" in str(inner_refusal.value)
            ask(c, "nest")
            ask(c, "nest")
            ask(c, "nest")  # refused by the outer block
    assert outer_refusal.value.limit == 3
    assert outer.calls == 3 and outer.refused == 1
    ask(c, "nest")  # after the blocks: free again
    with pytest.raises(BudgetExceeded):
        with perf_record.limit(llm_calls=1):
            ask(c, "gulp")
            try:
                ask(c, "gulp")
            except Exception:
                pass  # swallowed: the block's exit raises it again

@pytest.mark.asyncio
async def test_scoped_limit_async_with_tasks(perf_record):
    c = aclient()
    async with perf_record.limit(llm_calls=2):
        results = await asyncio.gather(*(ask(c, "ascope") for _ in range(5)),
                                       return_exceptions=True)
    # the block swallowed nothing: gather returned the refusals, so the block's exit raises

@pytest.mark.perf_budget(enforce="soft", llm_calls=1)
def test_bad_enforce():
    pass

@pytest.mark.perf_budget(p95=1.0, enforce="hard")
def test_hard_without_a_limit_it_acts_on():
    pass

@pytest.mark.perf_budget(cost_usd=1.0, enforce="hard")
def test_hard_cost_without_prices():
    pass
"""


def test_hard_limits(pt: pytest.Pytester, server: LLMServer) -> None:
    pt.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        """
    )
    pt.makepyfile(test_hard=SUITE.format(url=server.base_url))
    result = pt.runpytest_subprocess("--perf-report=r.json",
                                     "--deselect", "test_hard.py::test_cost")
    out = result.stdout.str()
    result.assert_outcomes(passed=2, failed=10, errors=3)
    for tag, n in (("loop-sync", 3), ("loop-async", 3), ("tasks", 3), ("threads", 3),
                   ("tokens", 3), ("ostrm", 1), ("astrm", 1), ("anthropic-sync", 2),
                   ("swallow", 3), ("within", 3), ("nest", 5), ("gulp", 1), ("ascope", 2)):
        assert _sent(server, tag) == n, (tag, out)
    assert re.search(r"_ test_loop_sync _+\nperf budget exceeded: llm_calls 4 calls > 3 "
                     r"calls \[hard limit: 3 calls made, 1 refused before it was sent\]\n", out)
    assert "the refused LLM call was made at test_hard.py:" in out
    assert "Traceback" not in out and "openai/_base_client.py" not in out
    result.stdout.fnmatch_lines([
        "*enforce='soft' is not one of 'after', 'hard'*",
        "*enforce='hard' acts on llm_calls, tokens, cost_usd; the budget has none of them*",
        "*enforce='hard' with cost_usd needs prices*perf_llm_prices*",
    ], consecutive=False)
    tests = by_id(read_report(pt.path / "r.json"))
    loop = tests["test_loop_sync"]
    assert loop["outcome"] == "failed" and loop["llm"]["calls"] == 3
    assert loop["hard_limit"]["refused_calls"] == 1
    assert loop["hard_limit"]["exceeded"] == "llm_calls"
    assert [v["metric"] for v in loop["violations"]] == ["llm_calls"]
    tokens = tests["test_tokens_refuse_the_next_call"]
    assert tokens["tokens"]["total"] == 21
    assert tokens["violations"][0]["value"] == 21
    assert "hard limit: 3 calls made, 1 refused" in tokens["violations"][0]["note"]
    stream = tests["test_stream_stops"]
    assert stream["hard_limit"]["stopped_streams"] == 1
    assert stream["llm"]["errors"] == 1 and stream["tokens"]["total"] == 7
    assert tests["test_threads"]["hard_limit"]["refused_calls"] == 13
    assert tests["test_agent_that_swallows_errors"]["hard_limit"]["refused_calls"] == 7
    assert tests["test_within_limit_passes"]["outcome"] == "passed"
    assert tests["test_scoped_limits_nest"]["outcome"] == "passed"
    kinds = [f["kind"] for f in tests["test_scoped_limits_nest"]["findings"]]
    assert kinds == ["hard_limit", "hard_limit", "hard_limit"]
    scoped = tests["test_scoped_limit_async_with_tasks"]
    assert scoped["outcome"] == "failed" and scoped["llm"]["calls"] == 2
    assert re.search(r"_ test_scoped_limit_async_with_tasks _+\nperf budget exceeded: "
                     r"llm_calls limit 2 calls reached: call 3 refused before it was sent "
                     r"\(hard limit, perf_record.limit\)", out)


def test_hard_cost_limit(pt: pytest.Pytester, server: LLMServer) -> None:
    pt.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        perf_llm_prices =
            gpt-test 1000 2000
        """
    )
    pt.makepyfile(test_hard=SUITE.format(url=server.base_url))
    result = pt.runpytest_subprocess("--perf-report=r.json", "-k", "test_cost")
    result.assert_outcomes(failed=1)
    assert _sent(server, "cost") == 2
    assert ("perf budget exceeded: cost_usd 0.022 USD > 0.02 USD "
            "[hard limit: 2 calls made, 1 refused before it was sent]") in result.stdout.str()


def test_limit_scope_counts_and_refuses_without_sending() -> None:
    """The bookkeeping alone: nested scopes, refusal counted once, picklable exception."""
    import pickle

    from pytest_agentperf import BudgetExceeded
    from pytest_agentperf.llm.calls import LLMCall
    from pytest_agentperf.llm.limits import LimitScope, account, admit

    test = LimitScope({"llm_calls": 5}, "perf_budget")
    block = LimitScope({"tokens": 10}, "perf_record.limit")
    scopes = admit(test, (block,))
    assert scopes == (test, block) and test.calls == block.calls == 1
    account(scopes, LLMCall("openai", "m", "chat", 0.1, prompt_tokens=6, completion_tokens=4,
                            total_tokens=10))
    with pytest.raises(BudgetExceeded) as info:
        admit(test, (block,))
    assert (info.value.budget, info.value.limit, info.value.used) == ("tokens", 10, 10)
    assert block.refused == 1 and test.refused == 0 and test.calls == 1  # nothing counted
    assert admit(test, None) == (test,)  # outside the block, only the test's limit
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value)
    with pytest.raises(ValueError, match="cost_usd needs prices"):
        LimitScope({"cost_usd": 1.0}, "x")
    with pytest.raises(ValueError, match="finite number > 0"):
        LimitScope({"llm_calls": float("nan")}, "x")


FRAMEWORKS = """
import openai, pytest

URL = "{url}/v1"

@pytest.mark.perf_budget(llm_calls=3, enforce="hard")
def test_langchain_loop():
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=URL, api_key="t", model="gpt-test", max_retries=0)
    while True:  # an agent that never stops asking
        llm.invoke("lc-loop")

@pytest.mark.asyncio
@pytest.mark.perf_budget(llm_calls=3, enforce="hard")
async def test_openai_agents_loop():
    from agents import Agent, OpenAIChatCompletionsModel, Runner

    client = openai.AsyncOpenAI(base_url=URL, api_key="t", max_retries=0)
    model = OpenAIChatCompletionsModel(model="gpt-test", openai_client=client)
    agent = Agent(name="Looper", instructions="agents-loop", model=model)
    while True:
        await Runner.run(agent, "again")
"""


def test_hard_limit_stops_real_frameworks(
    pt: pytest.Pytester, server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util
    import os

    missing = [m for m in ("langchain_openai", "agents") if importlib.util.find_spec(m) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"framework not installed: {missing} - CI must run it", pytrace=False)
        pytest.skip(f"framework not installed: {missing}")
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    pt.makepyfile(test_frameworks=FRAMEWORKS.format(url=server.base_url))
    result = pt.runpytest_subprocess("--perf-report=r.json", "-W",
                                     "ignore::DeprecationWarning")
    result.assert_outcomes(failed=2)
    assert _sent(server, "lc-loop") == 3
    assert _sent(server, "agents-loop") == 3
    out = result.stdout.str()
    assert out.count("perf budget exceeded: llm_calls 4 calls > 3 calls [hard limit: 3 calls "
                     "made, 1 refused before it was sent]") >= 2
    tests = by_id(read_report(pt.path / "r.json"))
    assert tests["test_openai_agents_loop"]["llm"]["calls"] == 3
    assert tests["test_langchain_loop"]["hard_limit"]["refused_calls"] == 1
