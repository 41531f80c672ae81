"""cli.py: compare / merge / history subcommands, exit codes, errors naming the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_compare import entry, report

from pytest_agentperf.cli import SUBCOMMANDS, main
from pytest_agentperf.history import History

from _support import read_report

STEADY = [0.010 + i * 1e-4 for i in range(10)]


def write(path: Path, data: dict[str, object]) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_compare_exit_codes_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path / "base.json", report(entry(STEADY, "t.py::a", tokens=100)))
    same = write(tmp_path / "same.json", report(entry(STEADY, "t.py::a", tokens=100)))
    slow = write(tmp_path / "slow.json",
                 report(entry([v * 2 for v in STEADY], "t.py::a", tokens=150)))
    assert main(["compare", str(base), str(same)]) == 0
    assert "0 regressed" in capsys.readouterr().out
    assert main(["compare", str(base), str(slow)]) == 1
    out = capsys.readouterr().out
    assert "latency.p50" in out and "tokens.total" in out and "+50.0%" in out
    assert "Mann-Whitney p=" in out and "1 regressed" in out
    # a wide enough tolerance lets it through
    assert main(["compare", str(base), str(slow), "--tolerance",
                 "latency=150%,tokens=60%"]) == 0
    capsys.readouterr()
    assert main(["compare", str(base), str(same), "--all"]) == 0
    assert "unchanged" in capsys.readouterr().out


def test_unreadable_files_are_one_line_errors(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "good.json", report(entry(STEADY)))
    (tmp_path / "corrupt.json").write_text("{not json")
    write(tmp_path / "v9.json", {"schema_version": 9, "tests": []})
    for name, text in (("missing.json", "does not exist"), ("corrupt.json", "not valid JSON"),
                       ("v9.json", "schema_version 9")):
        assert main(["compare", str(tmp_path / name), str(good)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and name in err and text in err
    assert main(["merge", str(good), str(tmp_path / "missing.json"), "-o",
                 str(tmp_path / "o.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    assert main(["history", "--db", str(tmp_path / "none.db")]) == 2
    assert "none.db does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["compare", "only-one"], ["merge", "a.json"],
                                  ["nope"], ["compare", "a", "b", "--tolerance", "speed=1"],
                                  ["history", "--limit", "0"]])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: pytest-agentperf" in capsys.readouterr().err


def test_merge_shards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write(tmp_path / "a.json", report(entry(STEADY, "t.py::a"), entry(STEADY, "t.py::c")))
    b = write(tmp_path / "b.json", report(entry(STEADY, "t.py::b"), entry(STEADY, "t.py::c")))
    out = tmp_path / "merged.json"
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
    assert "merged 2 reports, 3 tests" in capsys.readouterr().out
    merged = read_report(out)  # validates against the schema
    tests = {t["nodeid"]: t for t in merged["tests"]}
    assert set(tests) == {"t.py::a", "t.py::b", "t.py::c"}
    assert tests["t.py::c"]["latency"]["count"] == 20
    assert tests["t.py::c"]["merged"] == {"runs": 2, "exact": True}
    assert merged["complete"] is True
    assert main(["merge", str(a), "-o", str(tmp_path / "no" / "dir.json")]) == 2


def test_history_runs_and_trend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.db"
    with History(db) as h:
        h.record_run(report(entry(STEADY, "t.py::test_a")), branch="main")
        h.record_run(report(entry([v * 1.5 for v in STEADY], "t.py::test_a"),
                            entry(STEADY, "t.py::test_ab")))
    assert main(["history", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "main" in out and out.count("\n") == 3
    assert main(["history", "t.py::test_a", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "+50.0%" in out
    assert main(["history", "test_a", "--db", str(db)]) == 2  # ambiguous part
    assert "matches 2 tests" in capsys.readouterr().err
    assert main(["history", "test_ab", "--db", str(db)]) == 0
    capsys.readouterr()
    slow = write(tmp_path / "slow.json", report(entry([v * 3 for v in STEADY], "t.py::test_a")))
    assert main(["compare", "history", str(slow), "--db", str(db)]) == 1


def test_python_dash_m_and_subcommand_registry(tmp_path: Path) -> None:
    assert [f.__name__ for f in SUBCOMMANDS] == [
        "add_compare_parser", "add_merge_parser", "add_history_parser", "add_html_parser",
        "add_export_parser", "add_ab_parser"]
    out = subprocess.run([sys.executable, "-m", "pytest_agentperf", "--help"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0
    assert "compare" in out.stdout and "merge" in out.stdout and "history" in out.stdout


def test_html_subcommand_renders_a_saved_report(tmp_path: Path) -> None:
    src = write(tmp_path / "r.json", report(entry(STEADY, "t.py::test_<b>")))
    assert main(["html", str(src), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "t.py::test_&lt;b&gt;" in page and "t.py::test_<b>" not in page
    assert main(["html", str(tmp_path / "missing.json")]) == 2
