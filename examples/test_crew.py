"""Example suite: performance budgets on an agent crew.

Run it with a report:  pytest examples --perf-report=perf-report.json
Then tighten a budget (say p95=0.0001) and watch the test fail with the
measured value, the limit and the sample count.
"""

from __future__ import annotations

import asyncio

import pytest

from agents import Crew, FakeLLM


@pytest.fixture
def crew() -> Crew:
    return Crew(FakeLLM(latency=0.002))


@pytest.mark.asyncio
@pytest.mark.perf_budget(p95=0.5, tokens=2000, tokens_per_request=200)
async def test_crew_answers_within_budget(crew, profiler):
    """Every LLM step is profiled: its duration is a latency sample, its usage counts."""
    with profiler.profile_operation("planner", "plan") as m:
        plan = await crew.planner.run("plan a trip to Lisbon")
        m.record_tokens(prompt=plan.prompt_tokens, completion=plan.completion_tokens)

    async def research(agent, topic):
        with profiler.profile_operation(agent.name.split("-")[0], "research") as m:
            result = await agent.run(topic)
            m.record_tokens(prompt=result.prompt_tokens, completion=result.completion_tokens)
        return result

    notes = await asyncio.gather(
        *(research(a, f"topic {i}") for i, a in enumerate(crew.researchers))
    )
    with profiler.profile_operation("writer", "write") as m:
        draft = await crew.writer.run(" ".join(n.text for n in notes))
        m.record_tokens(prompt=draft.prompt_tokens, completion=draft.completion_tokens)
    assert draft.text.startswith("answer-")


@pytest.mark.perf_budget(memory_mb=100)
def test_context_window_memory_stays_bounded():
    """The peak memory the call adds is measured, including freed transients."""
    history = [f"message {i} " * 20 for i in range(20_000)]
    window = history[-50:]
    del history
    assert len(window) == 50


@pytest.mark.perf_budget(p99=0.05, max=0.5)
@pytest.mark.parametrize("question", ["weather", "news", "stocks"])
def test_router_latency(profiler, question):
    """Many small operations: percentiles are computed over all of them."""
    routes = {"weather": "tools", "news": "search", "stocks": "finance"}
    for _ in range(10):
        with profiler.profile_operation("router", "route"):
            route = routes[question]
    assert route


def test_tool_lookups_one_by_one(profiler):
    """The N+1 pattern: twenty lookups of the same tool in a tight loop.

    The plugin reports it as an `n_plus_one` finding (a warning) under the
    summary; `perf_budget(n_plus_one=0)` would make it fail.  Batch the lookups.
    """
    llm = FakeLLM(latency=0.0)
    for city in [f"city-{i}" for i in range(20)]:
        with profiler.profile_operation("geo", "lookup"):
            asyncio.run(llm.complete(city))


def test_profile_stats_name_the_slow_step(profiler):
    """The guide's 'Profile Before Optimizing' workflow."""
    llm = FakeLLM(latency=0.01)
    for _ in range(3):
        with profiler.profile_operation("agent", "inference"):
            asyncio.run(llm.complete("hello"))
    bottlenecks = profiler.identify_bottlenecks(threshold_seconds=0.005)
    assert bottlenecks[0]["operation"] == "agent:inference"
    assert "Executions: 3" in profiler.get_profile_stats("agent", "inference")


def test_cached_tool_calls(agent_cache):
    """A repeated tool call is answered from the cache; the report gets a `cache` section."""
    llm = FakeLLM(latency=0.01)

    @agent_cache.cached()
    def geocode(city: str) -> str:
        return asyncio.run(llm.complete(f"where is {city}")).text

    first = [geocode(city) for city in ("Lisbon", "Porto", "Lisbon", "Lisbon")]
    assert first[0] == first[2] == first[3]
    assert agent_cache.get_cache_stats()["hit_rate"] == 0.5


@pytest.mark.asyncio
@pytest.mark.perf_budget(p95=0.25, error_rate=0.0, throughput=20)
async def test_planner_under_open_load(load_tester, crew):
    """An open load model: 50 requests/s for one second, latency from each intended start."""

    async def plan(user_id, request_id):
        await crew.planner.run(f"request {user_id}")

    result = await load_tester.run_rate_test(plan, rate=50, duration=1.0)
    assert result["failed_requests"] == 0
