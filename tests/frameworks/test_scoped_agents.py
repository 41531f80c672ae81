"""Scoped budgets on a real framework: openai-agents, two agents and a handoff."""

from __future__ import annotations

from typing import Any

from test_matrix import AGENTS_ENV, AGENTS_SETUP, PER_CALL, fence, llm_server, run_session

__all__ = ["fence", "llm_server", "run_session"]  # the fixtures this module uses

HANDOFF = f"""
import pytest

@pytest.mark.asyncio
@pytest.mark.perf_budget(scopes={{
    "agent:Planner": {{"llm_calls": 1, "tokens": {PER_CALL}}},
    "agent:Research*": {{"llm_calls": 1, "tokens": {PER_CALL - 1}}},
}})
async def test_handoff():
{AGENTS_SETUP}
    researcher = Agent(name="Researcher", instructions="Find facts.", model="gpt-agents")
    planner = Agent(name="Planner", instructions="Plan, then hand off.", model="gpt-agents",
                    handoffs=[researcher])
    result = await Runner.run(planner, "Plan a trip to Rome.")
    assert result.last_agent.name == "Researcher"
"""


def test_a_handoff_fails_only_the_agent_over_its_budget(run_session: Any) -> None:
    run = run_session(HANDOFF, ("agents",), env=AGENTS_ENV)
    out = str(run.result.stdout)
    assert run.fence.attempts == [], out
    assert len(run.server.sent) == 2, out  # the planner's handoff, the researcher's answer
    run.result.assert_outcomes(failed=1)
    run.result.stdout.fnmatch_lines([
        f"perf budget exceeded: agent:Research[*] tokens {PER_CALL} tokens > "
        f"{PER_CALL - 1} tokens",
    ])
    assert "agent:Planner" not in out.replace("agent:Planner': {", "")
    entry = run.entries["test_handoff"]
    assert entry["llm"]["per_agent"]["Planner"]["calls"] == 1
    assert entry["scopes"]["agent:Research*"]["matched"] == ["Researcher"]
    assert entry["scopes"]["agent:Planner"]["violations"] == []
    assert [v["scope"] for v in entry["violations"]] == ["agent:Research*"]
