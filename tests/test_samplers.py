"""Samples from pytest-benchmark and hypothesis; pytest-rerunfailures' attempts."""

from __future__ import annotations

import pytest

from _support import by_id, read_report


def need(module: str) -> None:
    """Skip without ``module`` on a dev machine; under CI (``CI=true``) fail instead."""
    import importlib.util
    import os

    if importlib.util.find_spec(module) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is not installed (pip install -e '.[dev]')")
        pytest.skip(f"{module} is not installed")


def test_benchmark_budget_judges_the_rounds_not_the_calibrated_call(
    pt: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    need("pytest_benchmark")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # else the benchmark disables itself
    pt.makepyfile(test_a="""
import pytest

def one_microsecond():
    return sum(range(20))

@pytest.mark.perf_budget(p95=0.2)
def test_fast(benchmark):
    benchmark(one_microsecond)

@pytest.mark.perf_budget(p95=100)
def test_pedantic(benchmark):
    benchmark.pedantic(one_microsecond, rounds=7, iterations=3)
""")
    # a calibration loop that alone lasts longer than the 0.2 s budget
    result = pt.runpytest("--perf-report=r.json", "--benchmark-min-time=0.3",
                          "--benchmark-max-time=0.5", "--benchmark-min-rounds=2")
    result.assert_outcomes(passed=2)
    tests = by_id(read_report(pt.path / "r.json"))
    fast = tests["test_fast"]
    assert fast["duration_s"] > 0.2  # the whole call was longer than the budget
    assert fast["latency"]["source"] == "benchmark"
    assert fast["latency"]["count"] == fast["benchmark"]["rounds"] >= 2
    assert fast["latency"]["p95"] < 0.2
    pedantic = tests["test_pedantic"]
    assert pedantic["latency"]["count"] == 7
    assert pedantic["benchmark"] == {"rounds": 7, "iterations": 3}


def test_disabled_benchmark_falls_back_to_the_call(pt: pytest.Pytester) -> None:
    need("pytest_benchmark")
    pt.makepyfile(test_a="""
import pytest

@pytest.mark.perf_budget(p95=100)
def test_fast(benchmark):
    benchmark(lambda: None)
""")
    pt.runpytest("--perf-report=r.json", "--benchmark-disable").assert_outcomes(passed=1)
    entry = by_id(read_report(pt.path / "r.json"))["test_fast"]
    assert entry["latency"]["source"] == "call" and entry["latency"]["count"] == 1
    assert "whole call" in entry["benchmark"]["note"]


def test_each_hypothesis_example_is_a_sample(pt: pytest.Pytester) -> None:
    need("hypothesis")
    pt.makepyfile(test_a="""
import pytest
from hypothesis import given, settings, strategies as st

@pytest.mark.perf_budget(p95=10)
@settings(max_examples=25, database=None, derandomize=True)
@given(st.integers(min_value=0, max_value=10**9))
def test_examples(x):
    assert x >= 0
""")
    pt.runpytest("--perf-report=r.json").assert_outcomes(passed=1)
    entry = by_id(read_report(pt.path / "r.json"))["test_examples"]
    assert entry["hypothesis"]["sample"] == "each example"
    assert entry["latency"]["source"] == "hypothesis"
    assert entry["latency"]["count"] == entry["hypothesis"]["examples"] >= 2


def test_rerunfailures_keeps_the_last_attempt_and_names_earlier_broken_budgets(
    pt: pytest.Pytester,
) -> None:
    need("pytest_rerunfailures")
    pt.makepyfile(test_a="""
import pathlib, pytest

COUNT = pathlib.Path(__file__).parent / "count"

@pytest.mark.flaky(reruns=3)
@pytest.mark.perf_budget(max=0.5)
def test_flaky(perf_record):
    n = int(COUNT.read_text()) if COUNT.exists() else 0
    COUNT.write_text(str(n + 1))
    perf_record.add_latency(1.0 if n < 2 else 0.1)   # attempts 1 and 2 break the budget
""")
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*1 passed, 2 rerun*"])
    entry = by_id(read_report(pt.path / "r.json"))["test_flaky"]
    assert entry["latency"]["max"] == pytest.approx(0.1)  # the last attempt's figures
    assert entry["attempts"] == {"count": 3, "earlier": [
        {"attempt": 1, "outcome": "failed", "violations": ["max"]},
        {"attempt": 2, "outcome": "failed", "violations": ["max"]},
    ]}
