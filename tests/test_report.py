"""The JSON report: contents, schema, paths, atomicity, incomplete sessions, xdist."""

from __future__ import annotations

import json
import os
import sys

import pytest

from _support import by_id, read_report

SUITE = """
import time, pytest

@pytest.mark.perf_budget(p95=5.0, tokens=1000)
def test_agent(profiler):
    for i in range(5):
        with profiler.profile_operation("planner", "llm") as m:
            time.sleep(0.002)
            m.record_tokens(prompt=30, completion=10)
    with profiler.profile_operation("tool", "search") as m:
        m.tokens_used = 5

@pytest.mark.perf_budget(tokens=10)
def test_over_tokens(profiler):
    with profiler.profile_operation("planner", "llm") as m:
        m.tokens_used = 50

@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.perf_budget(memory_mb=500)
def test_param(n):
    time.sleep(0.01 * n)

def test_unmeasured():
    pass
"""


def test_report_contract(pt: pytest.Pytester) -> None:
    pt.makepyfile(SUITE)
    pt.runpytest("--perf-report=r.json").assert_outcomes(passed=4, failed=1)
    report = read_report(pt.path / "r.json")
    assert report["schema_version"] == 1
    assert report["complete"] is True
    assert report["created"].endswith("Z")
    env = report["environment"]
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["cpu_count"] == os.cpu_count()
    assert report["summary"] == {
        "tests": 4, "passed": 3, "failed": 1, "skipped": 0, "errors": 0, "xfailed": 0,
        "xpassed": 0, "budget_violations": 1,
    }
    tests = by_id(report)
    assert "test_unmeasured" not in tests
    agent = tests["test_agent"]
    assert agent["outcome"] == "passed"
    assert agent["latency"]["count"] == 6
    assert agent["latency"]["source"] == "profiler"
    assert agent["tokens"] == {
        "total": 205, "prompt": 150, "completion": 50, "requests": 6,
        "per_request": pytest.approx(205 / 6), "unknown_calls": 0, "cached": None,
        "reasoning": None,
    }
    ops = agent["operations"]
    assert set(ops) == {"planner:llm", "tool:search"}
    assert ops["planner:llm"]["count"] == 5
    assert ops["planner:llm"]["tokens"] == 200
    assert ops["planner:llm"]["p95_s"] >= 0.002
    assert ops["planner:llm"]["total_s"] >= 0.01
    assert agent["violations"] == []
    over = tests["test_over_tokens"]
    assert over["outcome"] == "failed"
    assert over["violations"] == [
        {"metric": "tokens", "value": 50.0, "limit": 10.0, "unit": "tokens", "count": None,
         "note": None}
    ]
    assert tests["test_param[2]"]["duration_s"] >= 0.02
    assert tests["test_param[2]"]["latency"]["p95"] >= 0.02


def test_bare_option_and_ini_choose_the_path(pt: pytest.Pytester) -> None:
    pt.makepyfile(SUITE)
    sub = pt.mkdir("sub")
    os.chdir(sub)
    pt.runpytest(str(pt.path), "--perf-report").assert_outcomes(passed=4, failed=1)
    assert read_report(pt.path / "perf-report.json")["summary"]["tests"] == 4
    pt.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        perf_report = reports/ini.json
        """
    )
    pt.mkdir("reports")
    pt.runpytest(str(pt.path)).assert_outcomes(passed=4, failed=1)
    assert read_report(pt.path / "reports" / "ini.json")["complete"]


def test_unwritable_path_is_a_usage_error_at_start(pt: pytest.Pytester) -> None:
    pt.makepyfile("def test_x(): pass")
    result = pt.runpytest("--perf-report=missing/dir/r.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--perf-report: cannot write report *r.json: directory "
                                 "*missing/dir does not exist*"])
    result = pt.runpytest("--perf-report", "test_unwritable_path_is_a_usage_error_at_start.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*looks like a test path*--perf-report=PATH*"])


def test_interrupted_session_leaves_incomplete_valid_report(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(p95=1)
        def test_first():
            pass

        def test_ctrl_c():
            raise KeyboardInterrupt

        @pytest.mark.perf_budget(p95=1)
        def test_never():
            pass
        """
    )
    reprec = pt.inline_run("--perf-report=r.json", no_reraise_ctrlc=True)
    assert reprec.ret == pytest.ExitCode.INTERRUPTED
    report = read_report(pt.path / "r.json")
    assert report["complete"] is False
    assert report["incomplete_reason"] == "interrupted"
    assert [t["nodeid"].split("::")[1] for t in report["tests"]] == ["test_first"]


def test_maxfail_stop_is_incomplete(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(max=0.0000001)
        def test_a():
            sum(range(10000))

        @pytest.mark.perf_budget(p95=1)
        def test_b():
            pass
        """
    )
    pt.runpytest("-x", "--perf-report=r.json").assert_outcomes(failed=1)
    report = read_report(pt.path / "r.json")
    assert report["complete"] is False
    assert report["incomplete_reason"].startswith("stopped early")


def test_crashed_session_leaves_incomplete_valid_report(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import os, pytest

        @pytest.mark.perf_budget(p95=1)
        def test_first():
            pass

        def test_crash():
            os._exit(3)
        """
    )
    result = pt.runpytest_subprocess("--perf-report=r.json")
    assert result.ret == 3
    report = read_report(pt.path / "r.json")
    assert report["complete"] is False
    assert report["incomplete_reason"] == "session in progress"


def test_report_is_replaced_atomically(pt: pytest.Pytester) -> None:
    from pytest_agentperf.report import write_report

    target = pt.path / "r.json"
    write_report(target, {"schema_version": 1, "tests": [], "n": 1})
    write_report(target, {"schema_version": 1, "tests": [], "n": 2})
    assert json.loads(target.read_text())["n"] == 2
    assert sorted(p.name for p in pt.path.iterdir()) == ["r.json", "tox.ini"]


def test_hooks_extend_records_and_report(pt: pytest.Pytester) -> None:
    pt.makeconftest(
        """
        def pytest_agentperf_test_record(item, record):
            record.sections["mine"] = {"seen": item.name}
            record.add_tokens(prompt=700, completion=400, requests=1)

        def pytest_agentperf_report(config, report):
            report["ci"] = {"job": "42"}
        """
    )
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(tokens=1000)
        def test_x():
            pass
        """
    )
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*tokens 1100 tokens > 1000 tokens*"])
    report = read_report(pt.path / "r.json")
    assert report["ci"] == {"job": "42"}
    assert report["tests"][0]["mine"] == {"seen": "test_x"}


def test_broken_hook_is_reported_not_an_internal_error(pt: pytest.Pytester) -> None:
    pt.makeconftest(
        """
        def pytest_agentperf_test_record(item, record):
            raise RuntimeError("boom")
        """
    )
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(p95=10)
        def test_x():
            pass
        """
    )
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    finding = read_report(pt.path / "r.json")["tests"][0]["findings"][0]
    assert finding["kind"] == "plugin_error"
    assert "boom" in finding["message"]


def test_check_entry_hook_judges_measured_tests(pt: pytest.Pytester) -> None:
    pt.makeconftest(
        """
        def pytest_agentperf_check_entry(item, entry):
            entry["mine"] = {"tokens_seen": entry["tokens"]["total"]}
            if item.name == "test_broken":
                raise RuntimeError("check exploded")
            return [f"too many tokens for {item.name}"] if entry["tokens"]["total"] > 5 else []
        """
    )
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(tokens=1000)
        def test_many(perf_record):
            perf_record.add_tokens(10)

        @pytest.mark.perf_budget(tokens=1000)
        def test_few(perf_record):
            perf_record.add_tokens(1)

        @pytest.mark.perf_budget(tokens=1000)
        def test_broken(perf_record):
            perf_record.add_tokens(1)

        def test_unmeasured():
            pass
        """
    )
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*too many tokens for test_many*"])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    tests = by_id(read_report(pt.path / "r.json"))
    assert tests["test_many"]["mine"] == {
        "tokens_seen": 10}
    broken = tests["test_broken"]
    assert [f["kind"] for f in broken["findings"]] == ["plugin_error"]
    assert "check exploded" in broken["findings"][0]["message"]
    assert len(tests) == 3  # a test without marker or fixture is not judged


def test_trends_hook_feeds_the_html_page(pt: pytest.Pytester) -> None:
    pt.makeconftest(
        """
        def pytest_agentperf_trends(config, nodeids):
            return {n: [{"created": f"2026-01-0{i}T00:00:00Z", "p95": 0.01 * i,
                         "peak_mb": None, "tokens": None, "changes": []}
                        for i in (1, 2, 3)] for n in nodeids}
        """
    )
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(p95=10)
        def test_x(perf_record):
            perf_record.add_latency(0.01)
        """
    )
    pt.runpytest("--perf-html=r.html").assert_outcomes(passed=1)
    assert "History (3 runs, 2026-01-01" in (pt.path / "r.html").read_text()


def _comparable(report: dict) -> list[tuple]:
    return sorted(
        (t["nodeid"], t["outcome"], t["latency"]["count"], t["tokens"]["total"],
         tuple(sorted(t["operations"])), tuple(v["metric"] for v in t["violations"]),
         t["budget"] and tuple(sorted(t["budget"].items())))
        for t in report["tests"]
    )


def test_xdist_controller_writes_the_same_report_as_a_serial_run(pt: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pt.makepyfile(SUITE)
    pt.runpytest_subprocess("--perf-report=serial.json").assert_outcomes(passed=4, failed=1)
    pt.runpytest_subprocess("-n", "2", "--perf-report=xdist.json").assert_outcomes(
        passed=4, failed=1)
    serial = read_report(pt.path / "serial.json")
    dist = read_report(pt.path / "xdist.json")
    assert _comparable(serial) == _comparable(dist)
    assert serial["summary"] == dist["summary"]
    assert dist["complete"] is True


def test_terminal_summary_lists_measured_tests(pt: pytest.Pytester) -> None:
    pt.makepyfile(SUITE)
    result = pt.runpytest()
    result.stdout.fnmatch_lines([
        "*- agentperf: 4 measured tests -*",
        "*test_over_tokens *p95 *tokens *50  over budget: tokens",
        "*test_agent *p95 *(n=6)*peak *MiB  tokens *205  passed",
    ])
    quiet = pt.runpytest("-q")
    quiet.stdout.fnmatch_lines(["*test_over_tokens*over budget: tokens", "3 within budget, "
                                "1 over budget"])


def test_xdist_worker_crash_marks_the_report_incomplete(pt: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pt.makepyfile(
        """
        import os, pytest

        @pytest.mark.perf_budget(p95=1)
        def test_fine():
            pass

        def test_crash():
            os._exit(3)
        """
    )
    result = pt.runpytest_subprocess("-n", "2", "--perf-report=r.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = read_report(pt.path / "r.json")
    assert report["complete"] is False
    assert report["incomplete_reason"].startswith("worker crashed while running")
    # the crashed test is kept (5 entries for 6 results was the bug), with no figures
    assert sorted((t["nodeid"].split("::")[1], t["outcome"]) for t in report["tests"]) == [
        ("test_crash", "crashed"), ("test_fine", "passed")]
    assert report["summary"]["crashed"] == 1


def test_html_report_is_written_beside_the_json(pt: pytest.Pytester) -> None:
    pt.makepyfile(SUITE)
    result = pt.runpytest("--perf-report=r.json", "--perf-html=r.html")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["perf html: *r.html"])
    page = (pt.path / "r.html").read_text()
    assert "test_over_tokens" in page and "<svg" in page
    assert oct((pt.path / "r.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    bad = pt.runpytest("--perf-html=nowhere/r.html")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--perf-html: cannot write report*nowhere*"])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_odd_section_values_do_not_lose_the_report(pt: pytest.Pytester) -> None:
    pt.makeconftest(
        """
        def pytest_agentperf_test_record(item, record):
            record.sections["odd"] = {"obj": object(), "nan": float("nan"), "inf": float("inf")}
        """
    )
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(p95=10)
        def test_x():
            pass
        """
    )
    pytest.importorskip("xdist")
    for args in ((), ("-n", "1")):
        result = pt.runpytest_subprocess("--perf-report=r.json", *args)
        result.assert_outcomes(passed=1)
        odd = read_report(pt.path / "r.json")["tests"][0]["odd"]
        assert odd["obj"].startswith("<object object")
        assert odd["nan"] is None and odd["inf"] is None


def test_environment_is_read_once_per_session_not_per_worker(
        pt: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    git = shutil.which("git")
    if git is None:
        pytest.skip("needs git")  # a CI machine has it: .ci/run installs it
    bindir = pt.path / "bin"
    bindir.mkdir()
    log = pt.path / "git.log"
    fake = bindir / "git"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {git} "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    pt.makepyfile(test_env="""
        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_x(perf_record, i):
            perf_record.add_latency(0.01)
    """)
    pt.runpytest_subprocess("--perf-report=base.json").assert_outcomes(passed=4)
    log.unlink()
    pt.runpytest_subprocess("-n", "2", "--perf-report=r.json",
                            "--perf-compare=base.json").assert_outcomes(passed=4)
    # one `git rev-parse HEAD` for the whole session: not one per worker, nor one for the
    # report and another for the regression gate (pytest-benchmark, installed here, asks
    # `rev-parse --git-dir` in every process: not ours)
    ours = [line for line in log.read_text().splitlines() if "--git-dir" not in line]
    assert ours == ["rev-parse HEAD"]
    report = read_report(pt.path / "r.json")
    assert report["environment"] == read_report(pt.path / "base.json")["environment"] | {
        "argv": report["environment"]["argv"]}
