"""Nothing lost: the report survives faults (issue 15, lost or aborted runs; bad output).

Each test drives a real pytest session (in-process, or in a subprocess for signals,
crashes and xdist) into the fault and checks that the report, the HTML page and the
history row are still written, and that the session's exit status tells the truth.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from _support import by_id, read_report

QUICK = """
import pytest

@pytest.mark.perf_budget(p95=10)
@pytest.mark.parametrize("i", range(5))
def test_quick(i):
    pass
"""


def _names(report: dict) -> list[str]:
    return sorted(t["nodeid"].split("::")[-1] for t in report["tests"])


# -- snapshots that cannot be written -------------------------------------------------
def test_report_directory_removed_mid_session_warns_and_keeps_running(
        pt: pytest.Pytester) -> None:
    (pt.path / "out").mkdir()
    pt.makepyfile(
        """
        import shutil, pathlib, pytest

        @pytest.mark.perf_budget(p95=10)
        def test_a():
            pass

        @pytest.mark.perf_budget(p95=10)
        def test_b_removes_the_report_dir():
            shutil.rmtree(pathlib.Path("out"))

        @pytest.mark.perf_budget(p95=10)
        def test_c():
            pass
        """
    )
    result = pt.runpytest("--perf-report=out/r.json", "--perf-html=out/r.html")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    result.stdout.fnmatch_lines(["*agentperf: warning: could not write the in-progress report*"
                                 "session goes on*"])
    report = read_report(pt.path / "out" / "r.json")
    assert report["complete"] is True
    assert _names(report) == ["test_a", "test_b_removes_the_report_dir", "test_c"]
    assert any("was removed during the session" in e for e in report["plugin_errors"])
    assert (pt.path / "out" / "r.html").is_file()


def test_final_report_that_cannot_be_written_fails_the_session(pt: pytest.Pytester) -> None:
    (pt.path / "out").mkdir()
    pt.makepyfile(
        """
        import shutil, pathlib, pytest

        @pytest.mark.perf_budget(p95=10)
        def test_replaces_the_report_dir_with_a_file():
            shutil.rmtree(pathlib.Path("out"))
            pathlib.Path("out").write_text("not a directory")
        """
    )
    result = pt.runpytest("--perf-report=out/r.json")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    result.stdout.fnmatch_lines(["*agentperf: error: could not write the report: *"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


# -- special files ------------------------------------------------------------------------
def test_fifo_report_path_is_a_usage_error_and_stays_a_fifo(pt: pytest.Pytester) -> None:
    fifo = pt.path / "r.fifo"
    os.mkfifo(fifo)
    pt.makepyfile(QUICK)
    for option in ("--perf-report", "--perf-html"):
        result = pt.runpytest(f"{option}=r.fifo")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*{option}: *r.fifo is a FIFO, not a regular file*"])
        assert fifo.is_fifo()


def test_device_node_is_refused_without_touching_it() -> None:
    from pytest_agentperf.report import ReportError, atomic_write_text, check_writable

    with pytest.raises(ReportError, match="/dev/null is a character device"):
        check_writable(Path("/dev/null"))
    with pytest.raises(ReportError, match="character device"):
        atomic_write_text("/dev/null", "{}")
    assert Path("/dev/null").is_char_device()


def test_symlinked_report_is_written_through_to_its_target(pt: pytest.Pytester) -> None:
    (pt.path / "real").mkdir()
    (pt.path / "r.json").symlink_to(pt.path / "real" / "report.json")
    (pt.path / "r.html").symlink_to(pt.path / "real" / "page.html")
    pt.makepyfile(QUICK)
    pt.runpytest("--perf-report=r.json", "--perf-html=r.html").assert_outcomes(passed=5)
    assert (pt.path / "r.json").is_symlink() and (pt.path / "r.html").is_symlink()
    assert len(read_report(pt.path / "real" / "report.json")["tests"]) == 5
    assert "<svg" in (pt.path / "real" / "page.html").read_text()
    assert sorted(p.name for p in (pt.path / "real").iterdir()) == ["page.html", "report.json"]


def test_same_path_for_json_and_html_is_a_usage_error(pt: pytest.Pytester) -> None:
    pt.makepyfile(QUICK)
    result = pt.runpytest("--perf-report=x", "--perf-html=./x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--perf-report and --perf-html are the same file*"])


# -- hooks and odd values --------------------------------------------------------------
def test_raising_report_hook_does_not_lose_the_report(pt: pytest.Pytester) -> None:
    pt.makeconftest(
        """
        def pytest_agentperf_report(config, report):
            raise RuntimeError("boom in report hook")
        """
    )
    pt.makepyfile(QUICK)
    (pt.path / "base.json").write_text("")  # replaced below by a real baseline
    pt.runpytest("--perf-report=base.json")
    result = pt.runpytest("--perf-report=r.json", "--perf-html=r.html",
                          "--perf-compare=base.json")
    result.assert_outcomes(passed=5)
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    result.stdout.fnmatch_lines(["*agentperf: pytest_agentperf_report hook failed: "
                                 "RuntimeError('boom in report hook')*"])
    report = read_report(pt.path / "r.json")
    assert report["complete"] is True and len(report["tests"]) == 5
    assert report["plugin_errors"] == [
        "pytest_agentperf_report hook failed: RuntimeError('boom in report hook')"]
    assert report["baseline"]["source"].endswith("base.json")  # the gate's hook still ran
    assert "Plugin error: pytest_agentperf_report hook failed: RuntimeError(" in (
        pt.path / "r.html").read_text()


def test_non_finite_values_do_not_lose_report_html_or_history(pt: pytest.Pytester) -> None:
    pt.makeconftest(
        """
        def pytest_agentperf_test_record(item, record):
            record.sections["odd"] = {"nan": float("nan"), "inf": float("-inf")}
        """
    )
    pt.makepyfile(QUICK)
    result = pt.runpytest("--perf-report=r.json", "--perf-html=r.html", "--perf-history=h.db")
    result.assert_outcomes(passed=5)
    assert result.ret == pytest.ExitCode.OK
    odd = read_report(pt.path / "r.json")["tests"][0]["odd"]
    assert odd == {"nan": None, "inf": None}
    assert (pt.path / "r.html").is_file()
    with sqlite3.connect(pt.path / "h.db") as db:
        entries = [json.loads(e) for (e,) in db.execute("SELECT entry FROM tests")]
    assert len(entries) == 5 and all(e["odd"] == {"nan": None, "inf": None} for e in entries)


def test_lone_surrogates_are_sanitised_under_xdist_and_in_html(pt: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pt.makeconftest(
        """
        def pytest_agentperf_test_record(item, record):
            record.sections["odd"] = {"text": "a\\ud800b", "\\udfffkey": 1}
        """
    )
    pt.makepyfile(QUICK)
    result = pt.runpytest_subprocess("-n", "2", "--perf-report=r.json", "--perf-html=r.html")
    result.assert_outcomes(passed=5)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    report = read_report(pt.path / "r.json")
    assert len(report["tests"]) == 5
    assert report["tests"][0]["odd"] == {"text": "a\ufffdb", "\ufffdkey": 1}
    assert "a\ufffdb" in (pt.path / "r.html").read_text("utf-8")


def test_html_command_renders_a_report_holding_a_lone_surrogate(tmp_path: Path) -> None:
    from pytest_agentperf.cli import main

    report = {"schema_version": 1, "created": "2026-01-01T00:00:00Z", "complete": True,
              "environment": {}, "summary": {}, "tests": [
                  {"nodeid": "t.py::test_\ud800", "outcome": "passed"}]}
    (tmp_path / "r.json").write_text(json.dumps(report))  # ASCII JSON: "\ud800" escape
    assert main(["html", str(tmp_path / "r.json"), "-o", str(tmp_path / "r.html")]) == 0
    assert "test_\ufffd" in (tmp_path / "r.html").read_text("utf-8")


# -- signals, kills, Ctrl-C ---------------------------------------------------------------
KILLED = QUICK + """
def test_long_one_killed():
    import os, signal, time
    os.kill(os.getpid(), signal.{sig})
    time.sleep(30)
"""


def test_quick_tests_before_a_sigkilled_one_are_in_the_report(pt: pytest.Pytester) -> None:
    pt.makepyfile(KILLED.format(sig="SIGKILL"))
    result = pt.runpytest_subprocess("--perf-report=r.json")
    assert result.ret == -signal.SIGKILL
    report = read_report(pt.path / "r.json")
    assert report["complete"] is False
    assert _names(report) == [f"test_quick[{i}]" for i in range(5)]


def test_tests_finished_just_before_a_long_one_are_written_during_it(
        pt: pytest.Pytester) -> None:
    # past the first snapshots: 15 quick tests finish within the snapshot interval, then
    # a long unmeasured test runs; the timer writes them while it runs (it waits, bounded,
    # for the report to hold them, so the test does not depend on the machine's speed)
    pt.makepyfile(
        """
        import json, os, pathlib, signal, time, pytest

        @pytest.mark.perf_budget(p95=10)
        @pytest.mark.parametrize("i", range(15))
        def test_quick(i):
            pass

        def test_long_one_killed():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if len(json.loads(pathlib.Path("r.json").read_text())["tests"]) == 15:
                        break
                except ValueError:
                    pass
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = pt.runpytest_subprocess("--perf-report=r.json")
    assert result.ret == -signal.SIGKILL
    assert len(read_report(pt.path / "r.json")["tests"]) == 15


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_snapshot_timer_is_not_running_when_a_test_forks(pt: pytest.Pytester) -> None:
    # Python 3.12+ warns when a multi-threaded process forks (an error under
    # filterwarnings=error): the timer stops before a fork and restarts after the test
    pt.makepyfile(
        """
        import os, threading, pytest

        def _timer_alive():
            return any(t.name == "agentperf-snapshots" for t in threading.enumerate())

        @pytest.mark.perf_budget(p95=10)
        def test_quick():
            pass

        def test_forks():
            assert _timer_alive()
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            assert not _timer_alive()

        @pytest.mark.perf_budget(p95=10)
        def test_after():
            pass

        def test_restarted():
            assert _timer_alive()
        """
    )
    result = pt.runpytest_subprocess("--perf-report=r.json", "-W", "error::DeprecationWarning")
    result.assert_outcomes(passed=4)
    assert read_report(pt.path / "r.json")["complete"] is True


def test_sigterm_writes_an_incomplete_report_then_terminates(pt: pytest.Pytester) -> None:
    pt.makepyfile(KILLED.format(sig="SIGTERM"))
    result = pt.runpytest_subprocess("--perf-report=r.json")
    assert result.ret == -signal.SIGTERM  # terminated as before, by the signal
    report = read_report(pt.path / "r.json")
    assert report["complete"] is False
    assert report["incomplete_reason"] == "terminated by signal SIGTERM"
    assert _names(report) == [f"test_quick[{i}]" for i in range(5)]


def test_sigterm_chains_the_previous_handler(pt: pytest.Pytester) -> None:
    pt.makeconftest(
        """
        import os, signal

        def _mine(signum, frame):
            with open("chained", "w") as f:
                f.write(str(signum))
            os._exit(7)

        signal.signal(signal.SIGTERM, _mine)
        """
    )
    pt.makepyfile(KILLED.format(sig="SIGTERM"))
    result = pt.runpytest_subprocess("--perf-report=r.json")
    assert result.ret == 7
    assert (pt.path / "chained").read_text() == str(int(signal.SIGTERM))
    assert read_report(pt.path / "r.json")["incomplete_reason"] == "terminated by signal SIGTERM"


def test_sigterm_handler_is_restored_after_the_session(pt: pytest.Pytester) -> None:
    before = signal.getsignal(signal.SIGTERM)
    pt.makepyfile(QUICK)
    pt.runpytest("--perf-report=r.json").assert_outcomes(passed=5)
    assert signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_during_a_load_test_keeps_its_partial_run(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import asyncio, signal, pytest

        # An xdist worker running this suite ignores SIGINT and the subprocess inherits
        # that; a user's terminal has Python's default handler, which asyncio's runner
        # then replaces with its own when the test starts.
        signal.signal(signal.SIGINT, signal.default_int_handler)

        @pytest.mark.perf_budget(p95=10)
        def test_first():
            pass

        @pytest.mark.asyncio
        async def test_load(load_tester):
            async def request(user, req):
                if user == 0 and req == 5:
                    signal.raise_signal(signal.SIGINT)  # Ctrl-C
                await asyncio.sleep(0.001)
            await load_tester.run_load_test(request, concurrent_users=2,
                                            requests_per_user=50, ramp_up_time=0)

        def test_never():
            pass
        """
    )
    result = pt.runpytest_subprocess("--perf-report=r.json")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    report = read_report(pt.path / "r.json")
    assert report["complete"] is False and report["incomplete_reason"] == "interrupted"
    tests = by_id(report)
    assert sorted(tests) == ["test_first", "test_load"]
    load = tests["test_load"]
    assert load["outcome"] == "interrupted"
    assert report["summary"]["interrupted"] == 1
    (run,) = load["load"]["runs"]
    assert run["interrupted"] is True
    assert 0 < run["total_requests"] < 100
    assert load["latency"]["count"] == run["successful_requests"]


# -- xdist crashes and history ----------------------------------------------------------
def test_worker_crash_is_stored_in_history_as_incomplete(pt: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    from pytest_agentperf.history import History

    pt.makepyfile(QUICK + """
def test_crash():
    import os
    os._exit(3)
""")
    result = pt.runpytest_subprocess("-n", "2", "--perf-report=r.json", "--perf-history=h.db")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = read_report(pt.path / "r.json")
    assert by_id(report)["test_crash"]["outcome"] == "crashed"
    with History(pt.path / "h.db") as db:
        (run,) = db.runs()
        assert run.complete is False
        assert db.baseline_report(run.fingerprint) is None  # never a baseline


def test_history_write_failure_fails_the_session(pt: pytest.Pytester) -> None:
    (pt.path / "h.db").write_bytes(b"this is not a database" * 100)
    pt.makepyfile(QUICK)
    result = pt.runpytest("--perf-report=r.json", "--perf-history=h.db")
    result.assert_outcomes(passed=5)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*agentperf: error: could not record history (exit status 1)*"
                                 "h.db*"])
    assert read_report(pt.path / "r.json")["complete"] is True


# -- bad output -------------------------------------------------------------------------
def test_escape_sequences_from_user_code_do_not_reach_the_terminal(pt: pytest.Pytester) -> None:
    pt.makeconftest(
        """
        def pytest_agentperf_test_record(item, record):
            record.add_finding("n_plus_one", "op \\x1b]0;pwned\\x07 called 50 times\\x1b[2J")
            record.violation_details["tokens"] = "worst op: \\x1b[2Jclear"
        """
    )
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(tokens=1)
        def test_x(profiler):
            with profiler.profile_operation("\\x1b[31mred", "llm") as m:
                m.tokens_used = 5
        """
    )
    result = pt.runpytest("-v")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "\x1b" not in out and "\x07" not in out
    assert "op \\x1b]0;pwned\\x07 called 50 times\\x1b[2J" in out
    assert "worst op: \\x1b[2Jclear" in out


def test_argv_secrets_are_redacted_in_report_and_history(pt: pytest.Pytester) -> None:
    pt.makeconftest(
        """
        def pytest_addoption(parser):
            parser.addoption("--api-token", action="append", default=[])
            parser.addoption("--flag", action="store_true")
        """
    )
    pt.makepyfile(QUICK)
    test_file = next(pt.path.glob("test_*.py")).name
    pt.runpytest("--perf-report=r.json", "--api-token=s3cret-one", "--api-token",
                 "s3cret-two", "--flag", test_file, "--perf-history=h.db",
                 "-kquick").assert_outcomes(passed=5)
    argv = read_report(pt.path / "r.json")["environment"]["argv"]
    assert not any("s3cret" in a for a in argv)
    argv = [a for a in argv[1:] if not a.startswith("--basetemp=")]  # pytester's own
    assert argv == ["--perf-report=r.json", "--api-token=<redacted>", "--api-token",
                        "<redacted>", "--flag", test_file, "--perf-history=h.db", "-kquick"]
    with sqlite3.connect(pt.path / "h.db") as db:
        (env,) = db.execute("SELECT environment FROM runs").fetchone()
    assert "s3cret" not in env and "<redacted>" in env


def test_redact_argv_cases() -> None:
    from pytest_agentperf.plugin.environment import redact_argv

    assert redact_argv(["-vv", "-x", "-n", "2", "-n2", "-Xsecret", "-c", "my.ini",
                        "--token", "abc", "--perf-html", "r.html", "t.py", "--", "--x=1"],
                       ["t.py"]) == [
        "-vv", "-x", "-n", "2", "-n2", "-X<redacted>", "-c", "<redacted>", "--token",
        "<redacted>", "--perf-html", "r.html", "t.py", "--", "--x=1"]


def _baseline(tmp: Path, **extra: object) -> Path:
    report = {"schema_version": 1, "created": "2026-01-01T00:00:00Z", "complete": True,
              "environment": {}, "summary": {}, "tests": [
                  {"nodeid": "test_faults_gate.py::test_quick[0]", "outcome": "passed",
                   "latency": {"count": 1, "p50": "fast"}},
                  "not an entry"]}
    report.update(extra)
    path = tmp / "base.json"
    path.write_text(json.dumps(report))
    return path


def test_gate_warns_on_incomplete_or_malformed_baseline(pt: pytest.Pytester) -> None:
    _baseline(pt.path, complete=False, incomplete_reason="interrupted")
    pt.makepyfile(test_faults_gate=QUICK)
    result = pt.runpytest("--perf-report=r.json", "--perf-compare=base.json")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines([
        "warning: baseline *base.json is from an incomplete run (interrupted)*",
        "warning: baseline *base.json: 2 of 2 test entries have wrong types and are not "
        "compared (first: test_faults_gate.py::test_quick?0?: latency.p50 is 'fast'*",
    ])
    warnings = read_report(pt.path / "r.json")["baseline"]["baseline_warnings"]
    assert len(warnings) == 2 and "incomplete run" in warnings[0]


def test_compare_command_warns_on_incomplete_or_malformed_baseline(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_agentperf.cli import main

    base = _baseline(tmp_path, complete=False)
    new = tmp_path / "new.json"
    new.write_text(json.dumps({"schema_version": 1, "complete": True, "environment": {},
                               "tests": []}))
    main(["compare", str(base), str(new)])
    out = capsys.readouterr().out
    assert "warning: baseline is from an incomplete run" in out
    assert "2 of 2 test entries have wrong types" in out


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_is_not_touched_without_a_report(pt: pytest.Pytester) -> None:
    pt.makeconftest(
        """
        import signal

        def pytest_sessionfinish(session):
            with open("handler", "w") as f:
                f.write(repr(signal.getsignal(signal.SIGTERM)))
        """
    )
    pt.makepyfile(QUICK)
    pt.runpytest_subprocess().assert_outcomes(passed=5)
    assert "PerfSession" not in (pt.path / "handler").read_text()
