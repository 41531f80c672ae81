"""``pytest-agentperf export``: a report in formats other tools read.

* ``github-action-benchmark``: the ``customSmallerIsBetter`` JSON of
  benchmark-action/github-action-benchmark (a list of ``{name, unit, value, range?,
  extra?}``; smaller is better for every figure we export).
* ``bencher``: Bencher Metric Format (``{benchmark: {measure: {value, lower_value?,
  upper_value?}}}``); ``latency`` is Bencher's built-in measure, in nanoseconds.
* ``openmetrics``: OpenMetrics text exposition (GitLab metrics reports, a Prometheus
  pushgateway), written by the official ``prometheus_client`` (the ``[openmetrics]`` extra).

Each test gives latency p50/p95 (when it has samples), peak memory, tokens and its
number of budget violations; unknown figures are left out, never written as 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .report import ReportError, atomic_write_text, load_report
from .reportdata import number

__all__ = ["FORMATS", "add_export_parser", "export_report"]

FORMATS = ("github-action-benchmark", "bencher", "openmetrics")


def _figures(test: Mapping[str, Any]) -> dict[str, float]:
    """The exportable figures of one test entry (only those measured)."""
    out: dict[str, float] = {}
    raw = test.get("latency")
    latency: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    for key in ("p50", "p95", "min", "max"):
        value = number(latency.get(key))
        if value is not None:
            out[key] = value
    memory = test.get("memory")
    if isinstance(memory, Mapping) and number(memory.get("peak_mb")) is not None:
        out["peak_mb"] = float(memory["peak_mb"])
    tokens = test.get("tokens")
    if isinstance(tokens, Mapping) and number(tokens.get("total")) is not None:
        out["tokens"] = float(tokens["total"])
    violations = test.get("violations")
    out["violations"] = float(len(violations)) if isinstance(violations, list) else 0.0
    return out


def _tests(report: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, float]]]:
    for test in report.get("tests") or []:
        if isinstance(test, Mapping) and isinstance(test.get("nodeid"), str):
            yield test["nodeid"], _figures(test)


def github_action_benchmark(report: Mapping[str, Any]) -> str:
    rows: list[dict[str, Any]] = []
    for nodeid, f in _tests(report):
        for key, unit, scale in (("p50", "ms", 1e3), ("p95", "ms", 1e3)):
            if key in f:
                row: dict[str, Any] = {"name": f"{nodeid} latency {key}", "unit": unit,
                                       "value": round(f[key] * scale, 6)}
                if "min" in f and "max" in f:
                    row["extra"] = (f"min {f['min'] * scale:.3f} ms, "
                                    f"max {f['max'] * scale:.3f} ms")
                rows.append(row)
        if "peak_mb" in f:
            rows.append({"name": f"{nodeid} peak memory", "unit": "MiB",
                         "value": round(f["peak_mb"], 3)})
        if f.get("tokens"):
            rows.append({"name": f"{nodeid} tokens", "unit": "tokens", "value": f["tokens"]})
    return json.dumps(rows, indent=2) + "\n"


def bencher(report: Mapping[str, Any]) -> str:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for nodeid, f in _tests(report):
        measures: dict[str, dict[str, float]] = {}
        if "p50" in f:
            latency = {"value": f["p50"] * 1e9}
            if "min" in f:
                latency["lower_value"] = f["min"] * 1e9
            if "p95" in f:
                latency["upper_value"] = max(f["p95"], f["p50"]) * 1e9
            measures["latency"] = latency
        if "peak_mb" in f:
            measures["peak-memory-mib"] = {"value": f["peak_mb"]}
        if f.get("tokens"):
            measures["tokens"] = {"value": f["tokens"]}
        measures["budget-violations"] = {"value": f["violations"]}
        out[nodeid] = measures
    return json.dumps(out, indent=2) + "\n"


def openmetrics(report: Mapping[str, Any]) -> str:
    try:
        from prometheus_client import CollectorRegistry
        from prometheus_client.core import GaugeMetricFamily
        from prometheus_client.openmetrics.exposition import generate_latest
    except ImportError:
        raise ReportError("--format openmetrics needs prometheus_client: "
                          "pip install 'pytest-agentperf[openmetrics]'") from None
    latency = GaugeMetricFamily("agentperf_latency_seconds",
                                "latency percentile of a test's samples",
                                labels=["test", "quantile"])
    memory = GaugeMetricFamily("agentperf_peak_memory_bytes",
                               "peak memory the test's call added", labels=["test"])
    tokens = GaugeMetricFamily("agentperf_tokens", "tokens the test used", labels=["test"])
    violations = GaugeMetricFamily("agentperf_budget_violations",
                                   "broken budget limits of the test", labels=["test"])
    for nodeid, f in _tests(report):
        for key, quantile in (("p50", "0.5"), ("p95", "0.95")):
            if key in f:
                latency.add_metric([nodeid, quantile], f[key])
        if "peak_mb" in f:
            memory.add_metric([nodeid], f["peak_mb"] * 1024 * 1024)
        if "tokens" in f:
            tokens.add_metric([nodeid], f["tokens"])
        violations.add_metric([nodeid], f["violations"])

    class _Report:
        def collect(self) -> list[Any]:
            return [latency, memory, tokens, violations]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Report())
    text: str = generate_latest(registry).decode("utf-8")  # type: ignore[no-untyped-call]
    return text


_WRITERS = {"github-action-benchmark": github_action_benchmark, "bencher": bencher,
            "openmetrics": openmetrics}


def export_report(report: Mapping[str, Any], fmt: str) -> str:
    """``report`` in format ``fmt`` (one of :data:`FORMATS`)."""
    return _WRITERS[fmt](report)


def add_export_parser(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "export", help="write a report in a format other tools read",
        description="Write a report as github-action-benchmark customSmallerIsBetter JSON, "
        "Bencher Metric Format JSON, or OpenMetrics text (GitLab metrics reports, Prometheus "
        "pushgateway; needs the [openmetrics] extra).")
    p.add_argument("report", help="the JSON report (written by pytest --perf-report)")
    p.add_argument("--format", required=True, choices=FORMATS, help="the output format")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="OUT",
                   help="write here (atomically) instead of standard output")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    report = load_report(args.report)
    text = export_report(report, args.format)
    out: Path | None = args.output
    if out is None:
        sys.stdout.write(text)
        return 0
    if out.is_dir() or not out.parent.is_dir():
        raise ReportError(f"cannot write {out}: not a file path in an existing directory")
    try:
        atomic_write_text(out, text)
    except OSError as exc:
        raise ReportError(f"cannot write {out}: {exc.strerror or exc}") from None
    return 0
