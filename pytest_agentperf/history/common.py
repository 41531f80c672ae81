"""What both history stores share: the schema and its migrations, the rows a run becomes,
the queries, baselines and JSON-lines export.

A store (:class:`HistoryStore`) holds

* ``runs``: when (UTC), git commit and branch, the machine *fingerprint* (a hash
  of what makes two runs comparable: OS, CPU model, cores, memory class, Python,
  plugin version — never the hostname), the *machine group* runs are compared
  within (the fingerprint, or a name given with ``--perf-history-group``),
  whether the run was complete, its summary and environment;
* ``tests``: per run and test, the headline figures (p50, p95, mean, count, peak
  memory, tokens) as columns for queries, and the whole report entry as JSON
  (with its bounded raw samples) for baselines.

The schema has a version; :data:`MIGRATIONS` brings any older store forward,
one transaction per step, and a store newer than this code is a clear error.
The SQL is written once with ``?`` placeholders and ``{runs}``/``{tests}``/type
names that each store fills in.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from ..report import SCHEMA_VERSION, json_safe, utc_now
from ..reportdata import finite_at

__all__ = [
    "DEFAULT_BASELINE_RUNS",
    "DEFAULT_HISTORY_PATH",
    "MIGRATIONS",
    "STORE_VERSION",
    "EmptyHistoryError",
    "HistoryError",
    "HistoryStore",
    "RunInfo",
    "TrendPoint",
    "fingerprint",
    "finite_samples",
    "git_branch",
]

#: Where ``--perf-history`` and the CLI look by default (relative to the rootdir / cwd).
DEFAULT_HISTORY_PATH = Path(".agentperf") / "history.db"
#: How many recent runs a history baseline pools.
DEFAULT_BASELINE_RUNS = 5

#: Forward migrations: ``MIGRATIONS[v]`` takes a store from version ``v`` to ``v + 1``.
#: ``{pk}``, ``{real}``, ``{runs}``, ``{tests}`` are filled in by each store.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 0 -> 1: the first schema
        "CREATE TABLE IF NOT EXISTS {runs} ("
        " id {pk}, created TEXT NOT NULL, git_commit TEXT, git_branch TEXT,"
        " fingerprint TEXT NOT NULL, python TEXT, machine TEXT, platform TEXT,"
        " cpu_count INTEGER, complete INTEGER NOT NULL, summary TEXT NOT NULL,"
        " environment TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS {runs}_fingerprint ON {runs} (fingerprint, id)",
        "CREATE TABLE IF NOT EXISTS {tests} ("
        " run_id {bigint} NOT NULL REFERENCES {runs} (id) ON DELETE CASCADE,"
        " nodeid TEXT NOT NULL, outcome TEXT, p50 {real}, p95 {real}, mean {real},"
        " count INTEGER, peak_mb {real}, tokens {bigint}, entry TEXT NOT NULL,"
        " PRIMARY KEY (run_id, nodeid))",
        "CREATE INDEX IF NOT EXISTS {tests}_nodeid ON {tests} (nodeid, run_id)",
    ),
    (  # 1 -> 2: runs are compared within a machine group (fingerprint or a given name)
        "ALTER TABLE {runs} ADD COLUMN machine_group TEXT",
        "UPDATE {runs} SET machine_group = fingerprint",
        "CREATE INDEX IF NOT EXISTS {runs}_group ON {runs} (machine_group, id)",
    ),
)
#: The schema version this code writes and reads.
STORE_VERSION = len(MIGRATIONS)


class HistoryError(Exception):
    """The history store cannot be opened, read or written; names the store."""


class EmptyHistoryError(HistoryError):
    """A store opened read-only holds no history yet (no schema)."""


_FINGERPRINT_FIELDS = ("os", "machine", "cpu_model", "cpu_count", "memory_gb",
                       "implementation", "python", "agentperf")


def fingerprint(env: Mapping[str, Any]) -> str:
    """A short stable hash of what makes two runs comparable: OS, CPU architecture and
    model, cores, memory class, Python (major.minor) and plugin version.

    Never the hostname or the kernel build, which change on every ephemeral CI runner of
    one class.  Reports older than these fields hash what they have.
    """
    values = []
    for key in _FINGERPRINT_FIELDS:
        value = env.get(key)
        if key == "python" and isinstance(value, str):
            value = ".".join(value.split(".")[:2])
        values.append(value)
    data = json.dumps(values, default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:16]


def git_branch(cwd: str | os.PathLike[str]) -> str | None:
    """The current git branch of ``cwd`` (None outside git or when detached)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=cwd, capture_output=True,
            text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    branch = out.stdout.strip()
    return branch if out.returncode == 0 and branch and branch != "HEAD" else None


@dataclass(frozen=True)
class RunInfo:
    id: int
    created: str
    git_commit: str | None
    git_branch: str | None
    fingerprint: str
    complete: bool
    tests: int
    failed: int
    machine_group: str | None = None


@dataclass(frozen=True)
class TrendPoint:
    run_id: int
    created: str
    git_commit: str | None
    outcome: str | None
    p50: float | None
    p95: float | None
    mean: float | None
    count: int | None
    peak_mb: float | None
    tokens: int | None




def finite_samples(text: Any) -> list[float]:
    """The finite numbers of a list of samples, or of one given as JSON text (anything
    else: none)."""
    try:
        values = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return []
    if not isinstance(values, list):
        return []
    return [float(v) for v in values
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


#: Columns of a run row, in the order :func:`run_row` gives them.
RUN_COLUMNS = ("created", "git_commit", "git_branch", "fingerprint", "machine_group",
               "python", "machine", "platform", "cpu_count", "complete", "summary",
               "environment")
#: Columns of a test row after ``run_id``, in the order :func:`test_rows` gives them.
TEST_COLUMNS = ("nodeid", "outcome", "p50", "p95", "mean", "count", "peak_mb", "tokens",
                "entry")


def run_row(report: Mapping[str, Any], branch: str | None,
            group: str | None) -> tuple[Any, ...]:
    """The ``runs`` row of a report (see :data:`RUN_COLUMNS`)."""
    env = report.get("environment")
    env = env if isinstance(env, Mapping) else {}
    tests = [t for t in report.get("tests", []) if isinstance(t, Mapping)]
    summary = dict(report.get("summary") or {})
    summary.setdefault("tests", len(tests))
    summary.setdefault("failed", sum(1 for t in tests if t.get("outcome") == "failed"))
    if not report.get("complete") and report.get("incomplete_reason"):
        summary.setdefault("incomplete_reason", report.get("incomplete_reason"))
    fp = fingerprint(env)
    return (str(report.get("created") or utc_now()), env.get("git_commit"), branch, fp,
            group or fp, env.get("python"), env.get("machine"), env.get("platform"),
            env.get("cpu_count"), int(bool(report.get("complete"))), _dumps(summary),
            _dumps(dict(env)))


def test_rows(report: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The ``tests`` rows of a report (see :data:`TEST_COLUMNS`), one per test id."""
    rows: dict[str, tuple[Any, ...]] = {}
    # NaN/infinities become null, lone surrogates U+FFFD: what the report file holds
    for t in json_safe(list(report.get("tests", []))):
        if not isinstance(t, Mapping):
            continue
        entry = {k: v for k, v in t.items() if k != "baseline"}
        nodeid = str(t.get("nodeid"))
        rows[nodeid] = (
            nodeid, t.get("outcome"), finite_at(t, "latency", "p50"),
            finite_at(t, "latency", "p95"),
            finite_at(t, "latency", "mean"), finite_at(t, "latency", "count"),
            finite_at(t, "memory", "peak_mb"), finite_at(t, "tokens", "total"),
            json.dumps(entry, separators=(",", ":"), allow_nan=False, default=str),
        )
    return list(rows.values())


class HistoryStore:
    """A history store: SQLite (:mod:`.sqlite`) or PostgreSQL (:mod:`.postgres`).

    Use as a context manager, or call :meth:`close`.  Subclasses provide
    :meth:`_query`, :meth:`_insert_run` and :meth:`close`; everything else is
    written once here.  ``name`` is what messages show (never a password).
    """

    name: str
    readonly: bool = False
    runs_table = "runs"
    tests_table = "tests"
    #: SQL for a test row's ``latency.samples`` (the report entry's raw samples) as JSON text
    samples_sql = "json_extract(t.entry, '$.latency.samples')"

    # -- provided by each store ----------------------------------------------------------
    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _insert_run(self, run: tuple[Any, ...], tests: list[tuple[Any, ...]]) -> int:
        """Insert one run and its tests in one transaction; the new run's id."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _sql(self, sql: str) -> str:
        return sql.format(runs=self.runs_table, tests=self.tests_table)

    def _check_version(self, version: int) -> None:
        if version > STORE_VERSION:
            from .. import __version__

            raise HistoryError(
                f"history database {self.name} has schema version {version}, newer than "
                f"this pytest-agentperf {__version__} knows (version {STORE_VERSION}): "
                "upgrade pytest-agentperf to use it")
        if self.readonly and version == 0:
            raise EmptyHistoryError(f"history database {self.name} holds no history yet")
        if self.readonly and version < STORE_VERSION:
            raise HistoryError(
                f"history database {self.name} has schema version {version}, older than "
                f"version {STORE_VERSION}, and is opened read-only: record one run into it "
                "(pytest --perf-history=...) to upgrade it")

    # -- writing ---------------------------------------------------------------------------
    def record_run(self, report: Mapping[str, Any], *, branch: str | None = None,
                   group: str | None = None) -> int:
        """Append a run (a report dict) in one transaction; returns the run id.

        ``group`` names the machine group the run is compared within (default: its
        fingerprint).  Incomplete runs are stored too, marked incomplete; baselines
        skip them.
        """
        if self.readonly:
            raise HistoryError(f"history database {self.name} is open read-only")
        return self._insert_run(run_row(report, branch, group), test_rows(report))

    # -- reading ---------------------------------------------------------------------------
    def runs(self, limit: int = 20, fp: str | None = None, complete_only: bool = False,
             group: str | None = None) -> list[RunInfo]:
        """The most recent runs, newest first (optionally of one fingerprint or group)."""
        where: list[str] = []
        params: list[Any] = []
        if fp is not None:
            where.append("fingerprint = ?")
            params.append(fp)
        if group is not None:
            where.append("machine_group = ?")
            params.append(group)
        if complete_only:
            where.append("complete = 1")
        sql = ("SELECT id, created, git_commit, git_branch, fingerprint, complete, summary, "
               "machine_group FROM {runs}" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY id DESC LIMIT ?")
        out = []
        for row in self._query(self._sql(sql), (*params, limit)):
            summary = json.loads(row[6]) if row[6] else {}
            out.append(RunInfo(int(row[0]), row[1], row[2], row[3], row[4], bool(row[5]),
                               int(summary.get("tests", 0)), int(summary.get("failed", 0)),
                               row[7]))
        return out

    def trend(self, nodeid: str, limit: int = 20, group: str | None = None,
              complete_only: bool = False) -> list[TrendPoint]:
        """A test's figures over its most recent runs, oldest first."""
        extra = (" AND r.machine_group = ?" if group is not None else "") + (
            " AND r.complete = 1" if complete_only else "")
        params: tuple[Any, ...] = (nodeid, group, limit) if group is not None else (
            nodeid, limit)
        rows = self._query(self._sql(
            "SELECT r.id, r.created, r.git_commit, t.outcome, t.p50, t.p95, t.mean, t.count, "
            "t.peak_mb, t.tokens FROM {tests} t JOIN {runs} r ON r.id = t.run_id "
            "WHERE t.nodeid = ?" + extra + " ORDER BY r.id DESC LIMIT ?"), params)
        return [TrendPoint(*row) for row in reversed(rows)]

    def trends(self, nodeids: list[str], limit: int = 20) -> dict[str, list[dict[str, Any]]]:
        """``{nodeid: [{"created", "p95", "peak_mb", "tokens", "changes"}, ...]}`` (oldest
        first) for the tests that have history: the shape the HTML report draws as trend
        lines.  ``changes`` lists the change points that begin at that run (metric,
        before, after, change, p_value); p95 change points are searched on the runs'
        samples (:func:`~.changes.metric_changes`)."""
        from .changes import metric_changes

        out: dict[str, list[dict[str, Any]]] = {}
        for nodeid in nodeids:
            points = self.trend(nodeid, limit)
            if not points:
                continue
            rows: list[dict[str, Any]] = [
                {"created": p.created, "p95": p.p95, "peak_mb": p.peak_mb, "tokens": p.tokens,
                 "run_id": p.run_id, "git_commit": p.git_commit, "changes": []}
                for p in points]
            samples = self.samples(nodeid, [p.run_id for p in points])
            runs = [samples.get(p.run_id) for p in points]
            for key in ("p95", "peak_mb", "tokens"):
                for pos, cp in metric_changes(points, key, runs):
                    rows[pos]["changes"].append(
                        {"metric": key, "before": cp.before, "after": cp.after,
                         "change": cp.change, "p_value": cp.p_value})
            out[nodeid] = rows
        return out

    def nodeids(self) -> list[str]:
        return [str(r[0]) for r in self._query(self._sql(
            "SELECT DISTINCT nodeid FROM {tests} ORDER BY 1"))]

    def entries(self, run_ids: list[int], nodeid: str | None = None
                ) -> list[tuple[int, str, dict[str, Any]]]:
        """``(run_id, nodeid, entry)`` of the given runs (of one test), oldest run first."""
        if not run_ids:
            return []
        marks = ",".join("?" * len(run_ids))
        extra = "" if nodeid is None else " AND nodeid = ?"
        rows = self._query(self._sql(
            f"SELECT run_id, nodeid, entry FROM {{tests}} WHERE run_id IN ({marks}){extra} "
            "ORDER BY run_id"), (*run_ids, *(() if nodeid is None else (nodeid,))))
        return [(int(r[0]), str(r[1]), json.loads(r[2])) for r in rows]

    def samples(self, nodeid: str, run_ids: list[int]) -> dict[int, list[float]]:
        """``{run_id: samples}``: the raw latency samples the test's report entry kept in
        each run (``latency.samples``: all of them up to the reservoir's size, then a
        uniform sample).  Runs without finite samples are left out."""
        if not run_ids:
            return {}
        marks = ",".join("?" * len(run_ids))
        rows = self._query(self._sql(
            f"SELECT t.run_id, {self.samples_sql} FROM {{tests}} t WHERE t.nodeid = ? "
            f"AND t.run_id IN ({marks})"), (nodeid, *run_ids))
        out: dict[int, list[float]] = {}
        for run_id, text in rows:
            values = finite_samples(text)
            if values:
                out[int(run_id)] = values
        return out

    def baseline_report(self, group: str, runs: int = DEFAULT_BASELINE_RUNS
                        ) -> dict[str, Any] | None:
        """A report-like dict pooling the last ``runs`` complete runs of machine group
        ``group`` (a fingerprint unless a group name was given).

        None when there is no such run.  Each test's entries are merged by
        :func:`~pytest_agentperf.merge.merge_entries` (samples pooled,
        memory values kept for the comparison).
        """
        from ..merge import merge_entries

        recent = self.runs(limit=runs, group=group, complete_only=True)
        if not recent:
            return None
        ids = [r.id for r in recent]
        grouped: dict[str, list[dict[str, Any]]] = {}
        for _, nodeid, entry in self.entries(ids):
            grouped.setdefault(nodeid, []).append(entry)
        env_row = self._query(self._sql("SELECT environment FROM {runs} WHERE id = ?"),
                              (ids[0],))
        return {
            "schema_version": SCHEMA_VERSION,
            "created": recent[0].created,
            "complete": True,
            "environment": json.loads(env_row[0][0]) if env_row else {},
            "tests": [merge_entries(group) for group in grouped.values()],
            "history": {"path": self.name, "runs": ids, "fingerprint": group,
                        "group": group, "wanted_runs": runs},
        }

    # -- export / import -------------------------------------------------------------------
    def export_lines(self) -> Iterator[str]:
        """Every run as one JSON line (oldest first): a report-like dict with the run's
        branch, group and tests, which :meth:`import_lines` records again."""
        rows = self._query(self._sql(
            "SELECT id, created, git_branch, machine_group, complete, summary, environment "
            "FROM {runs} ORDER BY id"))
        for run_id, created, branch, group, complete, summary, env in rows:
            tests = [e for _, _, e in self.entries([int(run_id)])]
            summary_d = json.loads(summary) if summary else {}
            yield json.dumps({
                "schema_version": SCHEMA_VERSION, "created": created,
                "complete": bool(complete),
                "incomplete_reason": summary_d.get("incomplete_reason"),
                "environment": json.loads(env) if env else {}, "summary": summary_d,
                "tests": tests, "history_export": {"run_id": int(run_id), "branch": branch,
                                                   "group": group}},
                separators=(",", ":"), default=str)

    def export_to(self, out: TextIO) -> int:
        n = 0
        for line in self.export_lines():
            out.write(line + "\n")
            n += 1
        return n

    def import_lines(self, lines: Iterable[str], source: str = "input") -> int:
        """Record every JSON line (as :meth:`export_lines` writes) as a run; the count."""
        n = 0
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                run = json.loads(line)
            except ValueError as exc:
                raise HistoryError(f"{source} line {number}: not JSON ({exc})") from None
            if not isinstance(run, dict) or not isinstance(run.get("tests"), list):
                raise HistoryError(f"{source} line {number}: not an exported run")
            meta = run.get("history_export") or {}
            self.record_run(run, branch=meta.get("branch"), group=meta.get("group"))
            n += 1
        return n
