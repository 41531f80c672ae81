"""pytest-agentperf export: formats other tools read, checked as those tools read them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from test_cli_input import VALID

from pytest_agentperf.cli import main


def _report(tmp_path: Path) -> Path:
    data: dict[str, Any] = json.loads(json.dumps(VALID))
    data["tests"][0]["violations"] = [{"metric": "p95", "value": 2.0, "limit": 1.0,
                                       "unit": "s", "count": 6}]
    data["tests"][1]["memory"] = {"peak_mb": 12.5, "method": "hwm"}
    data["tests"][2]["latency"] = {"count": 0, "min": None, "mean": None, "p50": None,
                                   "p90": None, "p95": None, "p99": None, "max": None}
    data["tests"][2]["nodeid"] = 't.py::test_q["quote" \\ back]'
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    return path


def _export(tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> str:
    report = _report(tmp_path)
    assert main(["export", str(report), "--format", fmt]) == 0
    out = capsys.readouterr().out
    # -o writes the same text
    assert main(["export", str(report), "--format", fmt, "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out").read_text() == out
    return out


def test_github_action_benchmark_custom_smaller_is_better(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = json.loads(_export(tmp_path, "github-action-benchmark", capsys))
    # the action's documented customSmallerIsBetter input: a list of {name, unit, value}
    # objects, value a number; range and extra optional strings; names unique
    assert isinstance(rows, list) and rows
    for row in rows:
        assert set(row) <= {"name", "unit", "value", "range", "extra"}
        assert isinstance(row["name"], str) and isinstance(row["unit"], str)
        assert isinstance(row["value"], (int, float)) and math.isfinite(row["value"])
        assert all(isinstance(row[k], str) for k in ("range", "extra") if k in row)
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names))
    by_name = {r["name"]: r for r in rows}
    assert by_name["t.py::test_0 latency p50"]["unit"] == "ms"
    assert by_name["t.py::test_0 latency p50"]["value"] == pytest.approx(35.0)
    assert by_name["t.py::test_1 peak memory"]["value"] == 12.5
    assert by_name["t.py::test_0 tokens"]["value"] == 100
    assert not any("test_q" in n and "latency" in n for n in names)  # unmeasured: left out


def test_bencher_metric_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(_export(tmp_path, "bencher", capsys))
    # Bencher Metric Format: {benchmark: {measure_slug: {value, lower_value?, upper_value?}}}
    assert isinstance(data, dict) and len(data) == 3
    for benchmark, measures in data.items():
        assert isinstance(benchmark, str) and measures
        for slug, metric in measures.items():
            assert slug == slug.lower() and " " not in slug
            assert set(metric) <= {"value", "lower_value", "upper_value"} and "value" in metric
            assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in metric.values())
            if "lower_value" in metric:
                assert metric["lower_value"] <= metric["value"]
            if "upper_value" in metric:
                assert metric["value"] <= metric["upper_value"]
    latency = data["t.py::test_0"]["latency"]  # Bencher's built-in measure: nanoseconds
    assert latency["value"] == pytest.approx(35e6)
    assert data["t.py::test_0"]["budget-violations"]["value"] == 1
    assert "latency" not in data['t.py::test_q["quote" \\ back]']


def test_openmetrics_parses_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    text = _export(tmp_path, "openmetrics", capsys)
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) >= {"agentperf_latency_seconds", "agentperf_peak_memory_bytes",
                             "agentperf_tokens", "agentperf_budget_violations"}
    samples = {(s.name, s.labels.get("test"), s.labels.get("quantile")): s.value
               for f in families.values() for s in f.samples}
    assert samples[("agentperf_latency_seconds", "t.py::test_0", "0.95")] == pytest.approx(
        0.0575)
    assert samples[("agentperf_peak_memory_bytes", "t.py::test_1", None)] == 12.5 * 2**20
    assert samples[("agentperf_budget_violations", "t.py::test_0", None)] == 1
    assert samples[("agentperf_budget_violations", 't.py::test_q["quote" \\ back]', None)] == 0


def test_export_errors_are_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _report(tmp_path)
    assert main(["export", str(tmp_path / "none.json"), "--format", "bencher"]) == 2
    assert "none.json" in capsys.readouterr().err
    assert main(["export", str(report), "--format", "bencher", "-o", str(tmp_path)]) == 2
    assert "not a file path" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["export", str(report), "--format", "csv"])
    assert exc.value.code == 2
