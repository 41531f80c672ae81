"""The PostgreSQL history store against a real server (tests/pg_cluster.py): the same schema
version, commands and guarantees as SQLite; the password is never stored or echoed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_compare import entry, report

from pytest_agentperf.cli import main
from pytest_agentperf.history import STORE_VERSION, HistoryError, fingerprint, open_history

from _support import read_report


def test_record_trend_baseline_and_schema_version(pg_url: str) -> None:
    with open_history(pg_url) as h:
        r1 = h.record_run(report(entry([0.010] * 5, "t.py::a", tokens=10, peak_mb=5.0)),
                          branch="main")
        r2 = h.record_run(report(entry([0.012] * 5, "t.py::a", tokens=10, peak_mb=7.0),
                                 entry([0.5], "t.py::b")))
        incomplete = report(entry([0.9] * 5, "t.py::a"))
        incomplete.update(complete=False, incomplete_reason="worker crashed")
        h.record_run(incomplete)
        runs = h.runs()
        assert [r.complete for r in runs] == [False, True, True]
        assert runs[2].git_branch == "main"
        assert [p.p50 for p in h.trend("t.py::a")] == [0.010, 0.012, 0.9]
        assert h.nodeids() == ["t.py::a", "t.py::b"]
        base = h.baseline_report(fingerprint(report()["environment"]))
        assert base is not None and base["history"]["runs"] == [r2, r1]
        a = next(t for t in base["tests"] if t["nodeid"] == "t.py::a")
        assert a["latency"]["count"] == 10 and a["memory"]["values"] == [5.0, 7.0]
    import psycopg

    with psycopg.connect(pg_url) as con:
        (version,) = con.execute(
            "SELECT value FROM agentperf_meta WHERE key = 'schema_version'").fetchone()
        assert int(version) == STORE_VERSION
        con.execute("UPDATE agentperf_meta SET value = '99'")
    with pytest.raises(HistoryError, match=r"schema version 99, newer than .* upgrade"):
        open_history(pg_url)
    with pytest.raises(HistoryError, match=r"schema version 99"):
        open_history(pg_url, readonly=True)


def test_read_only_open_does_not_create_the_schema(pg_url: str) -> None:
    from pytest_agentperf.history import EmptyHistoryError

    with pytest.raises(EmptyHistoryError):
        open_history(pg_url, readonly=True)
    with open_history(pg_url) as h:
        h.record_run(report(entry([0.01] * 5)))
    with open_history(pg_url, readonly=True) as h:
        assert len(h.runs()) == 1
        with pytest.raises(HistoryError, match="read-only"):
            h.record_run(report(entry([0.01] * 5)))


WRITER = """
import sys
sys.path.insert(0, {tests!r})
from pytest_agentperf.history import open_history
from test_compare import entry, report
with open_history(sys.argv[1]) as h:
    for i in range(8):
        h.record_run(report(*[entry([0.01] * 20, f"t.py::t{{j}}") for j in range(30)]))
"""


def test_many_runners_create_and_write_at_once(pg_url: str, tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(tests=str(Path(__file__).parent)))
    procs = [subprocess.Popen([sys.executable, str(script), pg_url], stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with open_history(pg_url, readonly=True) as h:
        runs = h.runs(limit=100)
        assert len(runs) == 32 and all(r.tests == 30 for r in runs)
        assert len(h.trend("t.py::t7", limit=100)) == 32


def test_wrong_password_and_password_in_url_are_clear_and_not_echoed(
        pg_cluster: object, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = str(pg_cluster.password)  # type: ignore[attr-defined]
    monkeypatch.setenv("PGPASSWORD", "wrong-" + secret[:4])
    with pytest.raises(HistoryError) as info:
        open_history(pg_url)
    assert "password authentication failed" in str(info.value)
    assert "wrong-" not in str(info.value) and secret not in str(info.value)
    user, rest = pg_url.split("://", 1)[1].split("@", 1)
    with pytest.raises(HistoryError, match="do not put the password in the URL") as info:
        open_history(f"postgresql://{user}:{secret}@{rest}")
    assert secret not in str(info.value)
    with pytest.raises(HistoryError) as info:
        open_history(f"{pg_url}?password={secret}")
    assert secret not in str(info.value)


def test_pgpass_file_is_used(pg_cluster: object, pg_url: str, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    secret = str(pg_cluster.password)  # type: ignore[attr-defined]
    monkeypatch.delenv("PGPASSWORD")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:*:*:agentperf:{secret}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    with open_history(pg_url) as h:
        assert h.runs() == []


SUITE = """
import pytest

@pytest.mark.parametrize("i", range(6))
def test_agent(perf_record, i):
    for k in range(8):
        perf_record.add_latency(0.010 + k * 1e-4)
    perf_record.add_tokens(prompt=100, completion=20)
"""


def test_plugin_records_and_compares_through_postgres_under_xdist(
        pt: pytest.Pytester, pg_url: str, pg_cluster: object) -> None:
    pytest.importorskip("xdist")
    secret = str(pg_cluster.password)  # type: ignore[attr-defined]
    pt.makepyfile(test_suite=SUITE)
    for _ in range(2):
        result = pt.runpytest_subprocess("-n", "2", f"--perf-history={pg_url}",
                                         "--perf-compare=history", "--perf-report=r.json")
        result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines([f"*agentperf baseline: history {pg_url} (runs 1)*",
                                 "*0 regressed*", f"*perf history: run 2 -> {pg_url}"])
    text = (pt.path / "r.json").read_text()
    assert secret not in text and secret not in result.stdout.str() + result.stderr.str()
    assert read_report(pt.path / "r.json")["baseline"]["source"].startswith(
        f"history {pg_url}")
    with open_history(pg_url, readonly=True) as h:
        runs = h.runs()
        assert len(runs) == 2 and all(r.tests == 6 and r.complete for r in runs)
    for row in _dump(pg_url):
        assert secret not in row


def _dump(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as con:
        return [json.dumps(r, default=str) for table in ("agentperf_runs", "agentperf_tests")
                for r in con.execute(f"SELECT * FROM {table}").fetchall()]


def test_cli_export_sqlite_import_postgres_and_read_commands(
        pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.db"
    steady = [0.010 + i * 1e-4 for i in range(8)]
    with open_history(db) as h:
        h.record_run(report(entry(steady, "t.py::test_a")), branch="main", group="ci")
        h.record_run(report(entry([v * 1.5 for v in steady], "t.py::test_a")), group="ci")
    out = tmp_path / "runs.jsonl"
    assert main(["history", "export", "-o", str(out), "--db", str(db)]) == 0
    assert len(out.read_text().splitlines()) == 2
    assert main(["history", "import", str(out), "--db", pg_url]) == 0
    assert "imported 2 runs" in capsys.readouterr().out
    assert main(["history", "--db", pg_url]) == 0
    listing = capsys.readouterr().out
    assert "main" in listing and listing.count("\n") == 3
    assert main(["history", "test_a", "--db", pg_url]) == 0
    assert "+50.0%" in capsys.readouterr().out
    with open_history(pg_url, readonly=True) as pgh, open_history(db, readonly=True) as sqh:
        assert [r.machine_group for r in pgh.runs()] == [r.machine_group for r in sqh.runs()]
        assert [p.p50 for p in pgh.trend("t.py::test_a")] == [
            p.p50 for p in sqh.trend("t.py::test_a")]
    new = tmp_path / "new.json"
    new.write_text(json.dumps(report(entry([v * 3 for v in steady], "t.py::test_a"))))
    assert main(["compare", "history", str(new), "--db", pg_url]) == 2  # not in group ci
    assert main(["compare", "history", str(new), "--db", pg_url, "--group", "ci"]) == 1
    assert main(["html", str(new), "-o", str(tmp_path / "r.html"), "--db", pg_url]) == 0
    assert "History (2 runs" in (tmp_path / "r.html").read_text()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert main(["history", "import", str(bad), "--db", pg_url]) == 2
    assert "bad.jsonl line 1: not JSON" in capsys.readouterr().err


def test_p95_change_points_read_the_samples_from_postgres(pg_url: str, tmp_path: Path) -> None:
    from test_history import record_slow_path_step

    from pytest_agentperf.history.changes import test_changes

    with open_history(pg_url) as pgh, open_history(tmp_path / "h.db") as sqh:
        record_slow_path_step(pgh)
        record_slow_path_step(sqh)
        ids = [p.run_id for p in pgh.trend("t.py::tail", limit=40)]
        assert [len(v) for v in pgh.samples("t.py::tail", ids).values()] == [30] * 40
        changes = test_changes(pgh, "t.py::tail")[1]
        assert [(c.metric, c.run_id, c.before, c.after) for c in changes] == [
            (c.metric, c.run_id, c.before, c.after) for c in test_changes(sqh, "t.py::tail")[1]]
        assert [(c.metric, c.runs_ago) for c in changes] == [("latency.p95", 4)]
