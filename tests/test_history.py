"""history.py: runs, trends, baselines pooled from recent runs, concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_compare import entry, report

from pytest_agentperf.compare import compare_reports
from pytest_agentperf.history import STORE_VERSION, History, HistoryError, fingerprint


def test_record_runs_trend_and_baseline(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "h.db"
    with History(db) as h:
        r1 = h.record_run(report(entry([0.010] * 5, "t.py::a", tokens=10, peak_mb=5.0)),
                          branch="main")
        r2 = h.record_run(report(entry([0.012] * 5, "t.py::a", tokens=10, peak_mb=7.0),
                                 entry([0.5], "t.py::b")))
        assert r2 > r1
        runs = h.runs()
        assert [r.id for r in runs] == [r2, r1]
        assert runs[1].git_branch == "main" and runs[0].complete
        assert runs[0].fingerprint == fingerprint(report()["environment"])
        trend = h.trend("t.py::a")
        assert [p.p50 for p in trend] == [0.010, 0.012]
        assert [p.peak_mb for p in trend] == [5.0, 7.0]
        assert h.nodeids() == ["t.py::a", "t.py::b"]
        base = h.baseline_report(fingerprint(report()["environment"]), runs=5)
        assert base is not None
        assert base["history"]["runs"] == [r2, r1]
        a = next(t for t in base["tests"] if t["nodeid"] == "t.py::a")
        assert a["latency"]["count"] == 10  # pooled over both runs
        assert a["memory"]["values"] == [5.0, 7.0]
        assert h.baseline_report("other-machine") is None
    assert db.is_file()


def test_history_baseline_feeds_compare(tmp_path: Path) -> None:
    with History(tmp_path / "h.db") as h:
        for _ in range(3):
            h.record_run(report(entry([0.010 + i * 1e-4 for i in range(8)], "t.py::a")))
        base = h.baseline_report(fingerprint(report()["environment"]))
    assert base is not None
    slow = report(entry([0.030 + i * 1e-4 for i in range(8)], "t.py::a"))
    assert compare_reports(base, slow).has_regressions
    same = report(entry([0.010 + i * 1e-4 for i in range(8)], "t.py::a"))
    assert not compare_reports(base, same).has_regressions


def test_incomplete_runs_are_not_baselines(tmp_path: Path) -> None:
    r = report(entry([0.01] * 5))
    r["complete"] = False
    with History(tmp_path / "h.db") as h:
        h.record_run(r)
        assert h.baseline_report(fingerprint(r["environment"])) is None


def test_corrupt_database_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(HistoryError, match=r"bad\.db"):
        History(bad)
    newer = tmp_path / "newer.db"
    con = sqlite3.connect(newer)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(HistoryError, match=r"newer\.db has schema version 99, newer than"):
        History(newer)


WRITER = """
import sys
sys.path.insert(0, {tests!r})
from pytest_agentperf.history import History
from test_compare import entry, report
with History(sys.argv[1]) as h:
    for i in range(15):
        h.record_run(report(*[entry([0.01] * 20, f"t.py::t{{j}}") for j in range(20)]))
"""


def test_two_processes_write_at_once(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(tests=str(Path(__file__).parent)))
    procs = [subprocess.Popen([sys.executable, str(script), str(db)],
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    with History(db) as h:
        runs = h.runs(limit=100)
        assert len(runs) == 30
        assert all(r.tests == 20 for r in runs)
        assert len(h.trend("t.py::t3", limit=100)) == 30


# -- schema versions and migrations ------------------------------------------------------
V1_SCHEMA = """
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, created TEXT NOT NULL,
  git_commit TEXT, git_branch TEXT, fingerprint TEXT NOT NULL, python TEXT, machine TEXT,
  platform TEXT, cpu_count INTEGER, complete INTEGER NOT NULL, summary TEXT NOT NULL,
  environment TEXT NOT NULL);
CREATE TABLE tests (run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  nodeid TEXT NOT NULL, outcome TEXT, p50 REAL, p95 REAL, mean REAL, count INTEGER,
  peak_mb REAL, tokens INTEGER, entry TEXT NOT NULL, PRIMARY KEY (run_id, nodeid));
INSERT INTO runs VALUES (1, '2026-01-01T00:00:00Z', 'abc', 'main', 'oldfp', '3.11.9',
  'x86_64', 'Linux', 2, 1, '{"tests": 1, "failed": 0}', '{}');
INSERT INTO tests VALUES (1, 't.py::a', 'passed', 0.01, 0.01, 0.01, 1, NULL, 0,
  '{"nodeid": "t.py::a", "latency": {"p50": 0.01}}');
PRAGMA user_version = 1;
"""


def test_version_1_database_is_migrated_forward(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    con = sqlite3.connect(db)
    con.executescript(V1_SCHEMA)
    con.close()
    with pytest.raises(HistoryError, match=r"v1\.db has schema version 1, older .* read-only"):
        History(db, readonly=True)
    with History(db) as h:
        (old,) = h.runs()
        assert old.machine_group == "oldfp"  # its fingerprint becomes its group
        assert h.baseline_report("oldfp") is not None
        h.record_run(report(entry([0.01] * 5, "t.py::a")))
        assert [p.p50 for p in h.trend("t.py::a")] == [0.01, 0.01]
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == STORE_VERSION
    con.close()
    with History(db, readonly=True) as h:
        assert len(h.runs()) == 2


def test_fingerprint_ignores_host_and_kernel_but_not_hardware() -> None:
    env = {"os": "debian 12", "machine": "x86_64", "cpu_model": "Xeon 8375C", "cpu_count": 2,
           "memory_gb": 8, "implementation": "CPython", "python": "3.11.9",
           "agentperf": "0.2", "platform": "Linux-6.1.0-1-cloud-amd64", "hostname": "runner-1"}
    other_runner = {**env, "platform": "Linux-6.1.0-9-cloud-amd64", "hostname": "runner-77",
                    "python": "3.11.10"}
    assert fingerprint(env) == fingerprint(other_runner)
    for key, value in (("cpu_model", "EPYC 7763"), ("cpu_count", 4), ("memory_gb", 16),
                       ("os", "ubuntu 24.04"), ("python", "3.12.1"), ("agentperf", "0.3")):
        assert fingerprint({**env, key: value}) != fingerprint(env), key


# -- concurrency and read-only files ------------------------------------------------------
FRESH_OPENER = """
import sys, time
sys.path.insert(0, {tests!r})
from pytest_agentperf.history import History
from test_compare import entry, report
start = float(sys.argv[2])
while time.time() < start:
    pass
with History(sys.argv[1]) as h:
    h.record_run(report(entry([0.01] * 5, "t.py::a")))
"""


@pytest.mark.parametrize("attempt", range(3))
def test_brand_new_database_opened_by_many_sessions_at_once(tmp_path: Path,
                                                            attempt: int) -> None:
    import time

    db = tmp_path / "fresh" / "h.db"
    script = tmp_path / "opener.py"
    script.write_text(FRESH_OPENER.format(tests=str(Path(__file__).parent)))
    start = time.time() + 1.5  # all processes started and spinning before anyone opens
    procs = [subprocess.Popen([sys.executable, str(script), str(db), str(start)],
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with History(db, readonly=True) as h:
        assert len(h.runs(limit=100)) == 6


def _other_user_python(package_home: Path) -> list[str]:
    """``[runuser -u nobody --] python`` that an unprivileged user can run (root ignores
    file modes, so a read-only file is only read-only to another user)."""
    import os
    import shutil

    if os.geteuid() != 0:
        return [sys.executable]
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("running as root without runuser: cannot test a read-only file")
    prefix = [runuser, "-u", "nobody", "--"]
    for python in (sys.executable, "/usr/bin/python3"):
        ok = subprocess.run([*prefix, python, "-c", "import pytest_agentperf.cli"],
                            cwd=package_home, capture_output=True, timeout=60)
        if ok.returncode == 0:
            return [*prefix, python]
    pytest.skip("no Python that user nobody may run")


def test_read_only_database_is_readable_by_every_read_command() -> None:
    import os
    import shutil
    import tempfile

    from test_compare import entry as make_entry

    import pytest_agentperf
    from pytest_agentperf.report import write_report

    home = Path(tempfile.mkdtemp(prefix="agentperf-ro-"))  # outside root's 0700 tmp dirs
    data = home / "ro"
    try:
        home.chmod(0o755)
        shutil.copytree(Path(pytest_agentperf.__file__).parent, home / "pytest_agentperf")
        python = _other_user_python(home)
        data.mkdir()
        db = data / "h.db"
        with History(db) as h:
            for _ in range(2):
                h.record_run(report(make_entry([0.01 + i * 1e-4 for i in range(8)], "t.py::a")))
        new = data / "new.json"
        write_report(new, report(make_entry([0.01 + i * 1e-4 for i in range(8)], "t.py::a")))
        before = {p.name: p.read_bytes() for p in data.iterdir()}
        for p in data.iterdir():
            p.chmod(0o444)
        data.chmod(0o555)
        out_dir = home / "out"
        out_dir.mkdir()
        out_dir.chmod(0o777)
        env = {**os.environ, "HOME": str(out_dir), "PYTHONPATH": str(home)}
        for args in (["history"], ["history", "t.py::a"],
                     ["compare", "history", str(new)],
                     ["html", str(new), "-o", str(out_dir / "r.html")]):
            proc = subprocess.run([*python, "-m", "pytest_agentperf", *args, "--db", str(db)],
                                  capture_output=True, text=True, env=env, timeout=60,
                                  cwd=home)
            assert proc.returncode == 0, (args, proc.stderr)
        assert "History (2 runs" in (out_dir / "r.html").read_text()
        data.chmod(0o755)
        assert {p.name: p.read_bytes() for p in data.iterdir()} == before
    finally:
        if data.is_dir():
            data.chmod(0o755)
        shutil.rmtree(home)
