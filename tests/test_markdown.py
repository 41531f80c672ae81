"""The Markdown job summary: problems first, folded rest, well-formed tables, under 1 MiB."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from pytest_agentperf.markdown import GITHUB_FILE_LIMIT, job_summary

SUITE = """
import json, pytest

with open("cfg.json") as f:
    CFG = json.load(f)

@pytest.mark.perf_budget(p95=0.5)
def test_over(perf_record):
    perf_record.add_latency(0.9)

@pytest.mark.perf_budget(p95=10)
def test_slower(perf_record):
    for i in range(30):
        perf_record.add_latency(0.01 * CFG["factor"] * (1 + i / 100))

@pytest.mark.parametrize("arg", ["a|b <i>"])
@pytest.mark.perf_budget(p95=10)
def test_pipe(perf_record, arg):
    perf_record.add_latency(0.01)
"""


def tables(text: str) -> list[list[int]]:
    """Every table rendered by a CommonMark+GFM-tables parser, as cells per row."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    out: list[list[int]] = []
    cells = 0
    for tok in tokens:
        if tok.type == "table_open":
            out.append([])
        elif tok.type in ("th_open", "td_open"):
            cells += 1
        elif tok.type == "tr_close":
            out[-1].append(cells)
            cells = 0
    return out


def check_tables(text: str) -> list[list[int]]:
    found = tables(text)
    row_lines = [line for line in text.splitlines()
                 if line.startswith("| ") and not line.startswith("| ---")]
    assert sum(len(t) for t in found) == len(row_lines), "a row did not render as a table row"
    for t in found:
        assert len(set(t)) == 1, f"ragged table: {t}"
    return found


def run(pt: pytest.Pytester, factor: float, *args: str) -> pytest.RunResult:
    (pt.path / "cfg.json").write_text(json.dumps({"factor": factor}))
    return pt.runpytest(*args)


def test_github_summary_regressions_and_violations_first(
    pt: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pt.makepyfile(test_suite=SUITE)
    run(pt, 1.0, "--perf-report=base.json").assert_outcomes(passed=2, failed=1)
    summary = pt.path / "summary.md"
    summary.write_text("# earlier step output\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    run(pt, 3.0, "--perf-compare=base.json").assert_outcomes(passed=1, failed=2)
    text = summary.read_text()
    assert text.startswith("# earlier step output\n")  # appended, not replaced
    assert "## pytest-agentperf: 3 measured tests" in text
    violations = text.index("### ❌ Budget violations (1)")
    regressions = text.index("### 📈 Regressions")
    details = text.index("<details><summary>All 3 measured tests</summary>")
    assert violations < regressions < details
    assert "| test\\_suite.py::test\\_over | p95 | 900 ms | 500 ms | 1 |" in text
    row = next(line for line in text.splitlines()
               if "test\\_slower" in line and "latency.p50" in line)
    assert "→" in row and "+" in row and "e-" in row  # before → after, change, p-value
    found = check_tables(text)
    assert [len(t) for t in found][-1] == 4  # header + 3 tests


def test_explicit_path_and_nothing_for_an_unmeasured_suite(pt: pytest.Pytester) -> None:
    pt.makepyfile(test_plain="def test_x():\n    pass\n")
    pt.runpytest("--perf-markdown=s.md").assert_outcomes(passed=1)
    assert not (pt.path / "s.md").exists()
    pt.makepyfile(test_suite=SUITE)
    run(pt, 1.0, "--perf-markdown=s.md")
    text = (pt.path / "s.md").read_text()
    assert "test\\_pipe\\[a\\|b &lt;i&gt;\\]" in text  # | and HTML in an id stay text
    check_tables(text)


def _report(n: int) -> dict[str, Any]:
    tests = []
    for i in range(n):
        entry: dict[str, Any] = {
            "nodeid": f"tests/test_module_{i // 100}.py::test_case_{i}[param-{i}]",
            "outcome": "passed", "latency": {"count": 30, "p50": 0.01, "p95": 0.02},
            "memory": {"peak_mb": 1.5}, "tokens": {"total": 100}, "violations": []}
        if i % 1000 == 999:
            entry["violations"] = [{"metric": "p95", "value": 0.2, "limit": 0.1, "unit": "s",
                                    "count": 30}]
            entry["outcome"] = "failed"
        if i % 500 == 0:
            entry["baseline"] = {"verdict": "regression", "metrics": [
                {"metric": "latency.p95", "unit": "s", "baseline": 0.01, "current": 0.02,
                 "change": 1.0, "verdict": "regression", "evidence": {"p_value": 1e-6}}]}
        tests.append(entry)
    return {"tests": tests, "summary": {"tests": n, "passed": n - n // 1000,
                                        "failed": n // 1000, "budget_violations": n // 1000},
            "complete": True}


def test_20000_tests_stay_under_one_mib_problems_first() -> None:
    text = job_summary(_report(20000))
    size = len(text.encode("utf-8"))
    assert size < 1024 * 1024
    assert size > 900 * 1024  # it used the room it has
    assert text.index("Budget violations (20)") < text.index("Regressions (40)") < text.index(
        "<details>")
    assert "more tests not shown" in text
    assert text.rstrip().endswith("</details>")
    found = check_tables(text)
    assert [len(t) for t in found][:2] == [21, 41]  # every violation and regression shown


def test_append_keeps_the_whole_file_under_the_limit(tmp_path: Path) -> None:
    from pytest_agentperf.markdown import append_summary

    path = tmp_path / "summary.md"
    path.write_text("x" * 700_000 + "\n")
    append_summary(path, _report(20000))
    assert path.stat().st_size < GITHUB_FILE_LIMIT
    check_tables(path.read_text())


def test_compare_formats_markdown_json_table(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from test_compare import entry, report

    from pytest_agentperf.cli import main

    steady = [0.010 + i * 1e-4 for i in range(10)]
    base, slow = tmp_path / "base.json", tmp_path / "slow.json"
    base.write_text(json.dumps(report(entry(steady, "t.py::a", tokens=100),
                                      entry(steady, "t.py::gone"))))
    slow.write_text(json.dumps(report(entry([v * 2 for v in steady], "t.py::a", tokens=150))))
    assert main(["compare", str(base), str(slow), "--format", "markdown"]) == 1
    text = capsys.readouterr().out
    assert text.startswith("## pytest-agentperf: ")
    assert "### 📈 Regressions" in text and "latency.p50" in text and "tokens.total" in text
    assert text.index("Regressions") < text.index("<details><summary>New or missing tests")
    check_tables(text)
    assert main(["compare", str(base), str(slow), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["regressed"] is True and data["counts"]["regression"] == 1
    (a,) = [t for t in data["tests"] if t["nodeid"] == "t.py::a"]
    assert {m["metric"] for m in a["metrics"] if m["verdict"] == "regression"} >= {
        "latency.p50", "tokens.total"}
    assert main(["compare", str(base), str(base), "--format", "markdown"]) == 0
    assert "Regressions" not in capsys.readouterr().out
    assert main(["compare", str(base), str(slow)]) == 1
    assert "1 regressed" in capsys.readouterr().out  # the terminal table stays the default
