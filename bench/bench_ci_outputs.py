"""CI outputs for a 20,000-test report, each a ratio against writing the report itself.

Reference: ``json.dumps`` of the same report (what ``--perf-report`` does at the end of a
session). Measured: the Markdown job summary (``markdown.job_summary``), the three export
formats, and the CLI's report check (``validate.first_error``, run only when a command fails).

    python bench/bench_ci_outputs.py [--tests N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from pytest_agentperf.export import export_report
from pytest_agentperf.markdown import job_summary
from pytest_agentperf.report import load_schema
from pytest_agentperf.validate import first_error


def make_report(n: int) -> dict[str, Any]:
    tests = []
    for i in range(n):
        samples = [0.01 + (i % 7) * 1e-4 + k * 1e-5 for k in range(30)]
        tests.append({
            "nodeid": f"tests/test_m{i // 100}.py::test_{i}[p{i}]", "outcome": "passed",
            "duration_s": 0.3, "budget": {"p95": 0.5},
            "latency": {"count": 30, "min": samples[0], "mean": samples[15], "p50": samples[15],
                        "p90": samples[27], "p95": samples[28], "p99": samples[29],
                        "max": samples[29], "samples": samples},
            "memory": {"peak_mb": 1.5, "method": "hwm"},
            "tokens": {"total": 100, "prompt": 60, "completion": 40, "per_request": 50.0},
            "violations": [], "operations": {}, "findings": []})
    env = {"python": "3.11", "platform": "Linux", "machine": "x86_64", "cpu_count": 2,
           "pytest": "9", "agentperf": "0.1.0", "git_commit": None}
    return {"schema_version": 1, "created": "2026-01-01T00:00:00Z", "complete": True,
            "environment": env, "summary": {"tests": n, "passed": n, "failed": 0,
                                            "skipped": 0, "errors": 0, "budget_violations": 0},
            "tests": tests}


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) if times else statistics.fmean(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tests", type=int, default=20000)
    n = parser.parse_args().tests
    report = make_report(n)
    schema = load_schema()
    reference = best_of(lambda: json.dumps(report))
    print(f"{n} tests; reference json.dumps(report): {reference * 1e3:.1f} ms")
    cases: dict[str, Callable[[], object]] = {
        "markdown job summary": lambda: job_summary(report),
        "export github-action-benchmark": lambda: export_report(report,
                                                                "github-action-benchmark"),
        "export bencher": lambda: export_report(report, "bencher"),
        "export openmetrics": lambda: export_report(report, "openmetrics"),
        "schema check (on CLI failure)": lambda: first_error(report, schema),
    }
    for name, fn in cases.items():
        took = best_of(fn)
        print(f"{name:34s} {took * 1e3:8.1f} ms  {took / reference:6.2f}x the reference")


if __name__ == "__main__":
    main()
