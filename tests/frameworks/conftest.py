"""Fixtures of the framework matrix: a counting loopback LLM server, a network fence, and a
runner that executes one inner test in a fresh interpreter against them.

Each case is a one-test pytest session in a new process (``runpytest_subprocess``), so the
framework and the ``openai`` SDK are imported for the first time *inside the test body*, as
in a user's suite that imports lazily.  The inner test holds only framework code and a
``perf_budget`` marker; the outer test compares the plugin's report with what the server
sent.  The frameworks' telemetry is switched off by their own environment switches, and
every other request to the outside goes through :class:`~counting_server.Fence` (a loopback
blackhole proxy) and fails the case.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from counting_server import CountingServer, Fence

from _support import by_id, read_report

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
            "-rA", timeout=120,
        )
        report = pytester.path / "r.json"
        assert report.exists(), f"no report:\n{result.stdout}\n{result.stderr}"
        return SessionRun(result, by_id(read_report(report)), llm_server, fence)

    return run
