"""The framework matrix: what each agent framework's calls look like to the plugin.

Each framework runs in one inner pytest session whose tests each use it once.  An inner test
carries only framework code and a ``perf_budget`` marker set to the exact figures; the outer
test asserts that the plugin reported exactly what the loopback server sent: calls, prompt,
completion and total tokens, calls without usage, streamed calls, per model and, where the
framework names its agents, per agent; and that nothing tried to leave the machine.

Each session is a pytest run in a new process (``runpytest_subprocess``), so the framework and
the ``openai`` SDK are imported for the first time inside the first test's body, as in a
user's suite that imports lazily.  The frameworks' telemetry is switched off by their own
environment switches, and every other request to the outside goes through
:class:`~counting_server.Fence` (a loopback blackhole proxy) and fails the session.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from _support import by_id, read_report
from counting_server import COMPLETION, PROMPT, CountingServer, Fence

# Environment switches that keep the frameworks off the network (documented by each project).
QUIET_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # litellm: no model-price download at import
    "LITELLM_TELEMETRY": "False",
    "PRAISONAI_TELEMETRY_DISABLED": "true",  # praisonaiagents' PostHog telemetry
    "PRAISONAI_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",  # the common opt-out (praisonai, others)
    "HF_HUB_OFFLINE": "1",  # smolagents imports huggingface_hub
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "LANGCHAIN_TRACING_V2": "false",  # no LangSmith upload
    "LANGSMITH_TRACING": "false",
    "CREWAI_DISABLE_TELEMETRY": "true",
    "TRACELOOP_TELEMETRY": "false",
    "ANONYMIZED_TELEMETRY": "false",
    "SCARF_NO_ANALYTICS": "true",
}


@dataclass
class SessionRun:
    """One inner session: its pytest result and its tests' report entries by test name."""

    result: pytest.RunResult
    entries: dict[str, dict[str, Any]]
    server: CountingServer
    fence: Fence


def require(*modules: str) -> None:
    """Skip when a framework is missing; on CI (``CI`` set) that is a failure instead."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        msg = f"framework not installed: {', '.join(missing)} (pip install -e '.[frameworks]')"
        if os.environ.get("CI"):
            pytest.fail(msg + " - CI must run the framework matrix", pytrace=False)
        pytest.skip(msg)


@pytest.fixture
def llm_server() -> Iterator[CountingServer]:
    srv = CountingServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def fence() -> Iterator[Fence]:
    f = Fence().start()
    yield f
    f.stop()


@pytest.fixture
def run_session(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    llm_server: CountingServer,
    fence: Fence,
) -> Any:
    """``run_session(source, needs, env, conftest)``: run test file ``source`` in a new process."""
    pytester.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        """
    )
    for key, value in QUIET_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                "all_proxy"):
        monkeypatch.setenv(key, fence.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_BASE", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    for key in ("OTEL_SDK_DISABLED", "OPENAI_AGENTS_DISABLE_TRACING", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(key, raising=False)

    def run(
        source: str,
        needs: tuple[str, ...] = (),
        env: dict[str, str | None] | None = None,
        conftest: str | None = None,
    ) -> SessionRun:
        require(*needs)
        for key, value in (env or {}).items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        pytester.makepyfile(test_matrix_inner=source)
        if conftest is not None:
            pytester.makeconftest(conftest)
        result = pytester.runpytest_subprocess(
            "--perf-report=r.json", "-p", "no:cacheprovider", "-p", "no:randomly",
            "-W", "ignore::DeprecationWarning", "-W", "ignore::PendingDeprecationWarning",
            "-rA", timeout=300,  # a framework's first import takes a minute on a busy machine
        )
        report = pytester.path / "r.json"
        assert report.exists(), f"no report:\n{result.stdout}\n{result.stderr}"
        return SessionRun(result, by_id(read_report(report)), llm_server, fence)

    return run


PER_CALL = PROMPT + COMPLETION


@dataclass(frozen=True)
class Case:
    """One inner test: its source, the models it calls and what the server must have sent."""

    source: str
    models: tuple[str, ...]
    calls: int
    streamed: int = 0
    per_agent: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Session:
    """One inner pytest session (a fresh interpreter): its first test is the framework's first
    use in the process."""

    needs: tuple[str, ...]
    cases: dict[str, Case]
    env: dict[str, str | None] = field(default_factory=dict)
    conftest: str | None = None

    def source(self) -> str:
        return "import os\nimport pytest\n" + "".join(
            c.source.replace("def test_case(", f"def test_{name}(")
            for name, c in self.cases.items()
        )


def budget(calls: int) -> str:
    """The marker the inner test carries: exactly the figures the server will send."""
    return f"@pytest.mark.perf_budget(tokens={calls * PER_CALL}, llm_calls={calls})"


AGENTS_SETUP = """
    from agents import Agent, Runner, set_default_openai_client
    from openai import AsyncOpenAI
    set_default_openai_client(AsyncOpenAI(api_key="sk-test"), use_for_tracing=False)
"""
# openai-agents exports its traces to api.openai.com with OPENAI_API_KEY; without the variable
# it skips the export (the client above carries the key).
AGENTS_ENV: dict[str, str | None] = {"OPENAI_API_KEY": None}

AGENTS_RESPONSES = Case(models=("gpt-agents",), calls=1, per_agent={"Planner": 1}, source=f"""
@pytest.mark.asyncio
{budget(1)}
async def test_case():
{AGENTS_SETUP}
    agent = Agent(name="Planner", instructions="Plan the trip.", model="gpt-agents")
    result = await Runner.run(agent, "Plan a trip to Rome.")
    assert result.final_output
""")
AGENTS_CHAT = Case(models=("gpt-agents-chat",), calls=1, per_agent={"Writer": 1}, source=f"""
@pytest.mark.asyncio
{budget(1)}
async def test_case():
{AGENTS_SETUP}
    from agents import OpenAIChatCompletionsModel
    model = OpenAIChatCompletionsModel(model="gpt-agents-chat", openai_client=AsyncOpenAI(
        api_key="sk-test"))
    agent = Agent(name="Writer", instructions="Write.", model=model)
    result = await Runner.run(agent, "Write a haiku.")
    assert result.final_output
""")
AGENTS_STREAMED = Case(
    models=("gpt-agents-stream",), calls=1, streamed=1, per_agent={"Streamer": 1}, source=f"""
@pytest.mark.asyncio
{budget(1)}
async def test_case():
{AGENTS_SETUP}
    agent = Agent(name="Streamer", instructions="Answer.", model="gpt-agents-stream")
    result = Runner.run_streamed(agent, "Tell me a story.")
    async for _event in result.stream_events():
        pass
    assert result.final_output
""")
LANGCHAIN_INVOKE = Case(models=("gpt-lc",), calls=1, source=f"""
{budget(1)}
def test_case():
    from langchain_openai import ChatOpenAI
    llm = ChatOpenAI(model="gpt-lc", api_key="sk-test", max_retries=0)
    assert llm.invoke("Say hello.").content
""")
LANGCHAIN_STREAM = Case(models=("gpt-lc-stream",), calls=1, streamed=1, source=f"""
{budget(1)}
def test_case():
    from langchain_openai import ChatOpenAI
    llm = ChatOpenAI(model="gpt-lc-stream", api_key="sk-test", max_retries=0,
                     stream_usage=True)
    assert "".join(chunk.content for chunk in llm.stream("Say hello."))
""")
LANGGRAPH = Case(models=("gpt-graph",), calls=2, per_agent={"planner": 1, "writer": 1}, source=f"""
{budget(2)}
def test_case():
    from typing import TypedDict
    from langchain_openai import ChatOpenAI
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        plan: str
        text: str

    llm = ChatOpenAI(model="gpt-graph", api_key="sk-test", max_retries=0)

    def planner(state: State) -> dict:
        return {{"plan": llm.invoke("Make a plan.").content}}

    def writer(state: State) -> dict:
        return {{"text": llm.invoke("Write from: " + state["plan"]).content}}

    graph = StateGraph(State)
    graph.add_node("planner", planner)
    graph.add_node("writer", writer)
    graph.add_edge(START, "planner")
    graph.add_edge("planner", "writer")
    graph.add_edge("writer", END)
    out = graph.compile().invoke({{"plan": "", "text": ""}})
    assert out["text"]
""")
LANGCHAIN_AGENT = Case(models=("gpt-lc-agent",), calls=1, per_agent={"researcher": 1}, source=f"""
{budget(1)}
def test_case():
    from langchain.agents import create_agent
    from langchain_openai import ChatOpenAI
    llm = ChatOpenAI(model="gpt-lc-agent", api_key="sk-test", max_retries=0)
    agent = create_agent(llm, tools=[], name="researcher")
    assert agent.invoke({{"messages": [("user", "Find it.")]}})["messages"][-1].content
""")
SDK_CALLS = Case(
    models=("gpt-sdk-chat", "gpt-sdk-responses", "gpt-sdk-stream", "gpt-sdk-async"),
    calls=4, streamed=1, source=f"""
@pytest.mark.asyncio
{budget(4)}
async def test_case():
    import openai
    client = openai.OpenAI(api_key="sk-test", max_retries=0)
    client.chat.completions.create(model="gpt-sdk-chat", messages=[{{"role": "user",
                                   "content": "Hi"}}])
    client.responses.create(model="gpt-sdk-responses", input="Hi")
    stream = client.chat.completions.create(
        model="gpt-sdk-stream", messages=[{{"role": "user", "content": "Hi"}}], stream=True,
        stream_options={{"include_usage": True}})
    for _ in stream:
        pass
    aclient = openai.AsyncOpenAI(api_key="sk-test", max_retries=0)
    await aclient.responses.create(model="gpt-sdk-async", input="Hi")
""")

SESSIONS: dict[str, Session] = {
    # the control: the plain SDK, imported inside the test as every case below does
    "openai_sdk": Session(needs=("openai",), cases={"sdk_calls": SDK_CALLS}),
    "openai_agents": Session(needs=("agents",), env=AGENTS_ENV, cases={
        "responses_model": AGENTS_RESPONSES,
        "chat_completions_model": AGENTS_CHAT,
        "run_streamed": AGENTS_STREAMED,
    }),
    "langchain": Session(needs=("langchain_openai", "langgraph", "langchain"), cases={
        "invoke": LANGCHAIN_INVOKE,
        "stream": LANGCHAIN_STREAM,
        "langgraph_two_nodes": LANGGRAPH,
        "create_agent_named": LANGCHAIN_AGENT,
    }),
    "litellm": Session(needs=("litellm",), cases={
        "completion": Case(models=("gpt-litellm",), calls=1, source=f"""
{budget(1)}
def test_case():
    import litellm
    reply = litellm.completion(
        model="openai/gpt-litellm", messages=[{{"role": "user", "content": "Hi"}}],
        api_base=os.environ["OPENAI_BASE_URL"], max_retries=0)
    assert reply.choices[0].message.content
"""),
        "acompletion": Case(models=("gpt-litellm-async",), calls=1, source=f"""
@pytest.mark.asyncio
{budget(1)}
async def test_case():
    import litellm
    reply = await litellm.acompletion(
        model="openai/gpt-litellm-async", messages=[{{"role": "user", "content": "Hi"}}],
        api_base=os.environ["OPENAI_BASE_URL"], max_retries=0)
    assert reply.choices[0].message.content
"""),
        "stream": Case(models=("gpt-litellm-stream",), calls=1, streamed=1, source=f"""
{budget(1)}
def test_case():
    import litellm
    stream = litellm.completion(
        model="openai/gpt-litellm-stream", messages=[{{"role": "user", "content": "Hi"}}],
        api_base=os.environ["OPENAI_BASE_URL"], max_retries=0, stream=True,
        stream_options={{"include_usage": True}})
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
"""),
    }),
    "pydantic_ai": Session(needs=("pydantic_ai",), cases={
        "openai_chat_string": Case(models=("gpt-pydantic",), calls=1, source=f"""
{budget(1)}
def test_case():
    from pydantic_ai import Agent
    agent = Agent("openai-chat:gpt-pydantic", instructions="Be brief.")
    assert agent.run_sync("Hello?").output
"""),
        "openai_string": Case(models=("gpt-pydantic-default",), calls=1, source=f"""
@pytest.mark.asyncio
{budget(1)}
async def test_case():
    from pydantic_ai import Agent
    agent = Agent("openai:gpt-pydantic-default", instructions="Be brief.")
    assert (await agent.run("Hello?")).output
"""),
    }),
    "praisonaiagents": Session(needs=("praisonaiagents",), cases={
        "agent_start": Case(models=("gpt-praison",), calls=1, source=f"""
{budget(1)}
def test_case():
    from praisonaiagents import Agent
    agent = Agent(name="Researcher", instructions="Research briefly.", llm="gpt-praison")
    assert agent.start("What is pytest?")
"""),
    }),
    "smolagents": Session(needs=("smolagents", "openai"), cases={
        "code_agent": Case(models=("gpt-smol",), calls=1, source=f"""
{budget(1)}
def test_case():
    from smolagents import CodeAgent, OpenAIServerModel
    model = OpenAIServerModel(model_id="gpt-smol", api_base=os.environ["OPENAI_BASE_URL"],
                              api_key="sk-test")
    agent = CodeAgent(tools=[], model=model, max_steps=2, verbosity_level=0)
    assert agent.run("Finish.") == "done"
"""),
    }),
}

INSTRUMENTED = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from {package} import OpenAIInstrumentor

trace.set_tracer_provider(TracerProvider())
OpenAIInstrumentor().instrument()
"""
for _name, _package in (
    ("openllmetry", "opentelemetry.instrumentation.openai"),
    ("openinference", "openinference.instrumentation.openai"),
):
    # an instrumentation set up in conftest.py, as users do; the frameworks start in the tests
    SESSIONS[_name] = Session(
        needs=("opentelemetry.sdk", _package, "agents", "langchain_openai"),
        conftest=INSTRUMENTED.format(package=_package), env=AGENTS_ENV, cases={
            "sdk_calls": SDK_CALLS,
            "openai_agents": AGENTS_RESPONSES,
            "langchain_stream": LANGCHAIN_STREAM,
        })


def observed(entry: dict[str, Any]) -> dict[str, Any]:
    llm = entry.get("llm") or {}
    tokens = entry.get("tokens") or {}
    return {
        "calls": llm.get("calls"), "prompt": tokens.get("prompt"),
        "completion": tokens.get("completion"), "total": tokens.get("total"),
        "unknown_calls": tokens.get("unknown_calls"),
        "streamed_calls": llm.get("streamed_calls"),
        "uncaptured_calls": llm.get("uncaptured_calls", 0),
        "per_model": {m: c["calls"] for m, c in llm.get("per_model", {}).items()},
        "per_agent": {a: c["calls"] for a, c in llm.get("per_agent", {}).items()},
        "outcome": entry["outcome"],
    }


def expected(case: Case, server: CountingServer) -> dict[str, Any]:
    sent = [server.tally(m) for m in case.models]
    total = {k: sum(getattr(t, k) for t in sent) for k in (
        "calls", "prompt", "completion", "total", "unknown_calls", "streamed_calls")}
    # the case did what it says it does
    assert (total["calls"], total["streamed_calls"]) == (case.calls, case.streamed), server.sent
    return {
        **total, "uncaptured_calls": 0,
        "per_model": {m: t.calls for m, t in zip(case.models, sent, strict=True) if t.calls},
        "per_agent": case.per_agent,
        "outcome": "passed",
    }


@pytest.mark.parametrize("name", sorted(SESSIONS))
def test_framework_calls_are_counted_exactly(name: str, run_session: Any) -> None:
    session = SESSIONS[name]
    run = run_session(session.source(), session.needs, env=session.env,
                      conftest=session.conftest)
    out = str(run.result.stdout)
    assert run.server.unexpected == [], run.server.unexpected
    assert run.fence.attempts == [], f"tried to leave the machine: {run.fence.attempts}\n{out}"
    assert sum(c.calls for c in session.cases.values()) == len(run.server.sent), run.server.sent
    wrong = {}
    for case_name, case in session.cases.items():
        entry = run.entries.get(f"test_{case_name}")
        assert entry is not None, f"test_{case_name} is not in the report\n{out}"
        want, got = expected(case, run.server), observed(entry)
        if got != want:
            wrong[case_name] = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert not wrong, f"(reported, sent) per case: {wrong}\n{out}"
