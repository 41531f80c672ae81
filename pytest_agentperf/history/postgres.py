"""The PostgreSQL history store: one database shared by every CI runner.

``--perf-history=postgresql://user@host:port/db`` (needs ``pip install
"pytest-agentperf[postgres]"``, psycopg 3).  The password comes from
``PGPASSWORD`` or ``~/.pgpass`` as libpq reads them; a password in the URL is
refused (it would end up in the report's argv, the shell history and CI
logs), and every message shows the URL without one.

Tables are prefixed ``agentperf_`` so the database can be shared with other
uses; ``agentperf_meta`` holds the schema version.  Creating and migrating
the schema happens under a transaction-scoped advisory lock, so many runners
starting at once migrate it once; each run is one transaction (the tests
copied in with ``COPY``), and concurrent runs do not block each other.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .common import MIGRATIONS, RUN_COLUMNS, STORE_VERSION, TEST_COLUMNS, HistoryError, HistoryStore

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresHistory", "has_password", "redact"]

#: Key of the advisory lock taken while the schema is created or migrated.
_MIGRATION_LOCK = 0x61676E74_70657266 & 0x7FFFFFFFFFFFFFFF


def redact(url: str) -> str:
    """``url`` without a password (in the user part or a ``password=`` parameter)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            user = user.split(":", 1)[0] + ":***"
        netloc = f"{user}@{host}"
    query = urlencode([(k, "***" if k.lower() == "password" else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def has_password(url: str) -> bool:
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    return ":" in user or any(k.lower() == "password" for k, _ in parse_qsl(parts.query))


def _scrub(message: str) -> str:
    secret = os.environ.get("PGPASSWORD")
    return message.replace(secret, "***") if secret else message


class PostgresHistory(HistoryStore):
    """A history store in a PostgreSQL database."""

    runs_table = "agentperf_runs"
    tests_table = "agentperf_tests"
    samples_sql = "(t.entry::json -> 'latency' ->> 'samples')"

    def __init__(self, url: str, *, readonly: bool = False, timeout: float = 30.0) -> None:
        self.name = redact(url)
        self.readonly = readonly
        if has_password(url):
            raise HistoryError(
                f"history database {self.name}: do not put the password in the URL (it "
                "would be stored in reports and logs); set PGPASSWORD or use ~/.pgpass")
        try:
            import psycopg
        except ImportError:
            raise HistoryError(
                f"history database {self.name} needs psycopg: pip install "
                "\"pytest-agentperf[postgres]\"") from None
        self._psycopg = psycopg
        try:
            self._db: psycopg.Connection[Any] = psycopg.connect(
                url, autocommit=True, connect_timeout=max(1, int(timeout)),
                application_name="pytest-agentperf")
        except psycopg.Error as exc:
            raise HistoryError(f"cannot open history database {self.name}: "
                               f"{_scrub(str(exc).strip())}") from None
        try:
            if readonly:
                self._db.execute("SET default_transaction_read_only = on")
                self._check_version(self._version())
            else:
                self._initialise()
        except psycopg.Error as exc:
            self._db.close()
            raise HistoryError(f"history database {self.name} is not usable: "
                               f"{_scrub(str(exc).strip())}") from None
        except HistoryError:
            self._db.close()
            raise

    def _version(self) -> int:
        exists = self._db.execute("SELECT to_regclass('agentperf_meta')").fetchone()
        if not exists or exists[0] is None:
            return 0
        row = self._db.execute(
            "SELECT value FROM agentperf_meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _initialise(self) -> None:
        if self._version() == STORE_VERSION:
            return
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            self._db.execute("CREATE TABLE IF NOT EXISTS agentperf_meta ("
                             " key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            version = self._version()
            self._check_version(version)
            for step in range(version, STORE_VERSION):
                for statement in MIGRATIONS[step]:
                    self._db.execute(statement.format(
                        pk="BIGSERIAL PRIMARY KEY", real="DOUBLE PRECISION",
                        bigint="BIGINT", runs=self.runs_table, tests=self.tests_table))
            self._db.execute(
                "INSERT INTO agentperf_meta (key, value) VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (str(STORE_VERSION),))

    def close(self) -> None:
        self._db.close()

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql.replace("?", "%s"),
                                    params).fetchall()
        except self._psycopg.Error as exc:
            raise HistoryError(f"cannot read history database {self.name}: "
                               f"{_scrub(str(exc).strip())}") from None

    def _insert_run(self, run: tuple[Any, ...], tests: list[tuple[Any, ...]]) -> int:
        try:
            with self._db.transaction(), self._db.cursor() as cur:
                cur.execute(
                    f"INSERT INTO {self.runs_table} ({', '.join(RUN_COLUMNS)}) VALUES "
                    f"({', '.join(['%s'] * len(RUN_COLUMNS))}) RETURNING id", run)
                row = cur.fetchone()
                run_id = int(row[0]) if row else 0
                with cur.copy(
                    f"COPY {self.tests_table} (run_id, {', '.join(TEST_COLUMNS)}) "
                    "FROM STDIN") as copy:
                    for test in tests:
                        copy.write_row((run_id, *test))
        except self._psycopg.Error as exc:
            raise HistoryError(f"cannot write history database {self.name}: "
                               f"{_scrub(str(exc).strip())}") from None
        return run_id
