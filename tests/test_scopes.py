"""Scoped budgets (``perf_budget(scopes=...)``) and unbudgeted agents (``budgeted=False``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _support import by_id, read_report
from llm_server import LLMServer

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def server() -> Iterator[LLMServer]:
    srv = LLMServer().start()
    yield srv
    srv.stop()


TWO_AGENTS = """
import openai, pytest
from pytest_agentperf.llm import agent_scope

def client():
    return openai.OpenAI(base_url="{url}/v1", api_key="test", max_retries=0)

def ask(c, delay_ms=0):
    c.chat.completions.create(model="gpt-test", messages=[{{"role": "user", "content": "a b"}}],
                              extra_headers={{"x-delay-ms": str(delay_ms)}})

@pytest.mark.perf_budget(scopes={{
    "agent:planner": {{"p95": 30.0, "llm_calls": 5}},
    "agent:research*": {{"p95": 0.05, "llm_calls": 2}},
}})
def test_two_agents():
    c = client()
    with agent_scope("planner"):
        ask(c)
    with agent_scope("researcher"):
        for _ in range(3):
            ask(c, delay_ms=120)

@pytest.mark.perf_budget(scopes={{"agent:planner": {{"llm_calls": 5, "tokens": 1000}},
                                  "model:gpt-*": {{"llm_calls": 1}}}})
def test_within_budget_and_model_scope():
    c = client()
    with agent_scope("planner"):
        ask(c)
"""


def test_two_agents_fail_naming_only_the_agent_that_broke_its_budget(
    pt: pytest.Pytester, server: LLMServer
) -> None:
    pt.makepyfile(TWO_AGENTS.format(url=server.base_url))
    result = pt.runpytest_subprocess("--perf-report=r.json", "--junitxml=j.xml",
                                     "--perf-html=r.html", "--perf-markdown=s.md")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "perf budget exceeded: agent:research[*] p95 * > 50 ms (n=3); "
        "agent:research[*] llm_calls 3 calls > 2 calls",
        "*::test_two_agents *over budget: agent:research[*] p95, agent:research[*] llm_calls",
    ])
    assert "agent:planner p95" not in result.stdout.str()
    tests = by_id(read_report(pt.path / "r.json"))
    entry = tests["test_two_agents"]
    research = entry["scopes"]["agent:research*"]
    assert research["matched"] == ["researcher"]
    assert research["measured"]["llm_calls"] == 3
    assert research["measured"]["p95"] >= 0.12  # the server waited 120 ms each time
    assert research["count"] == 3
    assert research["violations"] == ["p95", "llm_calls"]
    planner = entry["scopes"]["agent:planner"]
    assert planner["violations"] == [] and planner["measured"]["llm_calls"] == 1
    assert [(v["scope"], v["metric"]) for v in entry["violations"]] == [
        ("agent:research*", "p95"), ("agent:research*", "llm_calls")]
    assert tests["test_within_budget_and_model_scope"]["outcome"] == "passed"
    model = tests["test_within_budget_and_model_scope"]["scopes"]["model:gpt-*"]
    assert model["matched"] == ["gpt-test"] and model["measured"]["llm_calls"] == 1
    junit = (pt.path / "j.xml").read_text()
    assert "agent:research* llm_calls 3 calls &gt; 2 calls" in junit
    markdown = (pt.path / "s.md").read_text()
    assert "| agent:research\\* llm\\_calls | 3 calls | 2 calls | - |" in markdown
    page = (pt.path / "r.html").read_text()
    assert "<h4>Scoped budgets</h4>" in page
    assert ("<td>agent:research*</td><td>researcher</td><td>llm_calls</td><td>≤ 2</td>"
            "<td>3</td><td><b class=\"bad\">over</b></td>") in page
    assert "<li><b>agent:research* p95</b>" in page


TOOLS = """
import pytest

def clock_of(durations_ms):
    ticks = iter(durations_ms)
    now = [0]
    def clock():
        now[0] += next(ticks) * 1_000_000
        return now[0]
    return clock

@pytest.mark.perf_budget(scopes={"tool:search*": {"calls": 5, "p95": 0.5},
                                 "tool:writer:*": {"max": 0.1}})
def test_tools(profiler):
    # enter/exit pairs: each operation lasts the second figure of its pair
    profiler.clock = clock_of([0, 10, 0, 20, 0, 900, 0, 30] + [0, 5] * 4)
    for _ in range(4):
        with profiler.profile_operation("researcher", "search_web"):
            pass
    for _ in range(4):
        with profiler.profile_operation("writer", "draft"):
            pass
"""


def test_tool_scopes_judge_profiler_operations(pt: pytest.Pytester) -> None:
    pt.makepyfile(TOOLS)
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["perf budget exceeded: tool:search[*] p95 * > 500 ms (n=4)"])
    entry = by_id(read_report(pt.path / "r.json"))["test_tools"]
    search = entry["scopes"]["tool:search*"]
    assert search["matched"] == ["researcher:search_web"]
    assert search["measured"]["calls"] == 4
    assert search["measured"]["p95"] == pytest.approx(0.7695)  # type 7 over 10, 20, 900, 30 ms
    assert entry["scopes"]["tool:writer:*"]["measured"]["max"] == pytest.approx(0.005)


UNMATCHED = """
import pytest

@pytest.mark.perf_budget(scopes={"agent:planer": {"llm_calls": 5},
                                 "tool:serch": {"calls": 3}})
def test_typo(profiler):
    with profiler.profile_operation("researcher", "search"):
        pass
"""


def test_a_scope_that_matches_nothing_is_unverifiable(pt: pytest.Pytester) -> None:
    pt.makepyfile(UNMATCHED)
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*agent:planer llm_calls unknown > 5 calls [[]unverifiable: agent:planer matched no "
        "agent: no LLM call was attributed to an agent*; "
        "tool:serch calls unknown > 3 calls [[]unverifiable: tool:serch matched no profiler "
        "operation (seen: researcher:search)]*",
    ])
    read_report(pt.path / "r.json")


@pytest.mark.parametrize(("scopes", "message"), [
    ('{"agnt:planner": {"p95": 1}}',
     "*invalid @pytest.mark.perf_budget: scope 'agnt:planner': unknown kind 'agnt'*"
     "agent, tool, model*"),
    ('{"planner": {"p95": 1}}', "*scope 'planner': unknown kind 'planner'*"),
    ('{"agent:": {"p95": 1}}', "*scope 'agent:' has no name pattern*"),
    ('{"agent:planner": {"p59": 1}}',
     "*scope 'agent:planner': unknown key 'p59' for agent scopes*Valid keys: p50*cost_usd*"),
    ('{"tool:search*": {"llm_calls": 5}}',
     "*scope 'tool:search*': unknown key 'llm_calls' for tool scopes (a tool's runs are "
     "counted by 'calls')*"),
    ('{"agent:planner": {"p95": "fast"}}',
     "*scope 'agent:planner': p95='fast' is not a number*"),
    ('{"model:gpt*": {"cost_usd": -1}}', "*scope 'model:gpt*': cost_usd=-1 must be a number > 0*"),
    ('{"agent:planner": {}}', "*scope 'agent:planner': {} must be a non-empty dict of limits*"),
    ('["agent:planner"]', "*scopes=[[]'agent:planner'] must be a dict of 'KIND:PATTERN'*"),
])
def test_a_bad_scope_errors_that_test(pt: pytest.Pytester, scopes: str, message: str) -> None:
    pt.makepyfile(
        f"""
        import pytest

        @pytest.mark.perf_budget(scopes={scopes})
        def test_bad():
            pass

        def test_other():
            pass
        """
    )
    result = pt.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([message])


def test_markers_help_lists_the_scope_kinds(pt: pytest.Pytester) -> None:
    result = pt.runpytest("--markers")
    result.stdout.fnmatch_lines([
        "*perf_budget(**limits, scopes=None): *scopes={'KIND:PATTERN': {key: limit}} with "
        "fnmatch patterns, kinds and keys agent:PATTERN (p50, *"
        "llm_calls, tokens, cost_usd); tool:PATTERN (*calls, tokens); model:PATTERN*",
    ])


JUDGE = """
import openai, pytest
from pytest_agentperf.llm import agent_scope

def ask(c, text="a b"):
    c.chat.completions.create(model="gpt-test", messages=[{{"role": "user", "content": text}}])

@pytest.mark.perf_budget(llm_calls=1, tokens=7, scopes={{"agent:judge": {{"llm_calls": 2}}}})
def test_judge_is_not_the_system():
    c = openai.OpenAI(base_url="{url}/v1", api_key="test", max_retries=0)
    with agent_scope("worker"):
        ask(c, "one two three")
    with agent_scope("judge", budgeted=False):
        ask(c, "is this right")
        with agent_scope("helper"):  # nested in the judge: still unbudgeted
            ask(c)
"""


def test_an_unbudgeted_judge_is_reported_apart(pt: pytest.Pytester, server: LLMServer) -> None:
    pt.makeini(
        """
        [pytest]
        perf_llm_prices =
            gpt-test 1000 2000
        """
    )
    pt.makepyfile(JUDGE.format(url=server.base_url))
    result = pt.runpytest_subprocess("--perf-report=r.json")
    result.assert_outcomes(passed=1)
    entry = by_id(read_report(pt.path / "r.json"))["test_judge_is_not_the_system"]
    assert entry["llm"]["calls"] == 1
    assert entry["tokens"]["total"] == 7  # 3 prompt words + 4 reply words
    assert entry["latency"]["count"] == 1
    assert entry["operations"]["llm:gpt-test"]["count"] == 1
    assert entry["llm"]["cost"]["usd"] == pytest.approx((3 * 1000 + 4 * 2000) / 1e6)
    apart = entry["llm"]["unbudgeted"]
    assert apart["calls"] == 2
    assert apart["tokens"]["total"] == (3 + 4) + (2 + 4)
    assert sorted(apart["per_agent"]) == ["helper", "judge"]
    assert apart["latency"]["count"] == 2
    assert apart["cost"]["usd"] == pytest.approx((5 * 1000 + 8 * 2000) / 1e6)
    assert entry["scopes"]["agent:judge"]["measured"]["llm_calls"] == 1
