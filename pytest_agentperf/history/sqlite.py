"""The SQLite history store (the default: ``.agentperf/history.db``).

Several sessions may write at once: the database runs in WAL mode, each run is
written in one ``BEGIN IMMEDIATE`` transaction, and a busy timeout makes a
writer wait for the other instead of failing.  Opening a brand-new file is
retried until the timeout: switching a fresh file to WAL takes an exclusive
lock and answers "database is locked" at once, without waiting, when another
session is doing the same.  Read-only opens (``readonly=True``: the
``history``, ``compare`` and ``html`` commands) never write, so a file the user
may only read is still readable.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

from .common import MIGRATIONS, STORE_VERSION, HistoryError, HistoryStore

__all__ = ["SqliteHistory"]

_BUSY = ("locked", "busy")


class SqliteHistory(HistoryStore):
    """A SQLite history file.  ``timeout`` is how long (seconds) a writer waits for
    another one."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False,
                 timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self.readonly = readonly
        if readonly:
            self._open_readonly(timeout)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"cannot open history database {self.path}: {exc}") from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._initialise(timeout)
                return
            except sqlite3.OperationalError as exc:
                if any(w in str(exc) for w in _BUSY) and time.monotonic() < deadline:
                    time.sleep(random.uniform(0.005, 0.05))  # another session initialises
                    continue
                self._db.close()
                raise HistoryError(
                    f"history database {self.path} is not usable: {exc}") from None
            except sqlite3.Error as exc:
                self._db.close()
                raise HistoryError(
                    f"history database {self.path} is not usable: {exc}") from None
            except HistoryError:
                self._db.close()
                raise

    def _initialise(self, timeout: float) -> None:
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA synchronous = NORMAL")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        self._check_version(version)
        if version == STORE_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")  # one migrator at a time; re-read under the lock
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            self._check_version(version)
            for step in range(version, STORE_VERSION):
                for statement in MIGRATIONS[step]:
                    db.execute(self._sql_ddl(statement))
            db.execute(f"PRAGMA user_version = {STORE_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _open_readonly(self, timeout: float) -> None:
        if not self.path.is_file():
            raise HistoryError(f"history database {self.path} does not exist "
                               "(run pytest with --perf-history first)")
        try:
            self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                       timeout=timeout, isolation_level=None)
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error:
            # A WAL file in a directory we may not write (no -shm to create): read it as
            # an immutable snapshot.
            try:
                self._db = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True,
                    isolation_level=None)
                version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            except sqlite3.Error as exc:
                raise HistoryError(
                    f"history database {self.path} is not usable: {exc}") from None
        try:
            self._check_version(version)
        except HistoryError:
            self._db.close()
            raise

    @staticmethod
    def _sql_ddl(statement: str) -> str:
        return statement.format(pk="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL",
                                bigint="INTEGER", runs="runs", tests="tests")

    def close(self) -> None:
        self._db.close()

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot read history database {self.path}: {exc}") from None

    def _insert_run(self, run: tuple[Any, ...], tests: list[tuple[Any, ...]]) -> int:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT INTO runs (created, git_commit, git_branch, fingerprint, "
                    "machine_group, python, machine, platform, cpu_count, complete, summary, "
                    "environment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", run)
                run_id = int(cur.lastrowid or 0)
                self._db.executemany(
                    "INSERT INTO tests (run_id, nodeid, outcome, p50, p95, mean, count, "
                    "peak_mb, tokens, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(run_id, *row) for row in tests])
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot write history database {self.path}: {exc}") from None
        return run_id
