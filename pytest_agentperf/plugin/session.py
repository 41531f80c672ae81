"""PerfSession: the plugin object that measures tests and writes the report.

One instance per pytest session, registered in ``pytest_configure`` and reached
through ``config.stash[SESSION_KEY]``.  In a plain run it measures and reports;
under xdist the workers measure (each test's entry rides to the controller on
its teardown ``TestReport`` as the ``agentperf`` attribute) and the controller
collects and writes.  Both paths share ``pytest_runtest_logreport``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from .. import __version__
from ..budgets import (
    BudgetError,
    check_budget,
    format_violations,
    split_options,
    validate_budget,
    validate_scopes,
)
from ..llm.probe import LLMProbe
from ..measurement.memory import MemoryMethod, MemoryProbe, ProcFiles
from ..record import TestRecord
from ..report import ReportError, build_report, plain_json, utc_now, write_report
from .diagnostics import CallDiagnostics
from .environment import session_environment
from .limits import (
    ENFORCE_KEY,
    HARD_SCOPE_KEY,
    budget_exception,
    check_enforce,
    hard_scope,
    hard_violations,
    where_raised,
)
from .runs import RUN_KEY
from .terminal import safe_text

if TYPE_CHECKING:
    from ..llm.cost import ModelPrice

__all__ = ["SESSION_KEY", "PerfSession", "Settings", "ensure_record"]

#: seconds between snapshot writes of an in-progress report
SNAPSHOT_INTERVAL = 1.0
#: the first finished tests each get a snapshot (small, cheap), so quick tests
#: before a long one that is killed are not lost to the interval
EARLY_SNAPSHOTS = 10
MARKER = "perf_budget"


@dataclass
class Settings:
    report_path: Path | None
    memory_method: MemoryMethod
    cprofile: bool
    default_budget: dict[str, float] = field(default_factory=dict)
    html_path: Path | None = None
    #: where the Markdown job summary is appended (--perf-markdown or $GITHUB_STEP_SUMMARY)
    markdown_path: Path | None = None
    #: model -> price (USD per million tokens), from the perf_llm_prices ini option
    llm_prices: dict[str, ModelPrice] = field(default_factory=dict)
    #: ``perf_llm_prices = auto``: the pricer over genai-prices (the table overrides it)
    llm_pricer: Any = None


class PerfSession:
    def __init__(self, config: pytest.Config, settings: Settings, disabled: bool = False) -> None:
        self.config = config
        #: --perf-disable: the session is not a registered plugin; fixtures get bare records
        self.disabled = disabled
        self.settings = settings
        self.cprofile = settings.cprofile
        self.is_worker = hasattr(config, "workerinput")
        self.entries: dict[str, dict[str, Any]] = {}
        self.started: str | None = None
        self.interrupted = False
        self.incomplete_reason: str | None = None
        self._env: dict[str, Any] | None = None
        self._last_snapshot = 0.0
        self.written = False
        #: each test's LLM calls (SDKs and OpenTelemetry, patched once imported)
        self.llm = LLMProbe(settings.llm_prices, settings.llm_pricer)
        if not disabled:  # --perf-disable: no capture, nothing patched
            self.llm.install()
        #: /proc/self files opened once (a test, a run of perf_runs, reads them with pread)
        self._proc: ProcFiles | None = None
        if settings.memory_method == "hwm":
            self._proc = ProcFiles()
        elif settings.memory_method == "faults":
            try:
                self._proc = ProcFiles(clear_refs=False)
            except OSError:  # each probe opens the files itself
                self._proc = None
        self._snapshot_interval = SNAPSHOT_INTERVAL
        #: entries added so far / when the last write was built: unequal = unwritten tests
        self._added = 0
        self._written_added = 0
        #: why a write failed (snapshot or final), for the terminal and the report
        self.write_errors: list[str] = []
        #: a pytest_agentperf_report hook (or the like) failed: goes into the report
        self.plugin_errors: list[str] = []
        #: the SIGTERM handler that was there before ours (restored at unconfigure)
        self._prev_sigterm: Callable[[int, FrameType | None], Any] | int | None = None
        self._sigterm_installed = False
        #: one writer at a time (main thread, snapshot timer, SIGTERM handler)
        self._lock = threading.RLock()
        #: a measured test is in its call phase: the snapshot timer waits (its write
        #: would add memory and CPU to the test's figures)
        self._measuring = False
        self._timer: _SnapshotTimer | None = None
        #: the timer is wanted (a report path); stopped before a fork, restarted after
        self._timer_wanted = False
        self._unannounced: list[str] = []

    # -- budgets ---------------------------------------------------------------
    def resolve_budget(self, item: pytest.Item) -> dict[str, float] | None:
        """Merge the item's perf_budget markers (closest wins per key) over the defaults."""
        merged: dict[str, float] = {}
        found = False
        enforce: str | None = None
        source = f"invalid @pytest.mark.{MARKER}"
        for mark in item.iter_markers(MARKER):
            found = True
            limits, options = split_options(
                {k: v for k, v in mark.kwargs.items() if k != "scopes"}, source)
            enforce = enforce or options.get("enforce")
            for key, value in validate_budget(limits, source, tuple(mark.args)).items():
                merged.setdefault(key, value)
        for key, value in self.settings.default_budget.items():
            merged.setdefault(key, value)
        if enforce is not None:
            check_enforce(enforce, merged, self.llm.pricer, source)
            item.stash[ENFORCE_KEY] = enforce
        if not merged and not found:
            return None
        return merged

    def resolve_scopes(self, item: pytest.Item) -> dict[str, dict[str, float]]:
        """The item's scoped budgets (``perf_budget(scopes=...)``): closest marker wins per
        scope and key."""
        merged: dict[str, dict[str, float]] = {}
        for mark in item.iter_markers(MARKER):
            if "scopes" not in mark.kwargs:
                continue
            source = f"invalid @pytest.mark.{MARKER}"
            for name, limits in validate_scopes(mark.kwargs["scopes"], source).items():
                scope = merged.setdefault(name, {})
                for key, value in limits.items():
                    scope.setdefault(key, value)
        return merged

    def start_record(self, item: pytest.Item) -> TestRecord:
        """Create the item's record; a malformed budget errors the test."""
        record = TestRecord(item.nodeid)
        item.stash[RECORD_KEY] = record
        if self.disabled:
            return record
        if self.llm.pricer is not None:
            from ..llm.limits import from_call_pricer

            record.llm_pricer = from_call_pricer(self.llm.pricer)
        runs = item.stash.get(RUN_KEY, None)
        if runs is not None and runs.budget is not None:  # resolved in the first run
            budget, scopes = runs.budget
            record.budget = None if budget is None else dict(budget)
            record.scopes = scopes
            return record
        error = None
        try:
            record.budget = self.resolve_budget(item)
            record.scopes = self.resolve_scopes(item)
        except BudgetError as exc:
            error = str(exc)
        if error is not None:
            pytest.fail(error, pytrace=False)
        if runs is not None:
            runs.budget = (record.budget, record.scopes)
        return record

    # -- per-test measurement (runs where the test runs) --------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # A plain impl, not a wrapper: raising here (bad marker) stops the
        # fixtures from being set up while every wrapper still completes.
        if RUN_KEY in item.stash or item.get_closest_marker(MARKER) is not None or (
                "perf_record" in getattr(item, "fixturenames", ())):
            self.start_record(item)

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        __tracebackhide__ = True  # a test's failure is not the plugin's frame
        record = item.stash.get(RECORD_KEY, None)
        probes: list[Probe] = []
        if record is not None:
            if self._timer_wanted:
                with self._lock:  # waits for a timer snapshot under way (a few ms at most)
                    self._measuring = True
            if self.settings.memory_method != "off":
                probes.append(_MemoryStep(MemoryProbe(self.settings.memory_method,
                                                      proc=self._proc)))
            probes.append(CallDiagnostics(item, record))
        probes.append(self.llm)  # every test: one that calls an LLM is measured anyway
        self.llm.limits = (hard_scope(item, record.budget, self.llm.pricer)
                           if record is not None and record.budget else None)
        for probe in probes:
            probe.start()
        cpu0 = time.process_time_ns()
        t0 = time.perf_counter_ns()
        failed = False
        interrupted = False
        try:
            return (yield)
        except KeyboardInterrupt:
            failed = interrupted = True
            raise
        except BaseException:
            failed = True
            raise
        finally:
            t1 = time.perf_counter_ns()
            cpu1 = time.process_time_ns()
            self._measuring = False
            record = item.stash.get(RECORD_KEY, None)
            if record is None and self.llm.called:
                # a test that calls an LLM is measured even without a marker or fixture
                record = TestRecord(item.nodeid, self.resolve_budget(item))
                item.stash[RECORD_KEY] = record
            for probe in reversed(probes):
                probe.stop(record, failed)
            if record is not None:
                record.call_duration_s = (t1 - t0) / 1e9
                record.cpu_time_s = (cpu1 - cpu0) / 1e9
                if interrupted and not self.is_worker:
                    self._keep_interrupted(item, record)

    def _keep_interrupted(self, item: pytest.Item, record: TestRecord) -> None:
        """Ctrl-C stopped the test: pytest makes no report for it, the report keeps
        what was measured so far (a load run's partial result, ``interrupted: true``)."""
        try:
            record.run_collectors()
        except Exception as exc:
            record.add_finding("plugin_error", f"collecting measurements failed: {exc!r}")
        entry = self._entry(record)
        entry["outcome"] = "interrupted"
        self.entries[item.nodeid] = entry
        self._added += 1

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        __tracebackhide__ = True
        rep = yield
        record = item.stash.get(RECORD_KEY, None)
        if record is None:
            return rep
        phases = item.stash.setdefault(PHASES_KEY, {})
        if rep.when == "call":
            self._finish_call(item, record, rep, call.excinfo)
            if self.config.getoption("xmlpath", None) and "entry" in phases:
                from .junit import add_properties

                add_properties(item, rep, phases["entry"])
        phases[rep.when] = (rep.outcome, hasattr(rep, "wasxfail"))
        runs = item.stash.get(RUN_KEY, None)
        if rep.when == "teardown" and (runs is None or runs.final):
            entry = phases.get("entry")
            if entry is None:  # no call phase: setup failed or skipped
                entry = self._entry(record)
            entry["outcome"] = _final_outcome(phases)
            # under xdist the entry crosses to the controller: plain JSON only
            rep.agentperf = plain_json(entry) if self.is_worker else entry  # type: ignore[attr-defined]
        return rep

    def _finish_call(
        self, item: pytest.Item, record: TestRecord, rep: pytest.TestReport,
        excinfo: pytest.ExceptionInfo[BaseException] | None = None,
    ) -> None:
        problems: list[str] = []
        try:
            record.run_collectors()
        except Exception as exc:  # a fixture's data could not be read: say so, don't crash
            problems.append(f"collecting measurements failed: {exc!r}")
        try:
            item.config.hook.pytest_agentperf_test_record(item=item, record=record)
        except Exception as exc:
            problems.append(f"pytest_agentperf_test_record hook failed: {exc!r}")
        for text in problems:
            record.add_finding("plugin_error", text)
            rep.sections.append(("agentperf", text))
        runs = item.stash.get(RUN_KEY, None)
        if runs is not None:  # a repeated test: judged once, on all its runs
            pooled = runs.end_call(record, rep)
            if pooled is None:
                return
            entry = pooled
        else:
            entry = self._entry(record)
        # limits only the ini option set apply where the test has such a figure at all
        marked = {key for mark in item.iter_markers(MARKER) for key in mark.kwargs}
        violations = check_budget(record.budget or {}, entry,
                                  optional=set(self.settings.default_budget) - marked)
        if record.scopes:
            from ..scopes import check_scopes

            entry["scopes"], scoped = check_scopes(record.scopes, entry)
            violations.extend(scoped)
        scope = item.stash.get(HARD_SCOPE_KEY, None)
        if scope is not None:  # what a hard limit stopped replaces the verdict after
            entry["hard_limit"] = scope.section()
            hard = hard_violations(scope)
            stopped = {v.metric for v in hard}
            violations = [v for v in violations if v.metric not in stopped] + hard
        entry["violations"] = [v.as_dict() for v in violations]
        record.violations = entry["violations"]
        item.stash[PHASES_KEY]["entry"] = entry
        failures: list[str] = []
        raised = budget_exception(excinfo)
        if raised is not None and not any(v.note.startswith("hard limit") for v in violations):
            failures.append(raised.describe())  # a perf_record.limit block's limit
        if violations:
            message = format_violations(violations)
            for violation in violations:
                detail = (record.violation_details.get(violation.metric)
                          if violation.scope is None else None)
                if detail:
                    message += "\n" + detail
            failures.append(message)
        if raised is not None and excinfo is not None:
            where = where_raised(item, excinfo)
            if where:
                what = "stream was stopped" if raised.streamed else "LLM call was made"
                failures.append(f"the refused {what} at {where}")
        try:
            for messages in item.config.hook.pytest_agentperf_check_entry(item=item,
                                                                         entry=entry):
                failures.extend(messages)
        except Exception as exc:  # a broken check is reported, not an INTERNALERROR
            text = f"pytest_agentperf_check_entry hook failed: {exc!r}"
            record.add_finding("plugin_error", text)
            entry["findings"] = record.findings
            rep.sections.append(("agentperf", text))
        if failures:
            # operation names and finding texts come from user code: no raw escapes
            text = safe_text("\n".join(failures))
            if (rep.passed or raised is not None) and not hasattr(rep, "wasxfail"):
                # a hard limit's exception reads as the budget it broke, not a traceback
                rep.outcome = "failed"
                rep.longrepr = text
            else:
                rep.sections.append(("agentperf", text))

    def _entry(self, record: TestRecord) -> dict[str, Any]:
        return record.to_dict()

    # -- collecting (runs where the report is written) ----------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = getattr(report, "agentperf", None)
        if entry is None or report.when != "teardown" or self.is_worker:
            return
        self.entries[report.nodeid] = entry
        self._added += 1
        self._start_timer()  # after a fork stopped it
        if self.settings.report_path is not None:
            now = time.monotonic()
            if (len(self.entries) <= EARLY_SNAPSHOTS
                    or now - self._last_snapshot >= self._snapshot_interval):
                self.snapshot("session in progress")
                # a big report takes long to write: keep snapshots under ~5 % of the run
                spent = time.monotonic() - now
                self._snapshot_interval = max(SNAPSHOT_INTERVAL, 20 * spent)

    def add_crashed(self, nodeid: str) -> None:
        """The test whose xdist worker died: in the report with outcome ``crashed`` and no
        figures (the worker took them with it)."""
        entry = self._entry(TestRecord(nodeid))
        entry["outcome"] = "crashed"
        self.entries[nodeid] = entry
        self._added += 1

    def snapshot(self, reason: str, announce: bool = True) -> None:
        """Write the in-progress report; a failure is a warning, never the end of the run.

        ``announce=False`` (the timer thread) leaves the terminal line to the main
        thread's next snapshot.
        """
        with self._lock:
            try:
                self._write(complete=False, reason=reason)
            except (OSError, ReportError, TypeError, ValueError) as exc:
                self._last_snapshot = time.monotonic()  # don't retry after every test
                text = f"could not write the in-progress report: {_reason(exc)}"
                if text not in self.write_errors:
                    self.write_errors.append(text)
                    self._unannounced.append(text)
        if announce:
            tr = self.config.pluginmanager.get_plugin("terminalreporter")
            while self._unannounced:
                text = self._unannounced.pop(0)
                if tr is not None:
                    tr.write_line(f"agentperf: warning: {text} (the session goes on; the "
                                  "final report is tried again)", yellow=True)

    def _snapshot_due(self) -> bool:
        """For the timer: finished tests not yet written, the interval passed, and no
        measured test running."""
        return (self._added != self._written_added and not self._measuring
                and time.monotonic() - self._last_snapshot >= self._snapshot_interval)

    # -- report ------------------------------------------------------------------
    def env(self) -> dict[str, Any]:
        if self._env is None:
            self._env = session_environment(self.config, __version__)
        return self._env

    def report(self, complete: bool, reason: str | None) -> dict[str, Any]:
        errors = self.plugin_errors + self.write_errors
        return build_report(
            tests=list(self.entries.values()),
            env=self.env(),
            complete=complete,
            incomplete_reason=reason,
            started=self.started,
            memory_method=self.settings.memory_method,
            extra={"plugin_errors": list(errors)} if errors else None,
        )

    def _write(self, complete: bool, reason: str | None, final: bool = False) -> None:
        path, html_path = self.settings.report_path, self.settings.html_path
        markdown_path = self.settings.markdown_path
        if path is None and not (final and (html_path or markdown_path)):
            return
        added = self._added
        data = self.report(complete, reason)
        if final:
            try:
                self.config.hook.pytest_agentperf_report(config=self.config, report=data)
            except Exception as exc:  # a broken hook must not lose the report
                text = f"pytest_agentperf_report hook failed: {exc!r}"
                self.plugin_errors.append(text)
                errors = data.get("plugin_errors")
                data["plugin_errors"] = [*(errors if isinstance(errors, list) else []), text]
        if path is not None:
            write_report(path, data, durable=final)
        self._written_added = added
        self._last_snapshot = time.monotonic()
        if final and html_path is not None:
            from ..html import write_html

            try:
                trends = self.config.hook.pytest_agentperf_trends(
                    config=self.config, nodeids=[str(t["nodeid"]) for t in data["tests"]])
            except Exception as exc:  # the page is written without trend lines
                self.plugin_errors.append(f"pytest_agentperf_trends hook failed: {exc!r}")
                trends = None
            write_html(html_path, data, history=trends)
        if final and markdown_path is not None and data["tests"]:
            from ..markdown import append_summary

            append_summary(markdown_path, data)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.is_worker:
            return
        self.started = utc_now()
        if self.settings.report_path is not None:
            try:
                self._write(complete=False, reason="session in progress")
            except (OSError, ReportError) as exc:
                raise pytest.UsageError(
                    f"--perf-report: cannot write {self.settings.report_path}: {exc}"
                ) from exc
        if self.settings.report_path is not None or self.settings.html_path is not None:
            self._install_sigterm()
        if self.settings.report_path is not None:
            self._timer_wanted = True
            self._start_timer()
            if hasattr(os, "register_at_fork"):
                # a test that forks must not see our thread: Python 3.12+ warns
                # (DeprecationWarning, an error under filterwarnings=error) when a
                # multi-threaded process forks; the next finished test restarts it
                before = weakref.WeakMethod(self._stop_timer)
                os.register_at_fork(before=lambda: _call_weak(before))

    def _start_timer(self) -> None:
        if self._timer is None and self._timer_wanted:
            self._timer = _SnapshotTimer(self)
            self._timer.start()

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.stop.set()
            if timer is not threading.current_thread():
                timer.join(timeout=30)

    # -- SIGTERM (CI cancel / timeout) ------------------------------------------------
    def _install_sigterm(self) -> None:
        """Write an incomplete report on SIGTERM, then let the previous handler act."""
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            self._prev_sigterm = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._on_sigterm)
        except (ValueError, OSError, AttributeError):  # not the main interpreter / no SIGTERM
            return
        self._sigterm_installed = True

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        reason = f"terminated by signal {signal.Signals(signum).name}"
        self.incomplete_reason = reason
        if self.settings.report_path is not None:
            self.snapshot(reason)
        prev = self._prev_sigterm
        if callable(prev):
            prev(signum, frame)
        elif prev != signal.SIG_IGN:  # default (or unknown): terminate as before
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def _restore_sigterm(self) -> None:
        if self._sigterm_installed:
            self._sigterm_installed = False
            try:
                prev = self._prev_sigterm
                signal.signal(signal.SIGTERM, signal.SIG_DFL if prev is None else prev)
            except (ValueError, OSError):
                pass

    def pytest_keyboard_interrupt(self) -> None:
        self.interrupted = True

    def pytest_internalerror(self) -> None:
        self.incomplete_reason = "internal error"

    def pytest_unconfigure(self) -> None:
        self.llm.uninstall()
        self._timer_wanted = False
        self._stop_timer()
        self._restore_sigterm()
        if self._proc is not None:
            self._proc.close()

    def final_reason(self, session: pytest.Session, exitstatus: int) -> str | None:
        """Why this session's results are incomplete, or None when they are complete."""
        reason = self.incomplete_reason
        if self.interrupted or exitstatus == pytest.ExitCode.INTERRUPTED:
            reason = "interrupted"
        elif exitstatus == pytest.ExitCode.INTERNAL_ERROR:
            reason = reason or "internal error"
        elif session.shouldfail:
            reason = f"stopped early: {session.shouldfail}"
        elif session.shouldstop:
            reason = f"stopped early: {session.shouldstop}"
        return reason

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self._timer_wanted = False
        self._stop_timer()
        self._restore_sigterm()
        s = self.settings
        if self.is_worker or (s.report_path is None and s.html_path is None and
                              s.markdown_path is None):
            return
        reason = self.final_reason(session, exitstatus)
        try:
            with self._lock:
                self._write_final(reason)
            self.written = True
        except (OSError, ReportError, TypeError, ValueError) as exc:
            text = f"could not write the report: {_reason(exc)}"
            self.write_errors.append(text)
            tr = self.config.pluginmanager.get_plugin("terminalreporter")
            if tr is not None:
                tr.write_line(f"agentperf: error: {text}", red=True)
            fail_session(session)

    def _write_final(self, reason: str | None) -> None:
        """The final write; a report directory removed during the session is made again
        (it existed at start-up, where a missing one is a usage error)."""
        missing = [p.parent for p in (self.settings.report_path, self.settings.html_path)
                   if p is not None and not p.parent.exists()]
        for directory in missing:
            directory.mkdir(parents=True, exist_ok=True)
            self.write_errors.append(f"the report directory {directory} was removed during "
                                     "the session; made it again")
        self._write(complete=reason is None, reason=reason, final=True)

    # -- terminal ------------------------------------------------------------------
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.is_worker:
            return
        tr = terminalreporter
        for text in self.plugin_errors:
            tr.write_line(f"agentperf: {safe_text(text, newlines=False)}", red=True)
        if not self.entries:
            return
        from .terminal import summary_lines

        lines = summary_lines(list(self.entries.values()), verbosity=tr.config.option.verbose)
        tr.write_sep("-", f"agentperf: {len(self.entries)} measured tests")
        for text, bad in lines:
            tr.write_line(text, red=bad)
        if self.settings.report_path is not None and self.written:
            tr.write_line(f"perf report: {self.settings.report_path}")
        if self.settings.html_path is not None and self.written:
            tr.write_line(f"perf html: {self.settings.html_path}")


class _SnapshotTimer(threading.Thread):
    """Writes the in-progress report when finished tests wait longer than the interval
    (a long test after quick ones), so a SIGKILL loses at most ~1 s of finished tests.

    Never during a measured test's call phase (serial runs): the write's memory and
    CPU would count as the test's.  Under xdist the controller measures nothing.
    """

    def __init__(self, session: PerfSession) -> None:
        super().__init__(name="agentperf-snapshots", daemon=True)
        self.session = session
        self.stop = threading.Event()

    def run(self) -> None:
        session = self.session
        while not self.stop.wait(SNAPSHOT_INTERVAL / 2):
            if session._snapshot_due():
                session.snapshot("session in progress", announce=False)


class Probe(Protocol):
    """Measures one test's call phase: started before it, stopped after it (in reverse
    order), writing what it saw into the test's record (``None``: the test is not measured)."""

    def start(self) -> None: ...

    def stop(self, record: TestRecord | None, failed: bool) -> None: ...


class _MemoryStep:
    """The memory probe as a call-phase probe: peak memory into ``record.memory``."""

    __slots__ = ("probe",)

    def __init__(self, probe: MemoryProbe) -> None:
        self.probe = probe

    def start(self) -> None:
        self.probe.start()

    def stop(self, record: TestRecord | None, failed: bool) -> None:
        memory = self.probe.stop()
        if record is not None:
            record.memory = memory


def _call_weak(method: weakref.WeakMethod[Callable[[], None]]) -> None:
    bound = method()
    if bound is not None:
        bound()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        name = exc.filename
        return f"{exc.strerror}: {name}" if name else exc.strerror
    return str(exc)


def fail_session(session: pytest.Session) -> None:
    """Make a session that would exit 0 exit 1: something the user asked for (the report,
    the history row) was not written, and CI must not take the run as fine."""
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _final_outcome(phases: dict[str, Any]) -> str:
    setup = phases.get("setup", ("passed", False))
    call = phases.get("call")
    teardown = phases.get("teardown", ("passed", False))
    if setup[0] == "failed":
        outcome = "error"
    elif setup[0] == "skipped":
        outcome = "xfailed" if setup[1] else "skipped"
    elif call is None:
        outcome = "error"
    elif call[0] == "failed":
        outcome = "failed"
    elif call[0] == "skipped":
        outcome = "xfailed" if call[1] else "skipped"
    else:
        outcome = "xpassed" if call[1] else "passed"
    if teardown[0] == "failed" and outcome in ("passed", "xpassed"):
        outcome = "error"
    return outcome


SESSION_KEY = pytest.StashKey[PerfSession]()
#: per-test state lives in the item's stash, never in globals
RECORD_KEY = pytest.StashKey[TestRecord]()
PHASES_KEY = pytest.StashKey[dict[str, Any]]()


def ensure_record(item: pytest.Item) -> TestRecord:
    """The item's record, created (and its budget resolved) on first use."""
    record = item.stash.get(RECORD_KEY, None)
    if record is None:
        record = item.config.stash[SESSION_KEY].start_record(item)
    return record
