"""regression.py through real pytest runs: baseline gate, warn mode, history, options.

"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _support import by_id, read_report

SUITE = """
import json, pathlib, pytest

CFG = json.loads((pathlib.Path(__file__).parent / "cfg.json").read_text())


class Clock:
    \"\"\"Deterministic durations: the gate's verdicts are logic, not timing.\"\"\"

    def __init__(self, step_s):
        self.now, self.step, self.calls = 0, int(step_s * 1e9), 0

    def __call__(self):
        self.calls += 1
        if self.calls % 2 == 0:  # the end of an operation: its duration
            self.now += self.step + (self.calls % 7) * self.step // 100
        return self.now


def test_agent(profiler):
    profiler.clock = Clock(0.01 * CFG["factor"])
    for _ in range(10):
        with profiler.profile_operation("planner", "llm") as m:
            m.tokens_used = CFG["tokens"]

@pytest.mark.perf_regression(latency="500%", tokens=1.0)
def test_lenient(profiler):
    profiler.clock = Clock(0.002 * CFG["factor"])
    for _ in range(10):
        with profiler.profile_operation("tool", "x") as m:
            m.tokens_used = CFG["tokens"]

@pytest.mark.perf_budget(p95=100)
def test_one_sample(perf_record):
    perf_record.add_latency(0.001)
"""


@pytest.fixture
def rpt(pt: pytest.Pytester) -> pytest.Pytester:
    pt.makepyfile(test_suite=SUITE)
    return pt


def configure(pt: pytest.Pytester, factor: float = 1.0, tokens: int = 100) -> None:
    (pt.path / "cfg.json").write_text(json.dumps({"factor": factor, "tokens": tokens}))


def baseline(pt: pytest.Pytester) -> Path:
    configure(pt)
    pt.runpytest("--perf-report=base.json").assert_outcomes(passed=3)
    return pt.path / "base.json"


def test_slowdown_and_tokens_are_caught(rpt: pytest.Pytester) -> None:
    base = baseline(rpt)
    configure(rpt, factor=2.0, tokens=150)
    result = rpt.runpytest(f"--perf-compare={base}", "--perf-report=new.json")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*perf regression against baseline*latency.p50*->*tolerance 10%*Mann-Whitney p=*",
        "*agentperf baseline:*",
        "*REGRESSION*test_agent*tokens.total 1000 tokens -> 1500 tokens (+50.0%*",
    ])
    report = read_report(rpt.path / "new.json")
    agent = by_id(report)["test_agent"]
    assert agent["outcome"] == "failed"
    verdicts = {m["metric"]: m["verdict"] for m in agent["baseline"]["metrics"]}
    assert verdicts["latency.p50"] == "regression"
    assert verdicts["op[planner:llm].p50"] == "regression"
    assert verdicts["tokens.total"] == "regression"
    lenient = by_id(report)["test_lenient"]
    assert lenient["outcome"] == "passed"  # marker tolerances: +500 % latency, +100 % tokens
    assert lenient["baseline"]["verdict"] != "regression"
    assert by_id(report)["test_one_sample"]["baseline"]["verdict"] == "inconclusive"
    block = report["baseline"]
    assert block["source"] == str(base) and block["mode"] == "fail"
    assert [r["nodeid"] for r in block["regressions"]] == ["test_suite.py::test_agent"]
    assert "test_suite.py::test_one_sample" in block["inconclusive"]


def test_unchanged_code_passes_run_after_run(rpt: pytest.Pytester) -> None:
    base = baseline(rpt)
    for _ in range(3):
        result = rpt.runpytest(f"--perf-compare={base}")
        result.assert_outcomes(passed=3)
        result.stdout.fnmatch_lines(["*inconclusive test_suite.py::test_one_sample: too few "
                                     "samples*", "0 regressed*"])


def test_warn_mode_only_warns(rpt: pytest.Pytester) -> None:
    base = baseline(rpt)
    configure(rpt, factor=1.0, tokens=300)
    result = rpt.runpytest(f"--perf-compare={base}", "--perf-compare-warn")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*REGRESSION (warning only)*tokens.total*"])


def test_bad_baselines_are_usage_errors(rpt: pytest.Pytester) -> None:
    (rpt.path / "corrupt.json").write_text("{")
    for name, text in (("missing.json", "does not exist"), ("corrupt.json", "not valid JSON")):
        result = rpt.runpytest(f"--perf-compare={name}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*--perf-compare:*{name}*{text}*"])
    result = rpt.runpytest("--perf-tolerance=latency=ten")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--perf-tolerance: latency='ten' is not a number*"])
    result = rpt.runpytest("--perf-compare-warn")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_bad_marker_errors_the_test(rpt: pytest.Pytester) -> None:
    configure(rpt)
    rpt.makepyfile(test_bad="""
import pytest
@pytest.mark.perf_regression(speed=1)
def test_x(perf_record):
    pass
""")
    result = rpt.runpytest("test_bad.py", "--perf-history=h.db")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*invalid @pytest.mark.perf_regression: unknown key 'speed'*"])


def test_history_baseline_and_other_machine_warning(rpt: pytest.Pytester) -> None:
    configure(rpt)
    result = rpt.runpytest("--perf-history", "--perf-compare=history")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*no earlier complete run on this machine*",
                                 "*perf history: run 1 -> *history.db"])
    assert (rpt.path / ".agentperf" / "history.db").is_file()
    result = rpt.runpytest("--perf-history", "--perf-compare=history")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*agentperf baseline: history*(runs 1)*", "*0 regressed*"])
    configure(rpt, tokens=300)
    result = rpt.runpytest("--perf-compare=history", "--perf-history")
    result.assert_outcomes(passed=1, failed=2)
    # a baseline from another machine gets a warning
    base = baseline(rpt)
    data = json.loads(base.read_text())
    data["environment"]["python"] = "2.7.18"
    base.write_text(json.dumps(data))
    result = rpt.runpytest(f"--perf-compare={base}")
    result.stdout.fnmatch_lines(["*warning: baseline comes from another machine or Python*"
                                 "2.7.18*"])


def test_xdist_workers_judge_and_controller_records(rpt: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    base = baseline(rpt)
    configure(rpt, tokens=300)
    result = rpt.runpytest_subprocess("-n", "2", f"--perf-compare={base}",
                                      "--perf-report=x.json", "--perf-history=h.db")
    result.assert_outcomes(passed=1, failed=2)
    report = read_report(rpt.path / "x.json")
    assert len(report["baseline"]["regressions"]) == 2
    from pytest_agentperf.history import History

    with History(rpt.path / "h.db") as h:
        assert len(h.runs()) == 1


def test_html_report_draws_trends_from_the_history_database(rpt: pytest.Pytester) -> None:
    (rpt.path / "cfg.json").write_text(json.dumps({"factor": 1, "tokens": 5}))
    for _ in range(2):
        rpt.runpytest("--perf-history=h.db", "--perf-report=r.json", "--perf-html=r.html"
                      ).assert_outcomes(passed=3)
    page = (rpt.path / "r.html").read_text()
    assert "History (2 runs" in page and "trend: p95 latency" in page
    from pytest_agentperf.cli import main

    assert main(["html", str(rpt.path / "r.json"), "-o", str(rpt.path / "cli.html"),
                 "--db", str(rpt.path / "h.db")]) == 0
    assert "History (2 runs" in (rpt.path / "cli.html").read_text()
    assert main(["html", str(rpt.path / "r.json"), "--db", str(rpt.path / "nope.db")]) == 2


@pytest.mark.parametrize(("marker", "expected"), [
    ("speed=1", "unknown key 'speed'"),
    ("latency=5", "latency=5 is ambiguous: write latency='5%' for a percentage or "
                  "latency=0.05 for the fraction"),
    ("latency='5'", "latency='5' is ambiguous"),
    ("latency='fast'", "latency='fast' is not a number"),
    ("memory=-0.1", "memory=-0.1 must be a finite number >= 0"),
    ("tokens=10**400", "tokens=1000*... must be a finite number >= 0"),
    ("memory_floor_mb='5'", "memory_floor_mb='5' must be a finite number >= 0 (MiB)"),
    ("0.1", "positional arguments (0.1,) are not accepted"),
])
def test_bad_perf_regression_markers_error_even_without_a_gate(
    pt: pytest.Pytester, marker: str, expected: str
) -> None:
    pt.makepyfile(f"""
import pytest
@pytest.mark.perf_regression({marker})
def test_x():
    pass
""")
    result = pt.runpytest()  # no --perf-compare, no --perf-history
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*invalid @pytest.mark.perf_regression: {expected}*"])


def test_percent_and_fraction_markers_are_accepted(pt: pytest.Pytester) -> None:
    pt.makepyfile("""
import pytest
@pytest.mark.perf_regression(latency="25%", memory=0.5, tokens=1, memory_floor_mb=20)
def test_x():
    pass
""")
    pt.runpytest().assert_outcomes(passed=1)


def test_history_group_overrides_the_fingerprint_and_few_runs_are_said(
        rpt: pytest.Pytester) -> None:
    configure(rpt)
    from conftest import INI

    rpt.makeini(INI.format(extra="perf_history = h.db\nperf_history_group = ci-small"))
    rpt.runpytest().assert_outcomes(passed=3)
    result = rpt.runpytest("--perf-compare=history", "--perf-compare-warn")  # no timing verdicts
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([
        "*history baseline has only 1 comparable complete run in machine group 'ci-small'"
        " (5 wanted)*"])
    result = rpt.runpytest("--perf-compare=history", "--perf-compare-warn",
                           "--perf-history-group=ci-large")
    result.stdout.fnmatch_lines(["*no earlier complete run in machine group 'ci-large'*"])
    from pytest_agentperf.history import History

    with History(rpt.path / "h.db") as h:
        assert [r.machine_group for r in h.runs()] == ["ci-large", "ci-small", "ci-small"]


def test_password_in_history_url_is_a_usage_error_and_not_echoed(
        rpt: pytest.Pytester) -> None:
    result = rpt.runpytest("--perf-history=postgresql://me:s3cret@127.0.0.1:1/db")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*do not put the password in the URL*PGPASSWORD*"])
    assert "s3cret" not in result.stdout.str() + result.stderr.str()


LEVEL_SUITE = """
import json, pathlib
LEVEL = json.loads((pathlib.Path(__file__).parent / "level.json").read_text())

def test_agent(perf_record):
    for k in range(10):
        perf_record.add_latency(0.010 * LEVEL * (1 + k * 0.002))
"""


def _history_of_levels(pt: pytest.Pytester, levels: list[float]) -> None:
    """Record one run per level straight into h.db, as this machine would have."""
    from test_compare import entry

    from pytest_agentperf import __version__
    from pytest_agentperf.history import History
    from pytest_agentperf.report import build_report, environment

    env = environment(pt.path, pytest.__version__, __version__)
    with History(pt.path / "h.db") as h:
        for i, level in enumerate(levels):
            samples = [0.010 * level * (1 + k * 0.002) for k in range(10)]
            e = entry(samples, "test_level.py::test_agent")
            r = build_report(tests=[e], env={**env, "git_commit": f"{i:02d}" + "a" * 38},
                             complete=True)
            h.record_run(r)


def test_history_baseline_starts_at_the_last_change_point(pt: pytest.Pytester) -> None:
    pt.makepyfile(test_level=LEVEL_SUITE)
    (pt.path / "level.json").write_text("1.3")
    _history_of_levels(pt, [1.0] * 20 + [1.3] * 3)
    result = pt.runpytest("--perf-history=h.db", "--perf-compare=history",
                          "--perf-report=r.json")
    result.assert_outcomes(passed=1)  # the accepted shift is the new normal
    (test,) = read_report(pt.path / "r.json")["tests"]
    info = test["baseline"]["history"]
    assert info["runs"] == [21, 22, 23]  # not the last 5 runs: two are from before the shift
    assert info["since_change"]["run_id"] == 21
    assert info["since_change"]["git_commit"].startswith("20aaa")
    assert info["note"] == "3 comparable runs since the last change point (5 wanted)"
    assert test["baseline"]["verdict"] != "regression"
    result.stdout.fnmatch_lines([
        "*DRIFT test_level.py::test_agent: latency.p50 10.* ms -> 13.* ms (+30.0%) over 4 runs"
        " since run 21 (20aaaaaaaa), 1 change point; no single comparison*"])


def test_creeping_regression_is_named_when_no_comparison_fails(pt: pytest.Pytester) -> None:
    pt.makepyfile(test_level=LEVEL_SUITE)
    levels = [1.0] * 10 + [1.025 ** i for i in range(1, 13)]
    (pt.path / "level.json").write_text(str(1.025 ** 13))
    _history_of_levels(pt, levels)
    result = pt.runpytest("--perf-history=h.db", "--perf-compare=history",
                          "--perf-report=r.json")
    result.assert_outcomes(passed=1)  # each comparison stays within +10 %
    report = read_report(pt.path / "r.json")
    drifts = report["baseline"]["drifts"]
    assert {d["metric"] for d in drifts} >= {"latency.p50", "latency.mean"}
    p50 = next(d for d in drifts if d["metric"] == "latency.p50")
    assert p50["change"] > 0.2 and p50["nodeid"] == "test_level.py::test_agent"
    assert p50["since_run"] >= 10 and p50["change_points"] >= 1
    result.stdout.fnmatch_lines(["*DRIFT test_level.py::test_agent: latency.p50*",
                                 "*0 regressed*drifting*"])
