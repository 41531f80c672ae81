"""--perf-disable, --perf-skip, --perf-only and the hard off switch -p no:agentperf."""

from __future__ import annotations

import pytest

SUITE = """
import pytest

@pytest.mark.perf_budget(p95=0.001)
def test_over_budget(perf_record, profiler):
    perf_record.add_latency(5.0)
    with profiler.profile_operation("agent", "step") as m:
        m.tokens_used = 3
    assert "Executions: 1" in profiler.get_profile_stats("agent", "step")

def test_plain(agent_cache):
    assert agent_cache.get_cache_stats()["total_hits"] == 0

class TestGroup:
    pytestmark = pytest.mark.perf_budget(tokens=10)

    def test_in_class(self):
        pass
"""


@pytest.fixture
def suite(pt: pytest.Pytester) -> pytest.Pytester:
    pt.makeini("[pytest]\naddopts = --strict-markers\nasyncio_default_fixture_loop_scope = "
               "function\nfilterwarnings =\n    error\n")
    pt.makepyfile(SUITE)
    return pt


def test_enabled_the_budget_fails(suite: pytest.Pytester) -> None:
    suite.runpytest("--perf-report=r.json").assert_outcomes(passed=2, failed=1)
    assert (suite.path / "r.json").is_file()


def test_disable_measures_enforces_and_writes_nothing(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--perf-disable", "--perf-report=r.json", "--perf-compare=nope.json",
                             "--perf-html=h.html")
    result.assert_outcomes(passed=3)  # fixtures work, the over-budget test passes
    assert not (suite.path / "r.json").exists()
    assert not (suite.path / "h.html").exists()
    result.stdout.no_fnmatch_line("*agentperf:*")
    result.stdout.no_fnmatch_line("*perf report*")


def test_disable_keeps_async_fixtures(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_async="""
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.perf_budget(p95=0.001)
        async def test_batch(batch_processor):
            assert await batch_processor.process(1, lambda xs: [x + 1 for x in xs]) == 2
    """)
    suite.runpytest("--perf-disable", "test_async.py").assert_outcomes(passed=1)


def test_skip_skips_budgeted_tests(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--perf-skip", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*perf_budget test skipped by --perf-skip*"])


def test_only_runs_budgeted_tests(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--perf-only", "-v")
    result.assert_outcomes(passed=1, failed=1, deselected=1)
    result.stdout.fnmatch_lines(["*test_in_class PASSED*"])
    result.stdout.no_fnmatch_line("*test_plain*")


def test_skip_and_only_exclude_each_other(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--perf-skip", "--perf-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--perf-skip and --perf-only exclude each other*"])


def test_hard_off_switch_and_its_strict_markers_caveat(suite: pytest.Pytester) -> None:
    """-p no:agentperf unregisters the markers: a --strict-markers suite stops collecting.

    This is the documented caveat; --perf-disable is the switch for such suites.
    """
    # a subprocess: in-process runs share pytest's cache of registered marker names
    result = suite.runpytest_subprocess("-p", "no:agentperf")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*'perf_budget' not found in `markers` configuration option*"])
