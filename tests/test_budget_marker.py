"""The perf_budget marker: enforcement, messages, scoping, defaults, bad input."""

from __future__ import annotations

import pytest

from _support import by_id, read_report


def test_broken_latency_budget_fails_with_measured_limit_and_count(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import time, pytest

        @pytest.mark.perf_budget(p95=0.02)
        def test_slow(perf_record):
            for i in range(10):  # fed, not slept: the verdict is logic, not timing
                perf_record.add_latency(0.001 if i < 8 else 0.06)

        @pytest.mark.perf_budget(p95=5.0)
        def test_fast(profiler):
            with profiler.profile_operation("agent", "llm"):
                pass
        """
    )
    result = pt.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([r".*perf budget exceeded: p95 \d+(\.\d+)? ms > 20 ms \(n=10\)"])


def test_every_broken_limit_is_listed(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import time, pytest

        @pytest.mark.perf_budget(max=0.001, mean=0.001, tokens=10)
        def test_many(profiler):
            with profiler.profile_operation("a", "b") as m:
                time.sleep(0.02)
                m.tokens_used = 50
        """
    )
    result = pt.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*perf budget exceeded: mean * > 1 ms (n=1); "
                                 "max * > 1 ms (n=1); tokens 50 tokens > 10 tokens*"])


def test_transient_80mib_allocation_is_caught(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(memory_mb=50)
        def test_spike():
            block = b"x" * (80 * 1024 * 1024)
            del block

        @pytest.mark.perf_budget(memory_mb=50)
        def test_small():
            block = b"x" * (1024 * 1024)
            del block
        """
    )
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*memory_mb * MiB > 50 MiB*"])
    tests = by_id(read_report(pt.path / "r.json"))
    assert tests["test_spike"]["memory"]["peak_mb"] >= 75
    assert tests["test_small"]["memory"]["peak_mb"] < 50


def test_closest_marker_wins_per_key(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import pytest
        pytestmark = pytest.mark.perf_budget(p95=1.0, tokens=100)

        @pytest.mark.perf_budget(p99=2.0)
        class TestScoped:
            @pytest.mark.perf_budget(p95=0.5)
            def test_it(self):
                pass

        def test_module_level():
            pass
        """
    )
    pt.runpytest("--perf-report=r.json").assert_outcomes(passed=2)
    tests = by_id(read_report(pt.path / "r.json"))
    assert tests["test_it"]["budget"] == {"p95": 0.5, "p99": 2.0, "tokens": 100}
    assert tests["test_module_level"]["budget"] == {"p95": 1.0, "tokens": 100}


def test_ini_defaults_apply_to_measured_tests_and_marker_overrides(pt: pytest.Pytester) -> None:
    pt.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        perf_budget = api_response_time_p95=1.0 memory_mb=50 tokens_per_request=1000
        """
    )
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(memory_mb=10)
        def test_marked():
            pass

        def test_fixture_only(profiler):
            pass

        def test_unmeasured():
            pass
        """
    )
    pt.runpytest("--perf-report=r.json").assert_outcomes(passed=3)
    tests = by_id(read_report(pt.path / "r.json"))
    assert set(tests) == {"test_marked", "test_fixture_only"}
    assert tests["test_marked"]["budget"] == {
        "memory_mb": 10.0, "p95": 1.0, "tokens_per_request": 1000.0}
    assert tests["test_fixture_only"]["budget"] == {
        "p95": 1.0, "memory_mb": 50.0, "tokens_per_request": 1000.0}


def test_bad_ini_budget_is_a_usage_error(pt: pytest.Pytester) -> None:
    pt.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        perf_budget = p95=fast
        """
    )
    pt.makepyfile("def test_x(): pass")
    result = pt.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*perf_budget ini option*p95='fast' is not a number*"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("p59=1.0", "unknown budget key 'p59' (value 1.0). Valid keys: p50, p90, p95*"),
        ('p95="fast"', "p95='fast' is not a number*"),
        ("p95=-1", "p95=-1 must be a number > 0 (s)"),
        ("memory_mb=0", "memory_mb=0 must be a number > 0 (MiB)"),
        ("tokens=True", "tokens=True is not a number*"),
        ("0.5", "positional arguments (0.5,) are not accepted*Valid keys: p50*"),
        ('p95=float("nan")', "p95=nan must be a finite number"),
    ],
)
def test_bad_marker_input_errors_that_test_only(
    pt: pytest.Pytester, args: str, expected: str
) -> None:
    pt.makepyfile(
        f"""
        import pytest

        @pytest.mark.perf_budget({args})
        def test_bad():
            pass

        def test_good():
            pass
        """
    )
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([f"*invalid @pytest.mark.perf_budget: {expected}"])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    assert by_id(read_report(pt.path / "r.json"))["test_bad"]["outcome"] == "error"


def test_strict_markers_accepts_perf_budget(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(p95=1)
        def test_x():
            pass
        """
    )
    pt.runpytest("--strict-markers").assert_outcomes(passed=1)
    result = pt.runpytest("--markers")
    result.stdout.fnmatch_lines(
        ["@pytest.mark.perf_budget(**limits, scopes=None)*Keys: p50 (max s)*"])


def test_budget_on_failing_and_xfail_tests_does_not_change_their_outcome(
    pt: pytest.Pytester,
) -> None:
    pt.makepyfile(
        """
        import time, pytest

        @pytest.mark.perf_budget(max=0.001)
        def test_fails_anyway():
            time.sleep(0.01)
            assert False

        @pytest.mark.xfail(reason="known")
        @pytest.mark.perf_budget(max=0.001)
        def test_xfail():
            time.sleep(0.01)
            assert False

        @pytest.mark.skip(reason="later")
        @pytest.mark.perf_budget(max=0.001)
        def test_skipped():
            pass
        """
    )
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(failed=1, xfailed=1, skipped=1)
    tests = by_id(read_report(pt.path / "r.json"))
    assert tests["test_fails_anyway"]["outcome"] == "failed"
    assert tests["test_fails_anyway"]["violations"][0]["metric"] == "max"
    assert tests["test_xfail"]["outcome"] == "xfailed"
    assert tests["test_skipped"]["outcome"] == "skipped"


def test_unmeasured_tests_are_silent_and_plugin_can_be_disabled(pt: pytest.Pytester) -> None:
    pt.makepyfile("def test_plain(): pass")
    result = pt.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*agentperf: *")
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(max=0.000001)
        def test_x():
            sum(range(100000))
        """
    )
    pt.runpytest("-p", "no:agentperf", "-W", "ignore::pytest.PytestUnknownMarkWarning"
                 ).assert_outcomes(passed=1)
    pt.runpytest().assert_outcomes(failed=1)


def test_async_test_is_measured_over_its_whole_call(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import asyncio, pytest

        @pytest.mark.asyncio
        @pytest.mark.perf_budget(p95=10)
        async def test_async():
            await asyncio.sleep(0.05)
        """
    )
    pt.runpytest("--perf-report=r.json").assert_outcomes(passed=1)
    entry = by_id(read_report(pt.path / "r.json"))["test_async"]
    assert entry["latency"]["count"] == 1
    assert entry["latency"]["source"] == "call"
    assert 0.05 <= entry["latency"]["p95"] < 5


@pytest.mark.parametrize(("limits", "expected"), [
    ("p95=10**400", "p95=1000*(401 digits) is too large to be a limit"),
    ("tokens=float('nan')", "tokens=nan must be a finite number"),
])
def test_unrepresentable_budget_values_are_usage_errors(
    pt: pytest.Pytester, limits: str, expected: str
) -> None:
    pt.makepyfile(f"""
import pytest
@pytest.mark.perf_budget({limits})
def test_x():
    pass
""")
    result = pt.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*invalid @pytest.mark.perf_budget: {expected}*"])


def test_small_budgets_print_with_significant_digits(pt: pytest.Pytester) -> None:
    pt.makepyfile("""
import pytest
@pytest.mark.perf_budget(p95=0.0004, memory_mb=0.0001)
def test_x(perf_record):
    perf_record.add_latency(0.00045)
    perf_record.add_latency(0.00047)
""")
    result = pt.runpytest("--perf-memory=tracemalloc")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*p95 4?? µs > 400 µs (n=2)*"])


@pytest.mark.parametrize(("call", "expected"), [
    ("perf_record.add_latency(float('nan'))",
     "perf_record.add_latency(seconds=nan): seconds must be a finite number of seconds >= 0"),
    ("perf_record.add_latency(float('inf'))", "perf_record.add_latency(seconds=inf)*"),
    ("perf_record.add_tokens(float('nan'))",
     "perf_record.add_tokens(total=nan): total must be a finite number of tokens >= 0"),
    ("perf_record.add_tokens(prompt=float('nan'))", "perf_record.add_tokens(prompt=nan)*"),
])
def test_non_finite_figures_are_refused_where_they_enter(
    pt: pytest.Pytester, call: str, expected: str
) -> None:
    pt.makepyfile(f"""
import pytest
@pytest.mark.perf_budget(p95=1.0, tokens=100)
def test_x(perf_record):
    {call}
""")
    result = pt.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*ValueError: {expected}*"])


def test_non_finite_profiler_tokens_are_refused(pt: pytest.Pytester) -> None:
    pt.makepyfile("""
import pytest
@pytest.mark.perf_budget(tokens=100)
def test_x(profiler):
    with profiler.profile_operation("agent", "llm") as m:
        m.tokens_used = float("nan")
""")
    result = pt.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ValueError: profile_operation('agent', 'llm'): "
                                 "tokens_used=nan must be a finite number of tokens >= 0*"])


def test_a_non_finite_figure_in_a_section_is_unverifiable(pt: pytest.Pytester) -> None:
    """Whatever wrote it, a NaN figure never passes a budget."""
    pt.makepyfile("""
import pytest
@pytest.mark.perf_budget(throughput=1, error_rate=0.5)
def test_x(perf_record):
    perf_record.sections["load"] = {"throughput_rps": float("nan"), "error_rate": None,
                                    "total_requests": 3}
""")
    result = pt.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*error_rate unknown > 0.5 (n=3) [[]unverifiable: load/error_rate missing*; "
        "throughput unknown < 1 req/s (n=3) [[]unverifiable: load/throughput_rps is nan, "
        "not a finite number]*",
    ])


def test_ini_default_limits_skip_tests_without_that_figure(pt: pytest.Pytester) -> None:
    """An ini default (meant for every test) does not fail tests that have no such figure;
    the same key on a marker is unverifiable there."""
    pt.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n"
               "perf_budget = error_rate=0.1 p95=10\n")
    pt.makepyfile("""
import pytest

def test_plain(perf_record):
    pass

@pytest.mark.perf_budget(error_rate=0.1)
def test_marked(perf_record):
    pass
""")
    result = pt.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*error_rate unknown > 0.1*unverifiable: load/error_rate missing*"])
