"""The framework adapters that name agents: installed only when their framework is imported."""

from __future__ import annotations

import pytest

from pytest_agentperf.llm.langchain_names import agent_of


def test_adapters_wait_for_their_framework(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import sys

        def test_nothing_imported():
            loaded = [m for m in ("agents", "langchain_core",
                                  "pytest_agentperf.llm.openai_agents_names",
                                  "pytest_agentperf.llm.langchain_names") if m in sys.modules]
            assert loaded == []
        """
    )
    pt.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_an_unrelated_agents_package_is_left_alone(pt: pytest.Pytester) -> None:
    # a project's own package called "agents" is not openai-agents
    pt.mkpydir("agents")
    pt.makepyfile(
        """
        def test_import():
            import agents
            assert not hasattr(agents, "add_trace_processor")
        """
    )
    pt.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("metadata", "agent"),
    [
        ({"lc_agent_name": "researcher", "langgraph_node": "model"}, "researcher"),
        ({"langgraph_node": "planner"}, "planner"),
        ({"langgraph_node": ""}, None),
        ({}, None),
        (None, None),
    ],
)
def test_langchain_agent_name_from_run_metadata(metadata: object, agent: str | None) -> None:
    assert agent_of(metadata) == agent
