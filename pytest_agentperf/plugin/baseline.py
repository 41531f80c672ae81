"""The regression gate, pytest side: options, per-test verdicts, report block, history.

Wiring (in ``plugin/__init__.py``)::

    baseline.addoption(group, parser)              # in pytest_addoption
    baseline.add_marker(config)                    # in pytest_configure, always
    baseline.register(config)                      # in pytest_configure, after the session

:func:`register` creates a :class:`RegressionPlugin` when ``--perf-compare``,
``--perf-history`` (or their ini options) are set.  The plugin loads the
baseline in every process (xdist workers judge their own tests) and implements
the ``pytest_agentperf_check_entry`` hook, which the session calls on each
measured test's entry right after the budget check, and ``pytest_agentperf_trends``
(the HTML report's trend lines, from the history database).  The plugin adds a
``baseline`` block to the report, prints a terminal section and, on the controller
only, appends the run to the history database.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .. import __version__
from ..history import DEFAULT_HISTORY_PATH, display_target, is_url
from ..report import ReportError, build_report, load_report
from ..units import fmt_change, fmt_value
from .environment import session_environment
from .terminal import safe_text

if TYPE_CHECKING:  # compare and history load only when a baseline or history is used
    from ..compare import MetricComparison, Tolerances
    from ..history.changes import HistoryBaseline


__all__ = [
    "MARKER",
    "REGRESSION_KEY",
    "RegressionPlugin",
    "RegressionSettings",
    "add_marker",
    "addoption",
    "register",
]

MARKER = "perf_regression"
HISTORY = "history"
_BARE = "\0bare"
_MARKER_KEYS = ("latency", "memory", "tokens", "memory_floor_mb")


def _tolerance_option(text: str) -> dict[str, float]:
    try:
        from ..compare import parse_tolerance_spec

        return parse_tolerance_spec(text)
    except ValueError as exc:
        raise pytest.UsageError(f"--perf-tolerance: {exc}") from None


def addoption(group: Any, parser: pytest.Parser) -> None:
    """Add the gate's command-line and ini options to ``group`` / ``parser``."""
    group.addoption(
        "--perf-compare", action="store", default=None, metavar="PATH|history",
        help="compare every measured test with a saved report (PATH) or with the recent "
        "runs on this machine in the history database ('history'); a significant change "
        "beyond the tolerance fails the test.",
    )
    group.addoption(
        "--perf-compare-warn", action="store_true", default=False,
        help="with --perf-compare: report regressions as warnings, do not fail tests.",
    )
    group.addoption(
        "--perf-history", action="store", nargs="?", const=_BARE, default=None,
        metavar="PATH|URL",
        help=f"append this run to a SQLite history database (bare: {DEFAULT_HISTORY_PATH} "
        "in the rootdir) or to a PostgreSQL database shared by CI runners "
        "(postgresql://user@host:port/db; password from PGPASSWORD or ~/.pgpass). Write "
        "--perf-history=PATH when a test path follows.",
    )
    group.addoption(
        "--perf-history-group", action="store", default=None, metavar="NAME",
        help="compare and record history within this machine group instead of the "
        "machine fingerprint (OS, CPU model, cores, memory class, Python, plugin version).",
    )
    group.addoption(
        "--perf-tolerance", action="store", type=_tolerance_option, default=None,
        metavar="SPEC",
        help="baseline tolerances, e.g. latency=10%%,memory=10%%,tokens=5%%,memory_floor=5 "
        "(memory_floor in MiB; defaults as shown); overrides the perf_tolerance ini option.",
    )
    parser.addini("perf_compare", "as --perf-compare (PATH relative to the rootdir, or "
                  "'history')", default="")
    parser.addini("perf_history", "as --perf-history=PATH|URL (a path relative to the "
                  "rootdir)", default="")
    parser.addini("perf_history_group", "as --perf-history-group", default="")
    parser.addini("perf_tolerance", "as --perf-tolerance", default="")


def add_marker(config: pytest.Config) -> None:
    """Register the ``perf_regression`` marker (always, so --strict-markers accepts it)
    and its validator (always: a bad marker errors its test even without a gate)."""
    if not config.pluginmanager.has_plugin("agentperf-regression-markers"):
        config.pluginmanager.register(MarkerValidator(), "agentperf-regression-markers")
    config.addinivalue_line(
        "markers",
        f"{MARKER}(latency=, memory=, tokens=, memory_floor_mb=): this test's baseline "
        "tolerances (a fraction, 0.25 = +25%, or '25%'; a bare number above 1 is refused; "
        "memory_floor_mb in MiB).",
    )


@dataclass(frozen=True)
class RegressionSettings:
    baseline: str | None  # "history", a path, or None
    warn_only: bool
    history_path: Path | str | None  # where this run is appended (None: not recorded)
    history_db: Path | str  # where a history baseline is read from (a path or a URL)
    tolerances: Tolerances
    group: str | None = None  # --perf-history-group (None: the machine fingerprint)

    @classmethod
    def from_config(cls, config: pytest.Config) -> RegressionSettings | None:
        """The settings, or None when neither a baseline nor a history is asked for."""
        root = config.rootpath
        baseline = config.getoption("perf_compare", None)
        if baseline is None:
            baseline = str(config.getini("perf_compare")).strip() or None
            if baseline is not None and baseline != HISTORY and not Path(baseline).is_absolute():
                baseline = str(root / baseline)
        elif baseline != HISTORY and not Path(baseline).is_absolute():
            baseline = str(config.invocation_params.dir / baseline)
        history_opt = config.getoption("perf_history", None)
        history_path: Path | str | None
        if history_opt == _BARE:
            history_path = root / DEFAULT_HISTORY_PATH
        elif history_opt is not None:
            history_path = _history_target(history_opt, config.invocation_params.dir,
                                           "--perf-history")
        else:
            ini = str(config.getini("perf_history")).strip()
            history_path = _history_target(ini, root, "perf_history ini option") if ini else None
        group = (config.getoption("perf_history_group", None)
                 or str(config.getini("perf_history_group")).strip() or None)
        warn_only = bool(config.getoption("perf_compare_warn", False))
        if baseline is None and history_path is None:
            if warn_only:
                raise pytest.UsageError("--perf-compare-warn needs --perf-compare")
            return None
        from ..compare import Tolerances, parse_tolerance_spec

        spec: dict[str, float] = {}
        ini_tol = str(config.getini("perf_tolerance")).strip()
        if ini_tol:
            try:
                spec.update(parse_tolerance_spec(ini_tol))
            except ValueError as exc:
                raise pytest.UsageError(f"perf_tolerance ini option: {exc}") from None
        spec.update(config.getoption("perf_tolerance", None) or {})
        try:
            tolerances = Tolerances().override(spec)
        except ValueError as exc:
            raise pytest.UsageError(f"--perf-tolerance: {exc}") from None
        if isinstance(history_path, Path) and history_path.is_dir():
            raise pytest.UsageError(f"--perf-history: {history_path} is a directory; give "
                                    "the database file path")
        return cls(baseline, warn_only, history_path,
                   history_path or root / DEFAULT_HISTORY_PATH, tolerances, group)


def _history_target(text: str, base: Path, source: str) -> Path | str:
    """A ``postgresql://`` URL (checked: no password in it) or a path (made absolute)."""
    if is_url(text):
        from ..history.postgres import has_password

        if has_password(text):
            raise pytest.UsageError(
                f"{source}: do not put the password in the URL {display_target(text)} (it "
                "would be kept in reports and logs); set PGPASSWORD or use ~/.pgpass")
        return text
    from .paths import option_path

    return option_path(text, base, source)


def marker_tolerances(item: pytest.Item, base: Tolerances) -> Tolerances:
    """``base`` with the item's ``perf_regression`` marker applied (closest wins).

    ``latency``, ``memory`` and ``tokens`` are relative tolerances, given the same
    way everywhere (marker, ``--perf-tolerance``, ini): a fraction ``0.25`` or a
    percentage ``"25%"``; a bare number above 1 (``5`` or ``"5"``) is refused as
    ambiguous.  ``memory_floor_mb`` is MiB.  Every error names the marker.
    """
    from ..compare import parse_fraction

    values: dict[str, float] = {}
    for mark in item.iter_markers(MARKER):
        source = f"invalid @pytest.mark.{MARKER}"
        if mark.args:
            raise ValueError(f"{source}: positional arguments {mark.args!r} are not accepted; "
                             f"write e.g. {MARKER}(latency=0.25)")
        for key, value in mark.kwargs.items():
            if key not in _MARKER_KEYS:
                raise ValueError(f"{source}: unknown key {key!r}; valid: "
                                 + ", ".join(_MARKER_KEYS))
            if key in values:
                continue
            values[key] = _marker_value(source, key, value, parse_fraction)
    try:
        return base.override(values) if values else base
    except ValueError as exc:
        raise ValueError(f"invalid @pytest.mark.{MARKER}: {exc}") from None


def _marker_value(source: str, key: str, value: object, parse_fraction: Any) -> float:
    if isinstance(value, str) and key != "memory_floor_mb":
        try:
            return float(parse_fraction(value, key))
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = None
    if number is None or not math.isfinite(number) or number < 0:
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:20]}..."
        unit = "MiB" if key == "memory_floor_mb" else "a fraction (0.25) or '25%'"
        raise ValueError(f"{source}: {key}={shown} must be a finite number >= 0 ({unit})")
    if key != "memory_floor_mb" and number > 1:
        raise ValueError(
            f"{source}: {key}={value!r} is ambiguous: write {key}='{number:g}%' for a "
            f"percentage or {key}={number / 100:g} for the fraction"
        )
    return number


class MarkerValidator:
    """Checks every ``perf_regression`` marker before the test runs, gate or no gate."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if item.get_closest_marker(MARKER) is None:
            return
        from ..compare import Tolerances

        try:
            marker_tolerances(item, Tolerances())
        except ValueError as exc:
            pytest.fail(str(exc), pytrace=False)


REGRESSION_KEY = pytest.StashKey["RegressionPlugin"]()


class RegressionPlugin:
    """Judges measured tests against the baseline; records history on the controller."""

    def __init__(self, config: pytest.Config, settings: RegressionSettings) -> None:
        self.config = config
        self.settings = settings
        self.is_worker = hasattr(config, "workerinput")
        self.env = session_environment(config, __version__)
        self.base_tests: dict[str, Mapping[str, Any]] = {}
        self.source: str | None = None
        self.notes: list[str] = []
        self.env_warnings: list[str] = []
        #: the baseline itself is doubtful (incomplete run, malformed entries)
        self.baseline_warnings: list[str] = []
        self.history_run: int | None = None
        self.history_error: str | None = None
        self.history_baseline: HistoryBaseline | None = None
        if settings.baseline is not None:
            self._load_baseline(settings.baseline)

    # -- baseline ------------------------------------------------------------------------
    def _load_baseline(self, baseline: str) -> None:
        from ..compare import baseline_warnings, environment_warnings
        from ..history import (
            DEFAULT_BASELINE_RUNS,
            EmptyHistoryError,
            HistoryError,
            fingerprint,
            open_history,
        )

        if baseline == HISTORY:
            db = self.settings.history_db
            shown = display_target(db)
            self.source = f"history {shown}"
            group = self.settings.group or fingerprint(self.env)
            what = (f"in machine group {group!r}" if self.settings.group
                    else f"on this machine (fingerprint {group})")
            runs: list[int] = []
            if is_url(db) or Path(db).is_file():
                from ..history.changes import HistoryBaseline

                try:
                    store = open_history(db, readonly=True)
                except EmptyHistoryError:
                    store = None
                except HistoryError as exc:
                    raise pytest.UsageError(f"--perf-compare=history: {exc}") from None
                if store is not None:
                    try:
                        runs = [r.id for r in store.runs(limit=DEFAULT_BASELINE_RUNS,
                                                         group=group, complete_only=True)]
                    except HistoryError as exc:
                        store.close()
                        raise pytest.UsageError(f"--perf-compare=history: {exc}") from None
                    if runs:
                        tol = self.settings.tolerances
                        self.history_baseline = HistoryBaseline(
                            store, group, runs=DEFAULT_BASELINE_RUNS,
                            tolerances={"latency": tol.latency, "memory": tol.memory,
                                        "tokens": tol.tokens})
                    else:
                        store.close()
            if not runs:
                self.notes.append(f"no earlier complete run {what} in {shown}: "
                                  "nothing to compare with yet")
                return
            if len(runs) < DEFAULT_BASELINE_RUNS:
                self.notes.append(
                    f"history baseline has only {len(runs)} comparable complete "
                    f"run{'s' if len(runs) != 1 else ''} {what} ({DEFAULT_BASELINE_RUNS} "
                    "wanted): comparisons are less reliable until more runs are recorded")
            self.source = (f"history {shown} (runs {', '.join(map(str, runs))}), per test "
                           "the runs since its last change point")
            return
        else:
            try:
                data = load_report(baseline)
            except ReportError as exc:
                raise pytest.UsageError(f"--perf-compare: {exc}") from None
            self.source = baseline
            self.env_warnings = environment_warnings(data.get("environment"), self.env)
            self.baseline_warnings = baseline_warnings(data, f"baseline {baseline}")
        from ..compare import entry_problem

        self.base_tests = {str(t["nodeid"]): t for t in data["tests"]
                           if entry_problem(t) is None}

    # -- per test (markers are checked by MarkerValidator, gate or no gate) ----------------
    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        """The session's collected entries (controller), crashed tests included."""
        from .session import SESSION_KEY

        perf = self.config.stash.get(SESSION_KEY, None)
        return perf.entries if perf is not None else {}

    def pytest_agentperf_check_entry(self, item: pytest.Item | None,
                                     entry: dict[str, Any]) -> list[str]:
        """Compare one measured test's entry with the baseline.

        Adds ``entry["baseline"]`` (verdict, status, per-metric comparisons)
        in place and returns failure messages (none in warn mode).  Calling it
        twice for the same entry does nothing the second time.
        """
        from ..compare import compare_entries

        if "baseline" in entry or self.source is None:
            return []
        tolerances = self.settings.tolerances
        if item is not None:
            try:
                tolerances = marker_tolerances(item, tolerances)
            except ValueError as exc:
                return [str(exc)]
        nodeid = str(entry.get("nodeid"))
        history_info: dict[str, Any] | None = None
        base: Mapping[str, Any] | None
        if self.history_baseline is not None:
            from ..history import HistoryError

            try:
                base, history_info = self.history_baseline.entry(nodeid, entry)
            except HistoryError as exc:
                return [f"--perf-compare=history: {exc}"]
        else:
            base = self.base_tests.get(nodeid)
        if base is None:
            entry["baseline"] = {"verdict": "inconclusive", "status": "new", "metrics": [],
                                 "note": "not in the baseline"}
            return []
        comparison = compare_entries(base, entry, tolerances)
        entry["baseline"] = comparison.as_dict()
        if history_info is not None:
            regressed = {m.metric for m in comparison.by_verdict("regression")}
            history_info["drifts"] = [d for d in history_info["drifts"]
                                      if d["metric"] not in regressed]
            entry["baseline"]["history"] = history_info
        regressions = comparison.by_verdict("regression")
        if not regressions or self.settings.warn_only:
            return []
        return [self._message(regressions)]

    def _message(self, regressions: list[MetricComparison]) -> str:
        return (f"perf regression against baseline {self.source}: "
                + "; ".join(m.describe() for m in regressions))

    # -- report (controller) ------------------------------------------------------------
    def pytest_agentperf_trends(self, config: pytest.Config, nodeids: list[str]
                                ) -> dict[str, list[dict[str, Any]]] | None:
        """Trend lines for the HTML report, when this run keeps a history database."""
        path = self.settings.history_path
        if path is None or (isinstance(path, Path) and not path.is_file()):
            return None
        from ..history import HistoryError, open_history

        try:
            with open_history(path, readonly=True) as db:
                return db.trends(nodeids)
        except HistoryError:
            return None

    def summary(self, tests: list[Mapping[str, Any]]) -> dict[str, Any]:
        """The report's top-level ``baseline`` block."""
        regressions, improvements, inconclusive, new = [], [], [], []
        drifts: list[Mapping[str, Any]] = []
        counts = {"regression": 0, "improvement": 0, "inconclusive": 0, "unchanged": 0}
        for t in tests:
            b = t.get("baseline")
            if not isinstance(b, Mapping):
                continue
            verdict = str(b.get("verdict"))
            counts[verdict] = counts.get(verdict, 0) + 1
            metrics = b.get("metrics") or []
            if b.get("status") == "new":
                new.append(t["nodeid"])
            if any(m.get("verdict") == "regression" for m in metrics):
                regressions.append({"nodeid": t["nodeid"], "metrics": [
                    m for m in metrics if m.get("verdict") == "regression"]})
            if any(m.get("verdict") == "improvement" for m in metrics):
                improvements.append({"nodeid": t["nodeid"], "metrics": [
                    m for m in metrics if m.get("verdict") == "improvement"]})
            if verdict == "inconclusive" and b.get("status") != "new":
                inconclusive.append(t["nodeid"])
            drifts += (b.get("history") or {}).get("drifts") or []
        return {
            "source": self.source,
            "mode": "warn" if self.settings.warn_only else "fail",
            "tolerances": self.settings.tolerances.as_dict(),
            "counts": counts,
            "regressions": regressions,
            "improvements": improvements,
            "inconclusive": inconclusive,
            "new": new,
            "drifts": drifts,
            "environment_warnings": self.env_warnings,
            "baseline_warnings": self.baseline_warnings,
            "notes": self.notes,
        }

    @pytest.hookimpl(tryfirst=True)  # before a user's hook that might raise
    def pytest_agentperf_report(self, config: pytest.Config, report: dict[str, Any]) -> None:
        if self.settings.baseline is not None:
            report["baseline"] = self.summary(report.get("tests", []))

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.history_baseline is not None:
            self.history_baseline.store.close()
            self.history_baseline = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        path = self.settings.history_path
        if self.is_worker or path is None:
            return
        from .session import SESSION_KEY, fail_session

        perf = self.config.stash.get(SESSION_KEY, None)
        reason = perf.final_reason(session, exitstatus) if perf is not None else None
        complete = reason is None and exitstatus in (
            pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not (
            session.shouldfail or session.shouldstop)
        # an incomplete run (interrupted, stopped early, a crashed worker) is kept in
        # the history but never pooled into a baseline
        report = build_report(tests=self.entries.values(), env=self.env, complete=complete,
                              incomplete_reason=reason or "stopped early")
        from ..history import HistoryError, git_branch, open_history

        try:
            with open_history(path) as history:
                self.history_run = history.record_run(
                    report, branch=git_branch(self.config.rootpath), group=self.settings.group)
        except HistoryError as exc:
            self.history_error = str(exc)
        except Exception as exc:  # never lose the report to a history problem
            self.history_error = f"{path}: {exc!r}"
        if self.history_error is not None:
            fail_session(session)

    # -- terminal --------------------------------------------------------------------------
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker:
            return
        tr = terminalreporter
        if self.settings.baseline is not None:
            s = self.summary(list(self.entries.values()))
            c = s["counts"]
            tr.write_sep("-", f"agentperf baseline: {self.source}")
            for note in s["notes"]:
                tr.write_line(f"note: {note}", yellow=True)
            for warning in s["environment_warnings"] + s["baseline_warnings"]:
                tr.write_line(f"warning: {safe_text(warning, newlines=False)}", yellow=True)
            for r in s["regressions"]:
                label = "REGRESSION (warning only)" if self.settings.warn_only else "REGRESSION"
                for m in r["metrics"]:
                    tr.write_line(safe_text(f"{label} {r['nodeid']}: {_describe(m)}", False),
                                  red=True)
            for r in s["improvements"]:
                for m in r["metrics"]:
                    tr.write_line(safe_text(f"improved {r['nodeid']}: {_describe(m)}", False),
                                  green=True)
            for d in s["drifts"]:
                tr.write_line(safe_text(f"DRIFT {d['nodeid']}: {_describe_drift(d)}", False),
                              yellow=True)
            for nodeid in s["inconclusive"]:
                why = _why_inconclusive(self.entries[nodeid])
                tr.write_line(safe_text(f"inconclusive {nodeid}: {why}", newlines=False))
            tr.write_line(
                f"{len(s['regressions'])} regressed, {len(s['improvements'])} improved, "
                f"{len(s['inconclusive'])} inconclusive, {c['unchanged']} unchanged, "
                f"{len(s['new'])} not in the baseline"
                + (f", {len(s['drifts'])} drifting" if s["drifts"] else ""))
        if self.history_run is not None:
            tr.write_line(f"perf history: run {self.history_run} -> "
                          f"{display_target(self.settings.history_path or '')}")
        if self.history_error is not None:
            tr.write_line(f"agentperf: error: could not record history (exit status 1): "
                          f"{safe_text(self.history_error, newlines=False)}", red=True)


def _describe(m: Mapping[str, Any]) -> str:
    """A regression/improvement line from a report entry's metric: the comparison's own
    :meth:`~pytest_agentperf.compare.MetricComparison.describe`, as the failure message."""
    from ..compare import MetricComparison

    return MetricComparison.from_dict(m).describe()


def _describe_drift(d: Mapping[str, Any]) -> str:
    """A creeping change: the level before the first upward change point -> now."""
    unit = str(d.get("unit", ""))
    since = f"run {d['since_run']}" if d.get("since_run") else "this run"
    if d.get("since_commit"):
        since += f" ({str(d['since_commit'])[:10]})"
    return (f"{d['metric']} {fmt_value(d['before'], unit)} -> {fmt_value(d['after'], unit)} "
            f"({fmt_change(d['change'])}) over {d['runs']} runs since {since}, "
            f"{d['change_points']} change point{'s' if d['change_points'] != 1 else ''}; "
            "no single comparison with the recent runs shows it")


def _why_inconclusive(entry: Mapping[str, Any]) -> str:
    b = entry.get("baseline") or {}
    notes = {str((m.get("evidence") or {}).get("note")) for m in b.get("metrics", [])
             if m.get("verdict") == "inconclusive" and (m.get("evidence") or {}).get("note")}
    return "; ".join(sorted(notes)) or "nothing comparable was measured"


def register(config: pytest.Config) -> RegressionPlugin | None:
    """Create and register the plugin when the options ask for it (call after the session).

    Idempotent: a second call returns the plugin already registered.
    """
    existing = config.stash.get(REGRESSION_KEY, None)
    if existing is not None:
        return existing
    settings = RegressionSettings.from_config(config)
    if settings is None:
        return None
    plugin = RegressionPlugin(config, settings)
    config.stash[REGRESSION_KEY] = plugin
    config.pluginmanager.register(plugin, "agentperf-regression")
    return plugin
