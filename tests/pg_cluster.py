"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl on a temp dir and a free port
on 127.0.0.1, password authentication over TCP, removed afterwards.

Debian's ``postgresql`` package provides the binaries (``/usr/lib/postgresql/*/bin``);
``.ci/run`` installs it.  initdb refuses to run as root, so as root the server runs as the
``postgres`` user the package creates, in a directory it owns.  Without the binaries the tests
skip, except when ``AGENTPERF_REQUIRE_POSTGRES`` is set (CI), where they fail.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "agentperf"


def _missing(reason: str) -> None:
    if os.environ.get("AGENTPERF_REQUIRE_POSTGRES"):  # set by .ci/run: CI must not skip
        pytest.fail(f"AGENTPERF_REQUIRE_POSTGRES is set but {reason}")
    pytest.skip(reason)


def _bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name)
                        if Path(p).parent.parent.name.isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    port: int
    password: str
    admin_url: str

    def url(self, db: str) -> str:
        """A URL without the password (it comes from PGPASSWORD)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{db}"

    def create_db(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, password=self.password) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def cluster() -> Iterator[Cluster]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (pip install -e '.[dev]')")
    bindir = _bindir()
    if bindir is None:
        _missing("PostgreSQL's initdb was not found (apt-get install postgresql)")
    assert bindir is not None
    prefix: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="agentperf-pg-"))
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            import pwd

            pg = pwd.getpwnam("postgres")
        except KeyError:
            pg = None
        if runuser is None or pg is None:
            shutil.rmtree(home)
            _missing("running as root without a 'postgres' user to run initdb as")
        assert pg is not None and runuser is not None
        os.chown(home, pg.pw_uid, pg.pw_gid)
        prefix = [runuser, "-u", "postgres", "--"]
    password = secrets.token_hex(12)
    pwfile = home / "pw"
    pwfile.write_text(password + "\n")
    if prefix:
        import pwd

        pg = pwd.getpwnam("postgres")
        os.chown(pwfile, pg.pw_uid, pg.pw_gid)
    data = home / "data"
    port = _free_port()

    def run(*args: str) -> None:
        proc = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120,
                              cwd=home)
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {proc.stdout}\n{proc.stderr}")

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(pwfile),
            "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync")
        pwfile.unlink()
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(home / "log"), "-w", "-t", "60",
            "-o", f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50",
            "start")
    except Exception:
        log = home / "log"
        text = log.read_text() if log.is_file() else ""
        shutil.rmtree(home, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {text}") from None
    try:
        yield Cluster(port, password, f"postgresql://{USER}@127.0.0.1:{port}/postgres")
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=60, cwd=home)
        shutil.rmtree(home, ignore_errors=True)
