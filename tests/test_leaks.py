"""Leak measurement: retained memory, not transient peaks."""

from __future__ import annotations

import gc
import inspect
import json
import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_agentperf.findings import MEMORY_LEAK
from pytest_agentperf.measurement.leaks import LeakChecker

_MIB = 1024 * 1024
_HELD: list[Any] = []  # module-level: what a leaking agent appends to


@pytest.fixture
def held() -> Iterator[list[Any]]:
    try:
        yield _HELD
    finally:
        _HELD.clear()


def _line_after_caller() -> int:
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno + 1


def test_real_leak_is_caught_with_its_site(held: list[Any]) -> None:
    checker = LeakChecker(top=5)
    checker.start()
    line = _line_after_caller()
    held.append(bytearray(20 * _MIB))
    result = checker.stop()

    assert 19.9 <= result.retained_mb <= 21.0
    top = result.top_sites[0]
    assert top.site == f"{__file__}:{line}"
    assert top.size_mb >= 19.9
    assert top.source == "held.append(bytearray(20 * _MIB))"
    assert "20.0" in result.describe() and top.site in result.describe()
    finding = checker.finding(budget_mb=5)
    assert finding is not None and finding.kind == MEMORY_LEAK
    assert top.site in finding.message
    assert checker.finding(budget_mb=50) is None


def test_freed_transient_allocation_is_not_a_leak() -> None:
    checker = LeakChecker()
    checker.start()
    chunks = [bytearray(_MIB) for _ in range(30)]  # a 30 MiB peak ...
    assert sum(len(c) for c in chunks) == 30 * _MIB
    del chunks  # ... freed before the end
    result = checker.stop()
    assert abs(result.retained_mb) < 1.0
    assert checker.finding(budget_mb=1) is None


def test_cyclic_garbage_is_collected_before_measuring() -> None:
    class Node:
        def __init__(self) -> None:
            self.payload = bytearray(_MIB)
            self.me = self

    checker = LeakChecker()
    checker.start()
    for _ in range(10):
        Node()  # unreachable cycles, only the cyclic collector frees them
    result = checker.stop()
    assert result.retained_mb < 1.0


def test_many_small_retained_objects_are_summed(held: list[Any]) -> None:
    checker = LeakChecker()
    checker.start()
    held.extend(str(i) * 10 for i in range(20_000))  # ~1.3 MiB of small strings
    result = checker.stop()
    expected = sum(sys.getsizeof(s) for s in held) / _MIB
    assert expected * 0.9 <= result.retained_mb <= expected * 1.3 + 0.2
    assert result.top_sites[0].count >= 20_000


def test_tracemalloc_only_runs_while_checking() -> None:
    assert not tracemalloc.is_tracing()
    checker = LeakChecker()
    checker.start()
    assert tracemalloc.is_tracing() and checker.running
    checker.stop()
    assert not tracemalloc.is_tracing() and not checker.running


def test_types_walk_only_over_the_threshold(held: list[Any]) -> None:
    checker = LeakChecker(types=True)
    checker.start()
    held.append(bytearray(2 * _MIB))
    assert checker.stop(types_over_mb=5).top_types is None  # under: walk skipped
    checker.start()
    held.append(bytearray(6 * _MIB))
    result = checker.stop(types_over_mb=5)
    assert result.top_types is not None and result.top_types[0].type == "bytearray"


def test_no_types_when_tracing_was_already_on(held: list[Any]) -> None:
    tracemalloc.start()
    try:
        checker = LeakChecker(types=True, top=3)
        checker.start()
        held.append(bytearray(8 * _MIB))
        result = checker.stop()
    finally:
        tracemalloc.stop()
    assert result.top_types is None  # old and new objects cannot be told apart
    assert result.retained_mb >= 7.9


def test_tracemalloc_started_by_someone_else_is_left_running(held: list[Any]) -> None:
    tracemalloc.start()
    try:
        before_any = bytearray(5 * _MIB)  # allocated before start(): not counted
        checker = LeakChecker()
        checker.start()
        held.append(bytearray(3 * _MIB))
        result = checker.stop()
        assert tracemalloc.is_tracing()
        assert 2.9 <= result.retained_mb <= 3.5
        del before_any
    finally:
        tracemalloc.stop()


def test_type_summary_names_the_retained_type(held: list[Any]) -> None:
    checker = LeakChecker(types=True, top=3)
    checker.start()
    held.append(bytearray(8 * _MIB))
    result = checker.stop()
    assert result.top_types is not None
    # the objects the body left alive, nothing of the checker's own (under
    # xdist, execnet's I/O thread may hold a buffer or two at that moment)
    first, *others = result.top_types
    assert (first.type, first.count) == ("bytearray", 1)
    assert first.size_mb >= 7.9
    assert sum(t.size_mb for t in others) < 0.1
    assert "bytearray" in result.describe()


def test_report_section_and_lifecycle(held: list[Any]) -> None:
    checker = LeakChecker()
    assert checker.report_section() == {"retained_mb": None, "top_sites": [], "top_types": None}
    with pytest.raises(RuntimeError):
        checker.stop()
    checker.start()
    with pytest.raises(RuntimeError):
        checker.start()
    held.append(bytearray(2 * _MIB))
    checker.stop()
    section = checker.report_section()
    assert section["retained_mb"] >= 1.9
    assert section["top_types"] is None
    assert set(section["top_sites"][0]) == {"site", "size_mb", "count", "source"}
    json.dumps(section)
    gc.collect()


@pytest.mark.parametrize("kwargs", [{"top": 0}, {"frames": 0}])
def test_invalid_arguments(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        LeakChecker(**kwargs)  # type: ignore[arg-type]


def test_plugin_style_wiring_around_the_call_phase(pytester: pytest.Pytester) -> None:
    """The wiring the plugin uses: start in a pytest_runtest_call wrapper, stop
    after; an async leak is caught, a clean async test stays near zero."""
    pytester.makeconftest(
        """
        import pytest
        from pytest_agentperf.measurement.leaks import LeakChecker

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_call(item):
            checker = LeakChecker(top=3)
            checker.start()
            try:
                return (yield)
            finally:
                checker.stop()
                item.user_properties.append(("leaks", checker.report_section()))
        """
    )
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_agent="""
        import asyncio
        import pytest

        HISTORY = []

        @pytest.mark.asyncio
        async def test_clean():
            data = [bytearray(1024) for _ in range(20_000)]
            await asyncio.sleep(0)
            assert len(data) == 20_000

        @pytest.mark.asyncio
        async def test_leaks():
            await asyncio.sleep(0)
            HISTORY.append(bytearray(20 * 1024 * 1024))
        """
    )
    reprec = pytester.inline_run("-p", "no:agentperf", "-p", "no:cacheprovider")
    reprec.assertoutcome(passed=2)
    sections: dict[str, Any] = {
        r.nodeid.split("::")[-1]: dict(r.user_properties)["leaks"]
        for r in reprec.getreports("pytest_runtest_logreport")
        if r.when == "call"
    }
    assert abs(sections["test_clean"]["retained_mb"]) < 0.5
    leak = sections["test_leaks"]
    assert leak["retained_mb"] >= 19.9
    assert leak["top_sites"][0]["site"].endswith("test_agent.py:15")


def test_leak_types_walk_survives_the_asyncio_c_module(pytester: pytest.Pytester) -> None:
    """CPython 3.12's ``_asyncio`` module traverse visits freed objects (gh-122695):
    walking module objects' referents segfaulted or hung the worker.  A leak
    failure after asyncio work must name its types and end."""
    pytester.makepyfile(
        """
        import asyncio, pytest

        HELD = []

        @pytest.mark.perf_budget(leak_mb=1)
        def test_leaks_after_asyncio():
            async def work():
                futures = [asyncio.get_running_loop().create_future() for _ in range(200)]
                for f in futures:
                    f.set_result(1)
                async def agen():
                    for i in range(50):
                        yield i
                return [x async for x in agen()] + [await f for f in futures]
            for _ in range(20):
                asyncio.run(work())
            HELD.append(bytearray(8 * 1024 * 1024))
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*leak_mb 8* MiB > 1 MiB*", "*top retained types:*",
                                 "*bytearray*"])
