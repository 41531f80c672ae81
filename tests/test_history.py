"""history.py: runs, trends, baselines pooled from recent runs, concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_compare import entry, report

from pytest_agentperf.compare import compare_reports
from pytest_agentperf.history import History, HistoryError, fingerprint


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
    with pytest.raises(HistoryError, match=r"newer\.db has version 99"):
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
