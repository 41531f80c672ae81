"""history.py: runs, trends, baselines pooled from recent runs, concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_compare import entry, report

from pytest_agentperf.compare import compare_reports
from pytest_agentperf.history import (
    STORE_VERSION,
    History,
    HistoryError,
    HistoryStore,
    fingerprint,
)


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


# -- change points ----------------------------------------------------------------------
def _record_levels(db: Path, levels: list[float], tokens: list[int] | None = None) -> None:
    import random as _random

    rng = _random.Random(7)
    with History(db) as h:
        for i, level in enumerate(levels):
            samples = [0.010 * level * (1 + rng.gauss(0, 0.01)) for _ in range(10)]
            r = report(entry(samples, "t.py::step", tokens=(tokens or [100] * len(levels))[i]),
                       entry([0.010 * (1 + rng.gauss(0, 0.01)) for _ in range(10)],
                             "t.py::flat"))
            r["environment"]["git_commit"] = f"c{i:03d}" + "0" * 36
            h.record_run(r)


def test_change_points_name_run_commit_levels_and_significance(tmp_path: Path) -> None:
    from pytest_agentperf.history.changes import recent_changes, test_changes

    db = tmp_path / "h.db"
    _record_levels(db, [1.0] * 12 + [1.3] * 8, tokens=[100] * 16 + [150] * 4)
    with History(db, readonly=True) as h:
        points, changes = test_changes(h, "t.py::step")
        assert len(points) == 20
        by_metric = {c.metric: c for c in changes}
        p50 = by_metric["latency.p50"]
        assert (p50.run_id, p50.git_commit[:4], p50.runs_ago) == (13, "c012", 7)
        assert p50.before == pytest.approx(0.010, rel=0.02)
        assert p50.after == pytest.approx(0.013, rel=0.02)
        assert p50.change == pytest.approx(0.3, abs=0.03) and p50.p_value <= 0.005
        tokens = by_metric["tokens.total"]
        assert (tokens.run_id, tokens.before, tokens.after) == (17, 100, 150)
        assert test_changes(h, "t.py::flat")[1] == []
        recent = recent_changes(h, recent=10)
        assert recent[0] == tokens  # +50 %: the worst first
        changes_in_order = [c.change for c in recent]
        assert changes_in_order == sorted(changes_in_order, reverse=True)
        assert all(c.nodeid == "t.py::step" for c in recent)
        assert recent_changes(h, recent=5) == [tokens]  # the latency step is 7 runs old


def test_cli_marks_change_points_and_lists_recent_ones_worst_first(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_agentperf.cli import main

    db = tmp_path / "h.db"
    _record_levels(db, [1.0] * 12 + [1.3] * 8, tokens=[100] * 16 + [150] * 4)
    assert main(["history", "step", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    row13 = next(line for line in out.splitlines() if line.startswith("13 "))
    assert "<- change: mean +29.7%, p50 +29.9%, p95 +30.4%" in row13 and "c012" in row13
    assert "run 13 (c012" in out and "latency.p50 10 ms -> 13 ms" in out and "p=0.00" in out
    assert "run 17 (c016" in out and "tokens.total 100 tokens -> 150 tokens (+50.0%" in out
    assert main(["history", "--changes", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["test", "metric", "run"]
    assert lines[1].split()[:3] == ["t.py::step", "tokens.total", "17"]
    assert len(lines) == 1 + 4  # tokens, p50, p95, mean
    assert main(["history", "--changes", "--recent", "3", "--db", str(db)]) == 0
    assert "no change points in the last 3 runs" in capsys.readouterr().out


def test_html_trend_draws_change_points(tmp_path: Path) -> None:
    from pytest_agentperf.html import render_html

    db = tmp_path / "h.db"
    _record_levels(db, [1.0] * 10 + [1.3] * 8)
    with History(db, readonly=True) as h:
        trends = h.trends(["t.py::step", "t.py::flat"])
    (marked,) = [i for i, p in enumerate(trends["t.py::step"]) if p["changes"]]
    assert marked == 10 and trends["t.py::step"][10]["changes"][0]["metric"] == "p95"
    assert not any(p["changes"] for p in trends["t.py::flat"])
    page = render_html(report(entry([0.013] * 10, "t.py::step"), entry([0.01] * 10,
                                                                        "t.py::flat")),
                       history=trends)
    assert page.count('<line class="change"') == 1
    assert "change +30." in page


def record_slow_path_step(store: HistoryStore, runs: int = 40, step_at: int = 35) -> None:
    """``runs`` runs of ``t.py::tail``: 30 samples, a quarter of them on a slow path that is
    20 % slower from run ``step_at`` on (so p95 moves and p50 does not), plus 2 % hiccups
    x2..6 that make every per-run p95 noisy."""
    import math
    import random as _random

    rng = _random.Random(11)
    for i in range(runs):
        slow = 0.020 * (1.2 if i >= step_at else 1.0)
        samples = []
        for _ in range(30):
            v = (slow if rng.random() < 0.25 else 0.010) * math.exp(rng.gauss(0, 0.05))
            samples.append(v * rng.uniform(2.0, 6.0) if rng.random() < 0.02 else v)
        store.record_run(report(entry(samples, "t.py::tail")))


def test_p95_change_points_are_searched_on_the_stored_samples(tmp_path: Path) -> None:
    from pytest_agentperf.changepoints import e_divisive
    from pytest_agentperf.history.changes import HistoryBaseline, test_changes

    db = tmp_path / "h.db"
    with History(db) as h:
        record_slow_path_step(h, runs=39)
        assert len(h.samples("t.py::tail", [1, 2, 39])[39]) == 30
    with History(db, readonly=True) as h:
        points, changes = test_changes(h, "t.py::tail")
        assert e_divisive([p.p95 for p in points if p.p95 is not None]) == []  # per run
        (p95,) = [c for c in changes if c.metric == "latency.p95"]
        assert (p95.run_id, p95.runs_ago) == (36, 3) and p95.p_value <= 0.005
        assert p95.change == pytest.approx(0.2, abs=0.05)
        assert not [c for c in changes if c.metric == "latency.p50"]
        # the baseline starts at the p95 change point; the step is a drift beyond +10 %
        rng_entry = entry([0.024, 0.010] * 15, "t.py::tail")
        base, info = HistoryBaseline(h, fingerprint(report()["environment"])).entry(
            "t.py::tail", rng_entry)
        assert base is not None
        assert info["since_change"]["metric"] == "latency.p95"
        assert info["runs"] == [36, 37, 38, 39]
        (drift,) = [d for d in info["drifts"] if d["metric"] == "latency.p95"]
        assert drift["since_run"] == 36 and drift["change"] > 0.1
        trends = h.trends(["t.py::tail"], limit=40)["t.py::tail"]
        assert [i for i, r in enumerate(trends) if r["changes"]] == [35]


def test_importing_the_plugin_imports_no_database_driver(pt: pytest.Pytester) -> None:
    code = ("import sys, pytest_agentperf, pytest_agentperf.plugin, pytest_agentperf.history, "
            "pytest_agentperf.cli\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlite3', 'psycopg', "
            "'_sqlite3')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
    pt.makepyfile(test_mods="""
import sys
def test_no_driver(perf_record):
    perf_record.add_latency(0.01)
    assert not {"sqlite3", "_sqlite3", "psycopg"} & set(sys.modules)
""")
    pt.runpytest_subprocess("--perf-report=r.json").assert_outcomes(passed=1)


def test_cli_compare_with_history_uses_the_runs_since_the_change_point(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from pytest_agentperf.cli import main

    db = tmp_path / "h.db"
    _record_levels(db, [1.0] * 20 + [0.6] * 3)  # a 40 % speed-up, 3 runs ago
    steady = [0.006 * 1.2 * (1 + k * 0.001) for k in range(10)]  # +20 % on the new level
    new = tmp_path / "new.json"
    new.write_text(json.dumps(report(entry(steady, "t.py::step"))))
    with History(db, readonly=True) as h:
        pooled = h.baseline_report(fingerprint(report()["environment"]))
    assert pooled is not None  # the last 5 runs mix both levels and hide the regression
    assert not compare_reports(pooled, json.loads(new.read_text())).has_regressions
    assert main(["compare", "history", str(new), "--db", str(db)]) == 1
    assert "latency.p50" in capsys.readouterr().out
