"""Core overhead benchmarks (issue 2), each a ratio against a reference measured in the same run.

(a) a 500-test trivial suite: plugin on with --perf-report, and with a perf_budget on every
    test, vs the same suite with -p no:agentperf (whole pytest process, import included);
(b) one empty profile_operation vs a bare perf_counter_ns pair and vs the guide's profiler;
(c) an allocation-heavy test with memory measured (auto = faults, and tracemalloc for contrast)
    vs the plugin off (bench_memory.py compares the memory methods).

    python bench/bench_core.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


def _suite(folder: Path, n: int, marked: bool) -> None:
    mark = "@pytest.mark.perf_budget(p95=1.0, memory_mb=500)\n" if marked else ""
    body = "import pytest\n\n" + "".join(
        f"{mark}def test_{i}():\n    assert {i} == {i}\n\n" for i in range(n)
    )
    (folder / "test_trivial.py").write_text(body)
    (folder / "pytest.ini").write_text(INI)


def _alloc_suite(folder: Path) -> None:
    (folder / "test_alloc.py").write_text(textwrap.dedent(
        """
        import pytest

        @pytest.mark.perf_budget(p95=100)
        @pytest.mark.parametrize("i", range(20))
        def test_alloc(i):
            data = [{"id": j, "text": "x" * 20} for j in range(50_000)]
            assert len(data) == 50_000
        """
    ))
    (folder / "pytest.ini").write_text(INI)


# Measure what users run: with bytecode caches (a session that sets
# PYTHONDONTWRITEBYTECODE would recompile and assert-rewrite every plugin module
# on each run), after one untimed warm-up run that fills them.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _run(folder: Path, *args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
    )
    return time.perf_counter() - t0


def _call_time(folder: Path, *args: str) -> float:
    """Sum of the tests' call-phase durations, from pytest's own JUnit XML.

    Free of interpreter start-up noise, and measured the same way with the
    plugin on or off.
    """
    import xml.etree.ElementTree as ET

    junit = folder / "junit.xml"
    _run(folder, "-o", "junit_duration_report=call", f"--junitxml={junit}", *args)
    return sum(float(case.get("time", 0)) for case in ET.parse(junit).iter("testcase"))


def _interleaved(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    for fn in variants.values():  # warm-up: fill bytecode caches, untimed
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(fn())
    return {k: statistics.median(v) for k, v in times.items()}


def bench_suite(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        plain, marked = Path(a), Path(b)
        _suite(plain, 500, marked=False)
        _suite(marked, 500, marked=True)
        res = _interleaved({
            "off": lambda: _run(plain, "-p", "no:agentperf"),
            "on": lambda: _run(plain, "--perf-report=r.json"),
            "off_marked": lambda: _run(marked, "-p", "no:agentperf", "-W",
                                       "ignore::pytest.PytestUnknownMarkWarning"),
            "on_marked": lambda: _run(marked, "--perf-report=r.json"),
        }, rounds)
    ref = res["off"]
    print(f"(a) 500 trivial tests, whole pytest process (median of {rounds})")
    print(f"    -p no:agentperf (reference)          {ref:7.3f} s   1.00")
    print(f"    plugin on, --perf-report              {res['on']:7.3f} s   {res['on'] / ref:.2f}"
          "   target <= 1.10")
    print(f"    plugin on, perf_budget on every test  {res['on_marked']:7.3f} s   "
          f"{res['on_marked'] / ref:.2f}   target <= 1.20")
    print(f"      (same marked suite, -p no:agentperf: {res['off_marked']:.3f} s; plugin on is "
          f"{res['on_marked'] / res['off_marked']:.2f}x that)")


def _per_op(fn: Callable[[], None], n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t0) / n / 1000


def bench_operation(n: int) -> None:
    from guide_reference import PerformanceProfiler as GuideProfiler

    from pytest_agentperf import PerformanceProfiler

    ours = PerformanceProfiler()
    guide = GuideProfiler()
    pc = time.perf_counter_ns

    def bare() -> None:
        t0 = pc()
        pc() - t0

    def with_ours() -> None:
        with ours.profile_operation("agent", "op"):
            pass

    def with_guide() -> None:
        with guide.profile_operation("agent", "op"):
            pass

    import resource

    clocks: dict[str, Callable[[], object]] = {
        "time.process_time_ns": time.process_time_ns,
        "time.thread_time_ns": time.thread_time_ns,
        "resource.getrusage(RUSAGE_SELF)": lambda: resource.getrusage(resource.RUSAGE_SELF),
        "resource.getrusage(RUSAGE_THREAD)": lambda: resource.getrusage(
            resource.RUSAGE_THREAD),  # Linux only
    }

    def read_twice(clock: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            clock()
            clock()
        return run

    rounds: dict[str, list[float]] = {"bare": [], "ours": [], "guide": []}
    rounds.update({name: [] for name in clocks})
    for _ in range(5):
        rounds["bare"].append(_per_op(bare, n))
        rounds["ours"].append(_per_op(with_ours, n))
        rounds["guide"].append(_per_op(with_guide, max(1, n // 10)))
        guide.metrics.clear()
        for name, clock in clocks.items():
            rounds[name].append(_per_op(read_twice(clock), n))
    med = {k: statistics.median(v) for k, v in rounds.items()}
    print("(b) one empty profile_operation (median of 5 rounds)")
    print(f"    bare perf_counter_ns pair (reference)  {med['bare']:8.2f} us   1.0x")
    print(f"    pytest-agentperf                       {med['ours']:8.2f} us   "
          f"{med['ours'] / med['bare']:.1f}x   target <= 3 us")
    print(f"    the guide's (cProfile + psutil)         {med['guide']:8.2f} us   "
          f"{med['guide'] / med['bare']:.1f}x   ({med['guide'] / med['ours']:.1f}x ours)")
    print("    CPU clocks, two reads (what one operation's CPU time costs):")
    for name in clocks:
        print(f"      {name:<34} {med[name]:6.2f} us   {med[name] / med['bare']:.1f}x")


def bench_memory(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        _alloc_suite(folder)
        res = _interleaved({
            "off": lambda: _call_time(folder, "-p", "no:agentperf"),
            "auto": lambda: _call_time(folder, "--perf-memory=auto"),
            "tracemalloc": lambda: _call_time(folder, "--perf-memory=tracemalloc"),
        }, rounds)
    ref = res["off"]
    print(f"(c) 20 allocation-heavy tests (1M small objects): their call-phase time "
          f"(JUnit XML), median of {rounds}")
    print(f"    plugin off (reference)        {ref:7.3f} s   1.00")
    print(f"    memory=auto (faults)          {res['auto']:7.3f} s   {res['auto'] / ref:.2f}")
    print(f"    memory=tracemalloc            {res['tracemalloc']:7.3f} s   "
          f"{res['tracemalloc'] / ref:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    bench_suite(rounds)
    bench_operation(20_000 if args.quick else 100_000)
    bench_memory(rounds)


if __name__ == "__main__":
    main()
