"""LLM call capture with the real ``openai`` / ``anthropic`` SDKs against local HTTP endpoints.

The endpoints (``tests/llm_server.py``) are a real aiohttp server on 127.0.0.1 (port 0) in a
background thread; nothing in the SDKs is mocked.
"""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")
pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from pytest_agentperf.llm import (  # noqa: E402
    CostEstimate,
    LLMCall,
    LLMCapture,
    LLMStats,
    ModelPrice,
    agent_scope,
    aggregate_calls,
    cost_usd,
    operation_samples,
    parse_price_table,
)

sys.path.insert(0, str(Path(__file__).parent))
from llm_server import REPLY, LLMServer  # noqa: E402

MSG = [{"role": "user", "content": "one two three"}]  # 3 prompt tokens
N_OUT = len(REPLY)


@pytest.fixture(scope="module")
def server() -> Iterator[LLMServer]:
    srv = LLMServer().start()
    yield srv
    srv.stop()


class Captured:
    def __init__(self) -> None:
        self.capture = LLMCapture(attach_global_otel=False)
        self.calls: list[LLMCall] = []

    def one(self) -> LLMCall:
        assert len(self.calls) == 1, self.calls
        return self.calls[0]


@pytest.fixture
def cap() -> Iterator[Captured]:
    c = Captured()
    c.capture.ensure_installed()
    c.capture.start(c.calls.append)
    yield c
    c.capture.uninstall()


def oai(server: LLMServer, **kw: Any) -> Any:
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="k", **kw)


def aoai(server: LLMServer, **kw: Any) -> Any:
    return openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="k", max_retries=0, **kw)


def ant(server: LLMServer, **kw: Any) -> Any:
    kw.setdefault("open_telemetry", False)
    kw.setdefault("max_retries", 0)
    return anthropic.Anthropic(base_url=server.base_url, api_key="k", **kw)


def aant(server: LLMServer) -> Any:
    return anthropic.AsyncAnthropic(
        base_url=server.base_url, api_key="k", max_retries=0, open_telemetry=False
    )


# -- library hygiene --------------------------------------------------------------------------
def test_import_does_not_import_sdks() -> None:
    code = (
        "import sys, pytest_agentperf, pytest_agentperf.llm as llm\n"
        "cap = llm.LLMCapture(); cap.ensure_installed(); cap.start(print); cap.stop()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('openai', 'anthropic', 'opentelemetry', 'pytest', '_pytest'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_ensure_installed_patches_only_imported_sdks_and_uninstall_restores() -> None:
    base = sys.modules["openai._base_client"]
    original = base.SyncAPIClient.__dict__["request"]
    cap = LLMCapture(attach_global_otel=False)
    cap.ensure_installed()
    cap.ensure_installed()  # idempotent: no double wrapping
    assert set(cap.installed) == {"openai", "anthropic"}
    wrapped = base.SyncAPIClient.__dict__["request"]
    assert wrapped is not original
    cap.ensure_installed()
    assert base.SyncAPIClient.__dict__["request"] is wrapped
    cap.uninstall()
    assert base.SyncAPIClient.__dict__["request"] is original
    assert cap.installed == ()


def test_not_started_records_nothing_and_stop_stops(server: LLMServer) -> None:
    cap = LLMCapture(attach_global_otel=False)
    cap.ensure_installed()
    calls: list[LLMCall] = []
    try:
        with oai(server) as client:
            client.chat.completions.create(model="m", messages=MSG)
            cap.start(calls.append)
            client.chat.completions.create(model="m", messages=MSG)
            cap.stop()
            client.chat.completions.create(model="m", messages=MSG)
    finally:
        cap.uninstall()
    assert len(calls) == 1


# -- openai chat completions ------------------------------------------------------------------
def test_openai_chat_sync_usage(server: LLMServer, cap: Captured) -> None:
    with oai(server) as client:
        r = client.chat.completions.create(
            model="gpt-a", messages=MSG, extra_headers={"x-cached": "2", "x-reasoning": "1"}
        )
    assert r.choices[0].message.content == " ".join(REPLY)
    c = cap.one()
    assert (c.provider, c.model, c.operation) == ("openai", "gpt-a", "chat")
    assert c.response_model == "gpt-a"
    assert (c.prompt_tokens, c.completion_tokens, c.total_tokens) == (3, N_OUT, 3 + N_OUT)
    assert (c.cached_tokens, c.reasoning_tokens) == (2, 1)
    assert not c.streamed and c.ttft_s is None and c.error is None and c.retries == 0
    assert c.latency_s > 0


def test_openai_chat_stream_with_usage_has_ttft(server: LLMServer, cap: Captured) -> None:
    with oai(server) as client:
        stream = client.chat.completions.create(
            model="gpt-a", messages=MSG, stream=True, stream_options={"include_usage": True},
            extra_headers={"x-delay-ms": "50"},
        )
        text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    assert text.split() == REPLY
    c = cap.one()
    assert c.streamed and c.total_tokens == 3 + N_OUT and c.prompt_tokens == 3
    assert c.ttft_s is not None and c.ttft_s >= 0.045
    assert c.latency_s >= c.ttft_s


def test_openai_chat_stream_without_usage_is_unknown(server: LLMServer, cap: Captured) -> None:
    with oai(server) as client:
        for _ in client.chat.completions.create(model="gpt-a", messages=MSG, stream=True):
            pass
    c = cap.one()
    assert c.streamed and c.ttft_s is not None
    assert (c.prompt_tokens, c.completion_tokens, c.total_tokens) == (None, None, None)
    assert not c.usage_known
    tokens = aggregate_calls(cap.calls)["tokens"]
    assert tokens["unknown_calls"] == 1 and tokens["total"] == 0


def test_openai_stream_closed_early_is_recorded_once(server: LLMServer, cap: Captured) -> None:
    with oai(server) as client:
        with client.chat.completions.create(
            model="gpt-a", messages=MSG, stream=True, stream_options={"include_usage": True}
        ) as stream:
            for _ in stream:
                break
        assert len(cap.calls) == 1  # close() finished the call
        stream.close()
    assert len(cap.calls) == 1 and cap.calls[0].total_tokens is None


def test_openai_chat_stream_helper(server: LLMServer, cap: Captured) -> None:
    with oai(server) as client, client.chat.completions.stream(
        model="gpt-a", messages=MSG, stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    assert final.usage is not None
    c = cap.one()
    assert c.streamed and c.total_tokens == final.usage.total_tokens


@pytest.mark.asyncio
async def test_openai_chat_async_and_async_stream(server: LLMServer, cap: Captured) -> None:
    async with aoai(server) as client:
        await client.chat.completions.create(model="gpt-b", messages=MSG)
        stream = await client.chat.completions.create(
            model="gpt-b", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
        async for _ in stream:
            pass
    assert [c.streamed for c in cap.calls] == [False, True]
    assert all(c.total_tokens == 3 + N_OUT and c.model == "gpt-b" for c in cap.calls)
    assert cap.calls[1].ttft_s is not None


# -- openai responses API -----------------------------------------------------------------------
def test_openai_responses_sync_and_stream(server: LLMServer, cap: Captured) -> None:
    with oai(server) as client:
        r = client.responses.create(
            model="gpt-r", input="one two", extra_headers={"x-cached": "1", "x-reasoning": "3"}
        )
        assert r.output_text.split() == REPLY
        events = [
            e.type for e in client.responses.create(model="gpt-r", input="one two", stream=True)
        ]
        assert events[-1] == "response.completed"
        with client.responses.stream(model="gpt-r", input="one two") as stream:
            final = stream.get_final_response()
        assert final.output_text.split() == REPLY
    assert [c.operation for c in cap.calls] == ["responses"] * 3
    assert [c.streamed for c in cap.calls] == [False, True, True]
    assert all((c.prompt_tokens, c.completion_tokens) == (2, N_OUT) for c in cap.calls)
    assert (cap.calls[0].cached_tokens, cap.calls[0].reasoning_tokens) == (1, 3)
    assert cap.calls[1].ttft_s is not None and cap.calls[2].ttft_s is not None


@pytest.mark.asyncio
async def test_openai_responses_async_stream(server: LLMServer, cap: Captured) -> None:
    async with aoai(server) as client:
        await client.responses.create(model="gpt-r", input="a b c")
        stream = await client.responses.create(model="gpt-r", input="a b c", stream=True)
        async for _ in stream:
            pass
    assert [(c.prompt_tokens, c.streamed) for c in cap.calls] == [(3, False), (3, True)]


# -- anthropic ----------------------------------------------------------------------------------
def test_anthropic_input_tokens_follow_otel_rule(server: LLMServer, cap: Captured) -> None:
    with ant(server) as client:
        m = client.messages.create(
            model="claude-a", max_tokens=10, messages=MSG,
            extra_headers={"x-cache-read": "100", "x-cache-write": "20"},
        )
    assert m.usage.input_tokens == 3
    c = cap.one()
    assert (c.provider, c.operation, c.model) == ("anthropic", "messages", "claude-a")
    assert c.prompt_tokens == 3 + 100 + 20 and c.cached_tokens == 100
    assert c.cache_write_tokens == 20
    assert c.completion_tokens == N_OUT and c.total_tokens == 123 + N_OUT


def test_anthropic_streams(server: LLMServer, cap: Captured) -> None:
    with ant(server) as client:
        for _ in client.messages.create(
            model="claude-a", max_tokens=10, messages=MSG, stream=True,
            extra_headers={"x-cache-read": "4", "x-delay-ms": "30"},
        ):
            pass
        with client.messages.stream(model="claude-a", max_tokens=10, messages=MSG) as stream:
            text = stream.get_final_text()
    assert text.split() == REPLY
    first, second = cap.calls
    assert first.streamed and first.prompt_tokens == 7 and first.cached_tokens == 4
    assert first.completion_tokens == N_OUT  # the final message_delta, not message_start's 1
    assert first.ttft_s is not None and first.ttft_s >= 0.025
    assert second.streamed and second.total_tokens == 3 + N_OUT


@pytest.mark.asyncio
async def test_anthropic_async(server: LLMServer, cap: Captured) -> None:
    async with aant(server) as client:
        await client.messages.create(model="claude-b", max_tokens=5, messages=MSG)
        async with client.messages.stream(model="claude-b", max_tokens=5, messages=MSG) as s:
            await s.get_final_message()
    assert [(c.total_tokens, c.streamed) for c in cap.calls] == [(3 + N_OUT, False)] * 1 + [
        (3 + N_OUT, True)
    ]


# -- retries and errors -------------------------------------------------------------------------
def test_retries_are_visible_and_call_counted_once(server: LLMServer, cap: Captured) -> None:
    with oai(server, max_retries=3) as client:
        client.chat.completions.create(
            model="gpt-a", messages=MSG, extra_headers={"x-fail-key": "r1", "x-fail-times": "2"}
        )
    with ant(server, max_retries=3) as aclient:
        aclient.messages.create(
            model="claude-a", max_tokens=5, messages=MSG,
            extra_headers={"x-fail-key": "r2", "x-fail-times": "1"},
        )
    assert [c.retries for c in cap.calls] == [2, 1]
    assert aggregate_calls(cap.calls)["llm"]["retries"] == 3


def test_errors_are_recorded(server: LLMServer, cap: Captured) -> None:
    with oai(server) as client, pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="gpt-a", messages=MSG, extra_headers={"x-status": "500"}
        )
    c = cap.one()
    assert c.error is not None and "InternalServerError" in c.error
    assert c.total_tokens is None
    assert aggregate_calls(cap.calls)["llm"]["errors"] == 1


# -- threads and tasks --------------------------------------------------------------------------
def test_calls_from_threads_reach_the_sink(server: LLMServer, cap: Captured) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with oai(server) as client:
                client.chat.completions.create(model="gpt-t", messages=MSG)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert [c.model for c in cap.calls] == ["gpt-t"] * 3


@pytest.mark.asyncio
async def test_calls_from_tasks_reach_the_sink(server: LLMServer, cap: Captured) -> None:
    async with aoai(server) as client:

        async def one(i: int) -> None:
            with agent_scope(f"worker{i}"):
                await client.chat.completions.create(model="gpt-t", messages=MSG)

        await asyncio.gather(*(asyncio.create_task(one(i)) for i in range(3)))
    assert sorted(c.agent or "" for c in cap.calls) == ["worker0", "worker1", "worker2"]


# -- OpenTelemetry: agents and dedupe ----------------------------------------------------------
def _provider(cap: Captured) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(cap.capture.span_processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _agent_attrs(name: str) -> dict[str, Any]:
    return {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name}


def test_two_agents_sharing_one_client_via_invoke_agent_spans(
    server: LLMServer, cap: Captured
) -> None:
    provider, _ = _provider(cap)
    tracer = provider.get_tracer("test")
    planner = _agent_attrs("planner")
    with oai(server) as client:
        with tracer.start_as_current_span("invoke_agent planner", attributes=planner):
            client.chat.completions.create(model="gpt-a", messages=MSG)
            with tracer.start_as_current_span("execute_tool search"):
                client.chat.completions.create(model="gpt-a", messages=MSG)
        with tracer.start_as_current_span("invoke_agent coder", attributes=_agent_attrs("coder")):
            client.chat.completions.create(model="gpt-b", messages=MSG)
        client.chat.completions.create(model="gpt-b", messages=MSG)
    provider.shutdown()
    assert [c.agent for c in cap.calls] == ["planner", "planner", "coder", None]
    per_agent = aggregate_calls(cap.calls)["llm"]["per_agent"]
    assert per_agent["planner"]["calls"] == 2 and per_agent["coder"]["calls"] == 1
    assert per_agent["planner"]["total"] == 2 * (3 + N_OUT)


def test_agent_scope_overrides_span_agent(server: LLMServer, cap: Captured) -> None:
    provider, _ = _provider(cap)
    tracer = provider.get_tracer("test")
    with oai(server) as client, tracer.start_as_current_span(
        "invoke_agent planner", attributes=_agent_attrs("planner")
    ), agent_scope("critic"):
        client.chat.completions.create(model="gpt-a", messages=MSG)
    provider.shutdown()
    assert cap.one().agent == "critic"


def test_anthropic_own_span_and_sdk_capture_count_once(server: LLMServer, cap: Captured) -> None:
    provider, exporter = _provider(cap)
    tracer = provider.get_tracer("test")
    writer = _agent_attrs("writer")
    with ant(server, open_telemetry={"tracer_provider": provider}) as client, \
            tracer.start_as_current_span("invoke_agent writer", attributes=writer):
        client.messages.create(model="claude-a", max_tokens=5, messages=MSG)
        with client.messages.stream(model="claude-a", max_tokens=5, messages=MSG) as s:
            s.get_final_message()
    provider.shutdown()
    chat_spans = [
        s for s in exporter.get_finished_spans()
        if (s.attributes or {}).get("gen_ai.operation.name") == "chat"
    ]
    assert len(chat_spans) == 2  # the SDK did report both calls as spans ...
    assert (chat_spans[0].attributes or {}).get("gen_ai.usage.input_tokens") == 3
    assert [c.source for c in cap.calls] == ["sdk", "sdk"]  # ... counted once each
    assert [c.agent for c in cap.calls] == ["writer", "writer"]


def test_instrumentation_span_around_sdk_call_counts_once(server: LLMServer, cap: Captured) -> None:
    provider, _ = _provider(cap)
    tracer = provider.get_tracer("instrumentation")
    with oai(server) as client, tracer.start_as_current_span(
        "chat gpt-a",
        attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-a"},
    ) as span:
        client.chat.completions.create(model="gpt-a", messages=MSG)
        span.set_attribute("gen_ai.usage.input_tokens", 3)
        span.set_attribute("gen_ai.usage.output_tokens", N_OUT)
    provider.shutdown()
    assert cap.one().source == "sdk"


def test_otel_only_spans_become_calls_with_agent(cap: Captured) -> None:
    provider, _ = _provider(cap)
    tracer = provider.get_tracer("framework")
    chat = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "acme",
        "gen_ai.request.model": "m1", "gen_ai.response.model": "m1-2025",
        "gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 7,
        "gen_ai.usage.cache_read.input_tokens": 5,
    }
    with tracer.start_as_current_span("invoke_agent boss", attributes=_agent_attrs("boss")):
        # two layers reporting the same call: only the innermost counts
        with tracer.start_as_current_span("chat m1", attributes=chat), \
                tracer.start_as_current_span("chat m1", attributes=chat):
            pass
        with tracer.start_as_current_span("execute_tool t", attributes={
            "gen_ai.operation.name": "execute_tool"
        }):
            pass
    with tracer.start_as_current_span("invoke_agent x", attributes=_agent_attrs("x")), \
            tracer.start_as_current_span("text_completion m2"):
        pass  # no usage: an unknown call
    provider.shutdown()
    first, second = cap.calls
    assert (first.source, first.provider, first.model, first.response_model) == (
        "otel", "acme", "m1", "m1-2025"
    )
    assert (first.prompt_tokens, first.completion_tokens, first.total_tokens) == (11, 7, 18)
    assert first.cached_tokens == 5 and first.agent == "boss" and first.latency_s >= 0
    assert second.agent == "x" and second.operation == "text_completion"
    assert second.total_tokens is None


def test_global_tracer_provider_is_attached_by_ensure_installed() -> None:
    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from pytest_agentperf.llm import LLMCapture\n"
        "cap = LLMCapture(); calls = []\n"
        "cap.ensure_installed()\n"
        "trace.set_tracer_provider(TracerProvider())\n"
        "cap.ensure_installed(); cap.ensure_installed(); cap.start(calls.append)\n"
        "t = trace.get_tracer('x')\n"
        "with t.start_as_current_span('chat m', attributes={'gen_ai.operation.name': 'chat',"
        " 'gen_ai.usage.input_tokens': 2, 'gen_ai.usage.output_tokens': 1}):\n"
        "    pass\n"
        "print(len(calls), calls[0].total_tokens)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "3"]


# -- aggregation and cost -----------------------------------------------------------------------
def _call(model: str, p: int | None, c: int | None, **kw: Any) -> LLMCall:
    total = None if p is None or c is None else p + c
    return LLMCall(provider="x", model=model, operation="chat", latency_s=kw.pop("lat", 0.1),
                   prompt_tokens=p, completion_tokens=c, total_tokens=total, **kw)


def test_aggregate_sections() -> None:
    calls = [
        _call("a", 100, 10, agent="p", cached_tokens=40, ttft_s=0.2, streamed=True, retries=1),
        _call("a", 50, 5, agent="q", lat=0.3, ttft_s=0.4, streamed=True),
        _call("b", None, None, streamed=True, ttft_s=0.1, error="Boom"),
    ]
    out = aggregate_calls(calls)
    assert out["tokens"] == {
        "total": 165, "prompt": 150, "completion": 15, "cached": 40, "reasoning": None,
        "unknown_calls": 1,
    }
    llm = out["llm"]
    assert (llm["calls"], llm["retries"], llm["errors"], llm["streamed_calls"]) == (3, 1, 1, 3)
    per_a = dict(llm["per_model"]["a"])
    assert per_a.pop("latency")["max"] == pytest.approx(0.3)
    assert sorted(per_a.pop("samples")) == pytest.approx([0.1, 0.3])
    assert per_a == {
        "calls": 2, "prompt": 150, "completion": 15, "total": 165, "unknown_calls": 0
    }
    assert llm["per_model"]["b"]["unknown_calls"] == 1
    assert set(llm["per_agent"]) == {"p", "q"}
    assert llm["ttft_p95_s"] == pytest.approx(0.38)  # type-7 p95 of (0.1, 0.2, 0.4)
    json.dumps(out)
    ops = operation_samples(calls)
    assert set(ops) == {"llm:a", "llm:b"}
    assert ops["llm:a"].latency.summary()["max"] == pytest.approx(0.3)
    assert len(ops["llm:a"].ttft) == 2
    assert aggregate_calls([])["llm"]["ttft_p95_s"] is None


def test_finished_call_carries_every_field_of_the_pending_one() -> None:
    """``PendingCall.finish`` builds the ``LLMCall`` from a dict of its fields, without the
    dataclass ``__init__`` (it is on every call's path): every field must be there, each
    where it belongs, and the call must be the one ``LLMCall(**fields)`` makes."""
    import dataclasses

    from pytest_agentperf.llm._pending import PendingCall

    got: list[LLMCall] = []
    pending = PendingCall(got.append, "prov", "chat", "model-a", "agent-a", retries=5)
    values = {"prompt_tokens": 11, "completion_tokens": 12, "total_tokens": 23,
              "cached_tokens": 13, "cache_write_tokens": 7, "reasoning_tokens": 14,
              "ttft_s": 0.5, "streamed": True, "error": "Boom", "response_model": "model-b",
              "response_id": "rid-1", "replayed": True}
    for name, value in values.items():
        setattr(pending, name, value)
    with agent_scope("judge", budgeted=False):
        pending.budgeted = PendingCall(got.append, "p", "chat", None, None).budgeted
    pending.finish()
    call = got[0]
    assert list(vars(call)) == [f.name for f in dataclasses.fields(LLMCall)]
    assert {k: getattr(call, k) for k in values} == values
    assert (call.provider, call.model, call.operation, call.agent, call.retries,
            call.source, call.replaces, call.budgeted) == (
        "prov", "model-a", "chat", "agent-a", 5, "sdk", None, False)
    assert 0 <= call.latency_s < 60
    assert call == LLMCall(**vars(call)) and hash(call) == hash(LLMCall(**vars(call)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.model = "x"  # type: ignore[misc]
    assert dataclasses.replace(call, model="x").model == "x"


def test_stats_folds_queued_calls_in_order_before_any_figure_is_read() -> None:
    """``LLMStats.add`` queues the call (the captured call pays an append); every reader
    folds the queue first, corrections after the calls they correct, and the queue is
    bounded."""
    import dataclasses

    from pytest_agentperf.llm import summary

    stats = LLMStats()
    first = _call("m", None, None)
    stats.add(first)
    stats.add(dataclasses.replace(first, prompt_tokens=3, completion_tokens=2,
                                  total_tokens=5, replaces=first))
    assert stats.calls == 1 and stats.unknown_calls == 0
    assert stats.report_section()["tokens"]["total"] == 5
    for _ in range(summary._BATCH + 3):
        stats.add(_call("m", 1, 1))
        assert len(stats._queue) < summary._BATCH
    assert stats.per_model_tokens()["m"][0] == 3 + summary._BATCH + 3
    assert stats.operation_samples()["llm:m"].latency.summary()["count"] == summary._BATCH + 4
    judge = dataclasses.replace(_call("m", 2, 2), budgeted=False)
    stats.add(judge)
    assert stats.unbudgeted is not None and stats.unbudgeted.calls == 1


def test_stats_is_a_thread_safe_sink() -> None:
    stats = LLMStats()
    threads = [
        threading.Thread(target=lambda: [stats(_call("m", 1, 1)) for _ in range(200)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert stats.report_section()["tokens"]["total"] == 1600 and stats.calls == 800


def test_cost_usd() -> None:
    prices = parse_price_table({
        "a": {"input_per_mtok": 2.0, "output_per_mtok": 8.0, "cached_input_per_mtok": 0.5},
        "b": {"input_per_mtok": 1, "output_per_mtok": 4},
    })
    calls = [_call("a", 1_000_000, 500_000, cached_tokens=200_000), _call("b", 2_000, 1_000)]
    est = cost_usd(calls, prices)
    assert est.usd == pytest.approx(0.8 * 2 + 0.2 * 0.5 + 0.5 * 8 + 0.002 + 0.004)
    assert est.complete
    stats = LLMStats()
    for c in calls:
        stats.add(c)
    assert cost_usd(stats, prices).usd == pytest.approx(est.usd)
    partial = cost_usd([*calls, _call("zzz", 5, 5), _call("a", None, None)], prices)
    assert partial == CostEstimate(usd=est.usd, unpriced_models=("zzz",), unknown_usage_calls=1)
    assert not partial.complete
    assert partial.report_section()["unpriced_models"] == ["zzz"]
    assert prices["b"] == ModelPrice(1.0, 4.0)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"m": {"input_per_mtok": 1}}, "missing 'output_per_mtok'"),
        ({"m": {"input_per_mtok": "x", "output_per_mtok": 1}}, "not a number"),
        ({"m": {"input_per_mtok": -1, "output_per_mtok": 1}}, "must be a finite number >= 0"),
        ({"m": {"input_per_mtok": 1, "output_per_mtok": 1, "typo": 1}}, "unknown key"),
        ({"m": 3}, "must be a table"),
    ],
)
def test_price_table_errors_name_model_and_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_price_table(raw)
    assert "'m'" in str(info.value)


# -- every call shape ---------------------------------------------------------------------------
CHAT_USAGE = (3, N_OUT, 3 + N_OUT)


def _usage(c: LLMCall) -> tuple[int | None, int | None, int | None]:
    return (c.prompt_tokens, c.completion_tokens, c.total_tokens)


def test_openai_raw_and_streaming_response_shapes(server: LLMServer, cap: Captured) -> None:
    server.reset()
    inc = {"include_usage": True}
    with oai(server) as client:
        chat = client.chat.completions
        raw = chat.with_raw_response.create(model="gpt-a", messages=MSG)  # langchain, litellm
        assert raw.parse().usage.total_tokens == 3 + N_OUT
        raw.parse()  # parsing twice is still one call
        with chat.with_streaming_response.create(model="gpt-a", messages=MSG) as resp:
            resp.parse()
        raw_stream = chat.with_raw_response.create(
            model="gpt-a", messages=MSG, stream=True, stream_options=inc,
            extra_headers={"x-delay-ms": "30"})
        for _ in raw_stream.parse():
            pass
        with chat.with_streaming_response.create(
            model="gpt-a", messages=MSG, stream=True, stream_options=inc
        ) as resp:
            for _ in resp.parse():
                pass
        parsed = chat.parse(model="gpt-a", messages=MSG)  # structured-output helper
        assert parsed.choices[0].message.content
        resp_raw = client.responses.with_raw_response.create(model="gpt-r", input="a b")
        resp_raw.parse()
        with client.responses.with_streaming_response.create(
            model="gpt-r", input="a b", stream=True
        ) as resp:
            for _ in resp.parse():
                pass
        client.embeddings.create(model="emb", input="one two")
    calls = cap.calls
    assert len(calls) == 8
    assert [c.streamed for c in calls] == [False, False, True, True, False, False, True, False]
    assert all(_usage(c) == CHAT_USAGE for c in calls[:5])
    assert all(_usage(c) == (2, N_OUT, 2 + N_OUT) for c in calls[5:7])
    assert _usage(calls[7]) == (2, None, 2) and calls[7].operation == "embeddings"
    assert calls[2].ttft_s is not None and calls[2].ttft_s >= 0.025
    assert calls[2].latency_s >= calls[2].ttft_s
    ids = [c.response_id for c in calls[:7]]
    assert len(set(ids)) == 7 and None not in ids
    assert sum(c.total_tokens or 0 for c in calls) == server.sent.total


async def _parsed(raw: Any) -> Any:
    """``raw.parse()``: a coroutine for async raw responses of some SDK versions."""
    out = raw.parse()
    return await out if asyncio.iscoroutine(out) else out


@pytest.mark.asyncio
async def test_async_raw_and_streaming_response_shapes(server: LLMServer, cap: Captured) -> None:
    async with aoai(server) as client:
        chat = client.chat.completions
        raw = await chat.with_raw_response.create(model="gpt-a", messages=MSG)
        await _parsed(raw)
        async with chat.with_streaming_response.create(model="gpt-a", messages=MSG) as resp:
            await resp.parse()
        raw_stream = await chat.with_raw_response.create(
            model="gpt-a", messages=MSG, stream=True, stream_options={"include_usage": True})
        async for _ in await _parsed(raw_stream):
            pass
        resp_raw = await client.responses.with_raw_response.create(
            model="gpt-r", input="a b", stream=True)
        async for _ in await _parsed(resp_raw):
            pass
    async with anthropic.AsyncAnthropic(
        base_url=server.base_url, api_key="k", max_retries=0, open_telemetry=False
    ) as aclient:
        araw = await aclient.messages.with_raw_response.create(
            model="claude-a", max_tokens=5, messages=MSG)
        await _parsed(araw)
    assert [_usage(c) for c in cap.calls] == [CHAT_USAGE] * 3 + [(2, N_OUT, 2 + N_OUT),
                                                                  CHAT_USAGE]
    assert [c.streamed for c in cap.calls] == [False, False, True, True, False]


def test_anthropic_raw_and_streaming_response(server: LLMServer, cap: Captured) -> None:
    with ant(server) as client:
        client.messages.with_raw_response.create(model="claude-a", max_tokens=5,
                                                 messages=MSG).parse()
        with client.messages.with_streaming_response.create(
            model="claude-a", max_tokens=5, messages=MSG, stream=True
        ) as resp:
            for _ in resp.parse():
                pass
    assert [_usage(c) for c in cap.calls] == [CHAT_USAGE, CHAT_USAGE]
    assert [c.streamed for c in cap.calls] == [False, True]


def test_raw_response_never_parsed_is_still_one_call(server: LLMServer, cap: Captured) -> None:
    with oai(server) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-a", messages=MSG)
        assert raw.headers["content-type"].startswith("application/json")
        assert cap.calls == []
        del raw
    c = cap.one()
    assert c.total_tokens is None  # counted, usage unknown: never a silent 0


# -- other instrumentations cannot route around the capture -------------------------------------
def test_client_wrapped_before_the_patch_is_still_captured(server: LLMServer) -> None:
    """OpenInference wraps ``OpenAI.request``, logfire sets ``client.request``: both keep the
    method they found, here the unpatched one."""
    found = sys.modules["openai._base_client"].SyncAPIClient.__dict__["request"]
    afound = sys.modules["openai._base_client"].AsyncAPIClient.__dict__["request"]
    seen: list[str] = []

    def openinference_like(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append("wrapper")
        return found(self, *args, **kwargs)

    c = Captured()
    openai.OpenAI.request = openinference_like
    try:
        c.capture.ensure_installed()
        c.capture.start(c.calls.append)
        with oai(server, max_retries=2) as client:
            client.chat.completions.create(model="gpt-a", messages=MSG)
            stream = client.chat.completions.create(
                model="gpt-a", messages=MSG, stream=True, stream_options={"include_usage": True})
            for _ in stream:
                pass
            client.chat.completions.create(
                model="gpt-a", messages=MSG,
                extra_headers={"x-fail-key": "bypass", "x-fail-times": "1"})
        async def one() -> None:
            async with aoai(server) as aclient:
                aclient.request = functools.partial(afound, aclient)  # logfire-like
                await aclient.chat.completions.create(model="gpt-a", messages=MSG)

        asyncio.run(one())
    finally:
        del openai.OpenAI.request
        c.capture.uninstall()
    assert seen == ["wrapper"] * 3
    assert [_usage(x) for x in c.calls] == [CHAT_USAGE] * 4
    assert [x.streamed for x in c.calls] == [False, True, False, False]
    assert c.calls[1].ttft_s is not None
    assert c.calls[2].retries == 1


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "request-wrapped-first"])
def test_timeouts_and_connection_errors_are_error_calls(server: LLMServer, wrapped: bool) -> None:
    """Also when an instrumentation wrapped ``request`` before the patch (the call then starts
    in ``_build_request`` and no ``request`` of ours sees the exception)."""
    base = sys.modules["openai._base_client"]
    abase = sys.modules["anthropic._base_client"]
    c = Captured()
    if wrapped:
        found = base.SyncAPIClient.__dict__["request"]
        afound = abase.SyncAPIClient.__dict__["request"]
        openai.OpenAI.request = lambda self, *a, **kw: found(self, *a, **kw)
        anthropic.Anthropic.request = lambda self, *a, **kw: afound(self, *a, **kw)
    dead = f"http://127.0.0.1:{_closed_port()}"
    try:
        c.capture.ensure_installed()
        c.capture.start(c.calls.append)
        with oai(server, timeout=0.2, max_retries=1) as client, \
                pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(
                model="gpt-t", messages=MSG, extra_headers={"x-delay-ms": "2000"})
        with openai.OpenAI(base_url=dead + "/v1", api_key="k", max_retries=0) as client, \
                pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="gpt-c", messages=MSG)
        with anthropic.Anthropic(base_url=dead, api_key="k", max_retries=0) as aclient, \
                pytest.raises(anthropic.APIConnectionError):
            aclient.messages.create(model="claude-c", max_tokens=5, messages=MSG)
    finally:
        if wrapped:
            del openai.OpenAI.request
            del anthropic.Anthropic.request
        c.capture.uninstall()
    assert [(x.model, x.retries) for x in c.calls] == [("gpt-t", 1), ("gpt-c", 0),
                                                       ("claude-c", 0)]
    errors = [x.error or "" for x in c.calls]
    assert errors[0].startswith("APITimeoutError"), errors
    assert all(e.startswith("APIConnectionError") for e in errors[1:]), errors
    assert aggregate_calls(c.calls)["llm"]["errors"] == 3


# -- the HTTP safety net ------------------------------------------------------------------------
def test_llm_requests_nothing_captured_are_reported(server: LLMServer) -> None:
    httpx2 = pytest.importorskip("httpx2")
    c = Captured()
    paths: list[str] = []
    c.capture.ensure_installed()
    c.capture.start(c.calls.append, paths.append)
    body = {"model": "m", "messages": MSG}
    try:
        with httpx2.Client(base_url=server.base_url) as http:
            http.post("/v1/chat/completions", json=body)  # a hand-rolled client: not seen
            http.post("/v1/chat/completions/", json=body)
            http.get("/v1/models")  # not an LLM call
        with oai(server) as client:
            client.chat.completions.create(model="gpt-a", messages=MSG)
            client.chat.completions.with_raw_response.create(model="gpt-a", messages=MSG)

        async def hand_rolled() -> None:
            async with httpx2.AsyncClient(base_url=server.base_url) as ahttp:
                await ahttp.post("/v1/messages", json={"model": "c", "max_tokens": 1,
                                                        "messages": MSG})

        asyncio.run(hand_rolled())
    finally:
        c.capture.uninstall()
    assert paths == ["/v1/chat/completions", "/v1/chat/completions/", "/v1/messages"]
    assert len(c.calls) == 2


def test_aiohttp_llm_requests_nothing_captured_are_reported(server: LLMServer) -> None:
    """A ``ClientSession`` made by user code (no trace config of ours) is watched too."""
    import aiohttp

    httpx2 = pytest.importorskip("httpx2")
    c = Captured()
    paths: list[str] = []
    body = {"model": "m", "messages": MSG}

    class AiohttpTransport(httpx2.AsyncBaseTransport):  # type: ignore[misc]
        """httpx over aiohttp (like the openai SDK's ``DefaultAioHttpClient``)."""

        def __init__(self, session: aiohttp.ClientSession) -> None:
            self.session = session

        async def handle_async_request(self, request: Any) -> Any:
            async with self.session.request(
                request.method, str(request.url), headers=dict(request.headers),
                data=await request.aread()
            ) as resp:
                content = await resp.read()
                return httpx2.Response(resp.status, headers=dict(resp.headers),
                                       content=content)

    async def calls() -> None:
        async with aiohttp.ClientSession() as session:
            await (await session.post(server.base_url + "/v1/chat/completions", json=body)).read()
            async with session.get(server.base_url + "/v1/models"):  # not an LLM call
                pass
            async with aiohttp.ClientSession(base_url=server.base_url + "/v1/") as based, \
                    based.post("messages", json={"model": "c", "max_tokens": 1, "messages": MSG}):
                pass
            async with openai.AsyncOpenAI(
                base_url=server.base_url + "/v1", api_key="k", max_retries=0,
                http_client=httpx2.AsyncClient(transport=AiohttpTransport(session)),
            ) as client:  # the SDK's request, seen by httpx and then aiohttp: attributed once
                await client.chat.completions.create(model="gpt-a", messages=MSG)
            async with httpx2.AsyncClient(transport=AiohttpTransport(session)) as http:
                await http.post(server.base_url + "/v1/responses", json=body)  # reported once

    c.capture.ensure_installed()
    assert c.capture._nets[2].installed
    c.capture.start(c.calls.append, paths.append)
    try:
        asyncio.run(calls())
    finally:
        c.capture.uninstall()
    assert paths == ["/v1/chat/completions", "/v1/messages", "/v1/responses"]
    assert [_usage(x) for x in c.calls] == [CHAT_USAGE]


def test_aiohttp_request_under_an_inference_span_is_attributed(
    server: LLMServer, cap: Captured
) -> None:
    import aiohttp

    provider, _ = _provider(cap)
    tracer = provider.get_tracer("framework")
    paths: list[str] = []
    cap.capture.start(cap.calls.append, paths.append)
    chat = {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 3,
            "gen_ai.usage.output_tokens": 4}

    async def call() -> None:
        async with aiohttp.ClientSession() as session:
            with tracer.start_as_current_span("chat m", attributes=chat):
                async with session.post(server.base_url + "/v1/chat/completions",
                                        json={"model": "m", "messages": MSG}) as resp:
                    await resp.read()

    asyncio.run(call())
    provider.shutdown()
    assert paths == []
    assert _usage(cap.one()) == (3, 4, 7)


def test_request_under_an_inference_span_is_attributed(server: LLMServer, cap: Captured) -> None:
    httpx2 = pytest.importorskip("httpx2")
    provider, _ = _provider(cap)
    tracer = provider.get_tracer("framework")
    paths: list[str] = []
    cap.capture.start(cap.calls.append, paths.append)
    chat = {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 3,
            "gen_ai.usage.output_tokens": 4}
    with httpx2.Client(base_url=server.base_url) as http, \
            tracer.start_as_current_span("chat m", attributes=chat), \
            tracer.start_as_current_span("POST"):
        http.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
    provider.shutdown()
    assert paths == []
    assert _usage(cap.one()) == (3, 4, 7)


def test_stats_count_uncaptured_paths() -> None:
    stats = LLMStats()
    stats.add_uncaptured("/v1/chat/completions")
    stats.add_uncaptured("/v1/chat/completions")
    llm = stats.report_section()["llm"]
    assert llm["uncaptured_calls"] == 2
    assert llm["uncaptured_paths"] == {"/v1/chat/completions": 2}


# -- spans, as each instrumentation makes them --------------------------------------------------
def test_openinference_llm_span_is_a_call(cap: Captured) -> None:
    provider, _ = _provider(cap)
    tracer = provider.get_tracer("openinference")
    with tracer.start_as_current_span("ChatCompletion", attributes={
        "openinference.span.kind": "LLM", "llm.model_name": "gpt-oi", "llm.provider": "openai",
        "llm.token_count.prompt": 5, "llm.token_count.completion": 2,
        "llm.token_count.total": 7,
    }):
        pass
    with tracer.start_as_current_span("CreateEmbeddings", attributes={
        "openinference.span.kind": "EMBEDDING", "llm.token_count.prompt": 3,
        "llm.token_count.total": 3,
    }):
        pass
    with tracer.start_as_current_span("chain", attributes={"openinference.span.kind": "CHAIN"}):
        pass
    provider.shutdown()
    chat, emb = cap.calls
    assert (chat.model, chat.provider, chat.operation) == ("gpt-oi", "openai", "chat")
    assert _usage(chat) == (5, 2, 7)
    assert emb.operation == "embeddings" and _usage(emb) == (3, None, 3)


def test_older_semconv_usage_and_non_inference_children(cap: Captured) -> None:
    provider, _ = _provider(cap)
    tracer = provider.get_tracer("openllmetry")
    with tracer.start_as_current_span("openai.chat", attributes={
        "llm.request.type": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "m",
        "gen_ai.usage.prompt_tokens": 6, "gen_ai.usage.completion_tokens": 3,
    }), tracer.start_as_current_span("POST", attributes={"http.request.method": "POST"}):
        pass  # an HTTP child span does not drop the chat span
    provider.shutdown()
    c = cap.one()
    assert (c.operation, c.provider, c.model) == ("chat", "openai", "m")
    assert _usage(c) == (6, 3, 9)


def test_backdated_response_span_is_the_sdk_call(server: LLMServer, cap: Captured) -> None:
    """OpenLLMetry's responses-API span is made after the call, with a back-dated start."""
    provider, _ = _provider(cap)
    tracer = provider.get_tracer("openllmetry")
    with oai(server) as client:
        t0 = time.time_ns()
        result = client.responses.create(model="gpt-r", input="a b")
    span = tracer.start_span("openai.response", start_time=t0, attributes={
        "gen_ai.operation.name": "chat", "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-r", "gen_ai.response.id": result.id,
        "gen_ai.usage.input_tokens": 2, "gen_ai.usage.output_tokens": N_OUT,
    })
    span.end()
    provider.shutdown()
    assert cap.one().source == "sdk"


def test_span_usage_fills_an_sdk_call_without_usage(server: LLMServer, cap: Captured) -> None:
    provider, _ = _provider(cap)
    tracer = provider.get_tracer("instr")
    with oai(server) as client:
        ids = []
        for _ in range(2):
            stream = client.chat.completions.create(model="gpt-a", messages=MSG, stream=True)
            ids.append([ch.id for ch in stream][-1])  # no include_usage: the SDK saw no usage
    # logfire-like: a sibling span after the stream, carrying the response id and usage
    tracer.start_span("streaming response", attributes={
        "gen_ai.operation.name": "chat", "gen_ai.response.id": ids[0],
        "gen_ai.usage.input_tokens": 3, "gen_ai.usage.output_tokens": N_OUT,
    }).end()
    # OpenInference-like: the span was current when the call started (claimed by it)
    with oai(server) as client, tracer.start_as_current_span("ChatCompletion", attributes={
        "openinference.span.kind": "LLM",
    }) as oi:
        for _ in client.chat.completions.create(model="gpt-a", messages=MSG, stream=True):
            pass
        oi.set_attribute("llm.token_count.prompt", 3)
        oi.set_attribute("llm.token_count.completion", N_OUT)
    provider.shutdown()
    stats = LLMStats()
    for call in cap.calls:
        stats.add(call)
    tokens, llm = stats.report_section()["tokens"], stats.report_section()["llm"]
    assert llm["calls"] == 3
    assert tokens["unknown_calls"] == 1  # the second stream: nobody reported its usage
    assert tokens["total"] == 2 * (3 + N_OUT)
    assert llm["per_model"]["gpt-a"]["unknown_calls"] == 1


def test_sibling_spans_of_one_response_count_once(cap: Captured) -> None:
    provider, _ = _provider(cap)
    tracer = provider.get_tracer("logfire")
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
             "gen_ai.response.id": "chatcmpl-x"}
    tracer.start_span("Chat Completion with 'm'", attributes=attrs).end()
    tracer.start_span("streaming response from 'm'", attributes={
        **attrs, "gen_ai.usage.input_tokens": 4, "gen_ai.usage.output_tokens": 1,
    }).end()
    provider.shutdown()
    stats = LLMStats()
    for call in cap.calls:
        stats.add(call)
    section = stats.report_section()
    assert section["llm"]["calls"] == 1
    assert (section["tokens"]["total"], section["tokens"]["unknown_calls"]) == (5, 0)


def test_span_counted_before_the_sdk_call_is_replaced_by_it(cap: Captured) -> None:
    processor = cap.capture.span_processor
    provider, _ = _provider(cap)
    provider.get_tracer("t").start_span("chat m", attributes={
        "gen_ai.operation.name": "chat", "gen_ai.response.id": "r-9",
    }).end()
    sdk = LLMCall(provider="openai", model="m", operation="chat", latency_s=0.1,
                  prompt_tokens=1, completion_tokens=2, total_tokens=3, response_id="r-9")
    processor.note_sdk_call(sdk, cap.calls.append)
    provider.shutdown()
    section = aggregate_calls(cap.calls)
    assert section["llm"]["calls"] == 1 and section["tokens"]["total"] == 3
