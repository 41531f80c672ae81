"""Run history in SQLite: every run's per-test figures, baselines from recent runs, trends.

One database file (default ``.agentperf/history.db``) holds

* ``runs``: when (UTC), git commit and branch, the machine *fingerprint* (a
  hash of platform, CPU architecture, Python and CPU count), whether the run
  was complete, its summary and environment;
* ``tests``: per run and test, the headline figures (p50, p95, mean, count,
  peak memory, tokens) as columns for queries, and the whole report entry as
  JSON (with its bounded raw samples) for baselines.

Several sessions may write at once: the database runs in WAL mode, each run
is written in one ``BEGIN IMMEDIATE`` transaction, and a busy timeout makes a
writer wait for the other instead of failing.  A history *baseline* is a
report-like dict pooling the recent complete runs on the same fingerprint
(samples pooled by :func:`pytest_agentperf.merge.merge_entries`), so
:mod:`pytest_agentperf.compare` reads it like a saved report.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from .report import SCHEMA_VERSION, json_safe, utc_now

__all__ = [
    "DEFAULT_BASELINE_RUNS",
    "DEFAULT_HISTORY_PATH",
    "History",
    "HistoryError",
    "RunInfo",
    "TrendPoint",
    "fingerprint",
    "git_branch",
]

#: Where ``--perf-history`` and the CLI look by default (relative to the rootdir / cwd).
DEFAULT_HISTORY_PATH = Path(".agentperf") / "history.db"
#: How many recent runs a history baseline pools.
DEFAULT_BASELINE_RUNS = 5
_DB_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    git_commit TEXT,
    git_branch TEXT,
    fingerprint TEXT NOT NULL,
    python TEXT,
    machine TEXT,
    platform TEXT,
    cpu_count INTEGER,
    complete INTEGER NOT NULL,
    summary TEXT NOT NULL,
    environment TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_fingerprint ON runs (fingerprint, id);
CREATE TABLE IF NOT EXISTS tests (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    nodeid TEXT NOT NULL,
    outcome TEXT,
    p50 REAL,
    p95 REAL,
    mean REAL,
    count INTEGER,
    peak_mb REAL,
    tokens INTEGER,
    entry TEXT NOT NULL,
    PRIMARY KEY (run_id, nodeid)
);
CREATE INDEX IF NOT EXISTS tests_nodeid ON tests (nodeid, run_id);
"""


class HistoryError(Exception):
    """The history database cannot be opened, read or written; names the file."""


_FINGERPRINT_FIELDS = ("platform", "machine", "implementation", "python", "cpu_count")


def fingerprint(env: Mapping[str, Any]) -> str:
    """A short stable hash of platform, CPU architecture, Python and CPU count."""
    data = json.dumps([env.get(k) for k in _FINGERPRINT_FIELDS], default=str)
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


def _num(node: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node if isinstance(node, (int, float)) and not isinstance(node, bool) else None


class History:
    """A history database.  Use as a context manager, or call :meth:`close`.

    ``timeout`` is how long (seconds) a writer waits for another one.
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float = 30.0) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"cannot open history database {self.path}: {exc}") from None
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA synchronous = NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _DB_VERSION):
                raise HistoryError(
                    f"history database {self.path} has version {version}; this "
                    f"pytest-agentperf reads version {_DB_VERSION}")
            if version == 0:  # idempotent: two first writers may both get here
                self._db.executescript(_SCHEMA)
                self._db.execute(f"PRAGMA user_version = {_DB_VERSION}")
        except sqlite3.Error as exc:
            self._db.close()
            raise HistoryError(
                f"history database {self.path} is not usable: {exc}") from None
        except HistoryError:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------
    def record_run(self, report: Mapping[str, Any], *, branch: str | None = None) -> int:
        """Append a run (a report dict) in one transaction; returns the run id."""
        env = report.get("environment")
        env = env if isinstance(env, Mapping) else {}
        created = str(report.get("created") or utc_now())
        # NaN/infinities become null, lone surrogates U+FFFD: what the report file holds
        tests = [t for t in json_safe(list(report.get("tests", []))) if isinstance(t, Mapping)]
        summary = dict(report.get("summary") or {})
        summary.setdefault("tests", len(tests))
        summary.setdefault("failed", sum(1 for t in tests if t.get("outcome") == "failed"))
        rows = []
        for t in tests:
            entry = {k: v for k, v in t.items() if k != "baseline"}
            rows.append((
                str(t.get("nodeid")), t.get("outcome"), _num(t, "latency", "p50"),
                _num(t, "latency", "p95"), _num(t, "latency", "mean"),
                _num(t, "latency", "count"), _num(t, "memory", "peak_mb"),
                _num(t, "tokens", "total"),
                json.dumps(entry, separators=(",", ":"), allow_nan=False, default=str),
            ))
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO runs (created, git_commit, git_branch, fingerprint, python, "
                    "machine, platform, cpu_count, complete, summary, environment) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (created, env.get("git_commit"), branch, fingerprint(env),
                     env.get("python"), env.get("machine"), env.get("platform"),
                     env.get("cpu_count"), int(bool(report.get("complete"))),
                     json.dumps(summary, default=str),
                     json.dumps(dict(env), default=str)),
                )
                run_id = int(cur.lastrowid or 0)
                self._db.executemany(
                    "INSERT OR REPLACE INTO tests (run_id, nodeid, outcome, p50, p95, mean, "
                    "count, peak_mb, tokens, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(run_id, *row) for row in rows],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot write history database {self.path}: {exc}") from None
        return run_id

    # -- reading ---------------------------------------------------------------------
    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot read history database {self.path}: {exc}") from None

    def runs(self, limit: int = 20, fp: str | None = None,
             complete_only: bool = False) -> list[RunInfo]:
        """The most recent runs, newest first (optionally of one fingerprint)."""
        where, params = [], []
        if fp is not None:
            where.append("fingerprint = ?")
            params.append(fp)
        if complete_only:
            where.append("complete = 1")
        sql = ("SELECT id, created, git_commit, git_branch, fingerprint, complete, summary "
               "FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY id DESC LIMIT ?")
        out = []
        for row in self._query(sql, (*params, limit)):
            summary = json.loads(row[6]) if row[6] else {}
            out.append(RunInfo(int(row[0]), row[1], row[2], row[3], row[4], bool(row[5]),
                               int(summary.get("tests", 0)), int(summary.get("failed", 0))))
        return out

    def trend(self, nodeid: str, limit: int = 20) -> list[TrendPoint]:
        """A test's figures over its most recent runs, oldest first."""
        rows = self._query(
            "SELECT r.id, r.created, r.git_commit, t.outcome, t.p50, t.p95, t.mean, t.count, "
            "t.peak_mb, t.tokens FROM tests t JOIN runs r ON r.id = t.run_id "
            "WHERE t.nodeid = ? ORDER BY r.id DESC LIMIT ?", (nodeid, limit))
        return [TrendPoint(*row) for row in reversed(rows)]

    def trends(self, nodeids: list[str], limit: int = 20) -> dict[str, list[dict[str, Any]]]:
        """``{nodeid: [{"created", "p95", "peak_mb", "tokens"}, ...]}`` (oldest first) for
        the tests that have history: the shape the HTML report draws as trend lines."""
        out: dict[str, list[dict[str, Any]]] = {}
        for nodeid in nodeids:
            points = self.trend(nodeid, limit)
            if points:
                out[nodeid] = [{"created": p.created, "p95": p.p95, "peak_mb": p.peak_mb,
                                "tokens": p.tokens} for p in points]
        return out

    def nodeids(self) -> list[str]:
        return [str(r[0]) for r in self._query("SELECT DISTINCT nodeid FROM tests ORDER BY 1")]

    def baseline_report(self, fp: str, runs: int = DEFAULT_BASELINE_RUNS) -> dict[str, Any] | None:
        """A report-like dict pooling the last ``runs`` complete runs on fingerprint ``fp``.

        None when there is no such run.  Each test's entries are merged by
        :func:`~pytest_agentperf.merge.merge_entries` (samples pooled,
        memory values kept for the comparison).
        """
        from .merge import merge_entries

        recent = self.runs(limit=runs, fp=fp, complete_only=True)
        if not recent:
            return None
        ids = [r.id for r in recent]
        marks = ",".join("?" * len(ids))
        rows = self._query(
            f"SELECT nodeid, entry FROM tests WHERE run_id IN ({marks}) ORDER BY run_id",
            tuple(ids))
        grouped: dict[str, list[dict[str, Any]]] = {}
        for nodeid, text in rows:
            grouped.setdefault(str(nodeid), []).append(json.loads(text))
        env_row = self._query("SELECT environment FROM runs WHERE id = ?", (ids[0],))
        return {
            "schema_version": SCHEMA_VERSION,
            "created": recent[0].created,
            "complete": True,
            "environment": json.loads(env_row[0][0]) if env_row else {},
            "tests": [merge_entries(group) for group in grouped.values()],
            "history": {"path": str(self.path), "runs": ids, "fingerprint": fp},
        }
