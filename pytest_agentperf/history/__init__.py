"""Run history: every run's per-test figures, baselines from recent runs, trends.

Two stores with one schema (:mod:`.common`): a SQLite file (:mod:`.sqlite`, the
default ``.agentperf/history.db``) and a PostgreSQL database shared by many CI
runners (:mod:`.postgres`, a ``postgresql://`` URL; needs the ``[postgres]``
extra).  :func:`open_history` picks the store from the target.  Neither
``sqlite3`` nor ``psycopg`` is imported until a store is opened.
"""

from __future__ import annotations

import os
from pathlib import Path

from .common import (
    DEFAULT_BASELINE_RUNS,
    DEFAULT_HISTORY_PATH,
    STORE_VERSION,
    EmptyHistoryError,
    HistoryError,
    HistoryStore,
    RunInfo,
    TrendPoint,
    fingerprint,
    git_branch,
)

__all__ = [
    "DEFAULT_BASELINE_RUNS",
    "DEFAULT_HISTORY_PATH",
    "STORE_VERSION",
    "EmptyHistoryError",
    "History",
    "HistoryError",
    "HistoryStore",
    "RunInfo",
    "TrendPoint",
    "display_target",
    "fingerprint",
    "git_branch",
    "is_url",
    "open_history",
]

_URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(target, str) and target.lower().startswith(_URL_SCHEMES)


def display_target(target: str | os.PathLike[str]) -> str:
    """``target`` as messages and reports may show it: a URL without any password."""
    if not is_url(target):
        return str(target)
    from .postgres import redact

    return redact(str(target))


def open_history(target: str | os.PathLike[str], *, readonly: bool = False,
                 timeout: float = 30.0) -> HistoryStore:
    """Open the store at ``target``: a ``postgresql://`` URL or a SQLite file path.

    ``readonly`` opens it for reading only (it is not created, migrated or
    written).  Raises :class:`HistoryError` naming the store when it cannot be
    used.
    """
    if is_url(target):
        from .postgres import PostgresHistory

        return PostgresHistory(str(target), readonly=readonly, timeout=timeout)
    from .sqlite import SqliteHistory

    return SqliteHistory(Path(target), readonly=readonly, timeout=timeout)


#: The name earlier releases used: ``History(path)`` opens a store for writing.
History = open_history
