"""``pytest-agentperf ab``: base against head on a small git repository made here.

Everything ab does is real (worktrees, interleaved sessions, pooling, the gate), but the
latencies are fed deterministically (``perf_record.add_latency``, one per run, spread by
the run's index): a test of the gate's logic must not depend on how busy the machine is
(real timings on 2 shared cores false-alarmed).  The slowdown doubles the library's cost;
the unchanged case is repeated three times.  The gate's behaviour on noisy real timings
is measured in ``bench/bench_runs.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_agentperf.ab import add_ab_parser, rounds_order
from pytest_agentperf.cli import main

from _support import read_report

pytestmark = pytest.mark.skipif(shutil.which("git") is None and not os.environ.get("CI"),
                                reason="needs git")

LIB = """
N = {n}
M = 30_000  # other()'s cost, the same on both sides
_calls = {{"work": 0, "other": 0}}


def _seconds(name, units):
    # what one call "takes": deterministic, spread over the runs of a session
    i = _calls[name] = _calls[name] + 1
    return units * 1e-7 * (1 + (i * 7919 % 13) / 20)


def work():
    return _seconds("work", N)


def other():
    return _seconds("other", M)
"""

TESTS = """
import pytest
import mylib


@pytest.mark.perf_runs(10, warmup=2)
def test_work(perf_record):
    perf_record.add_latency(mylib.work())


@pytest.mark.perf_runs(10, warmup=2)
def test_other(perf_record):   # the same function in base and head: never a regression
    perf_record.add_latency(mylib.other())
"""

#: the pytest arguments ab passes on: only this plugin, quiet
PYTEST_ARGS = ["--", "-q", "-p", "pytest_agentperf.plugin", "-p", "no:cacheprovider"]


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid")
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "proj"
    path.mkdir()
    git(path, "init", "-q")
    (path / "mylib.py").write_text(LIB.format(n=100_000))
    (path / "test_lib.py").write_text(TESTS)
    (path / "pytest.ini").write_text("[pytest]\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "base")
    monkeypatch.chdir(path)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return path


def worktrees(repo: Path) -> list[str]:
    return [line for line in git(repo, "worktree", "list").splitlines() if line.strip()]


def ab(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, dict[str, object]]:
    status = main(["ab", *args, "--rounds", "4", *PYTEST_ARGS])
    out = capsys.readouterr()
    data = {}
    if Path("agentperf-ab/comparison.json").exists():
        data = json.loads(Path("agentperf-ab/comparison.json").read_text())
    return status, out.out + out.err, data


def verdicts(data: dict[str, object]) -> dict[str, str]:
    tests = data["tests"]
    assert isinstance(tests, list)
    return {t["nodeid"].split("::")[-1]: t["verdict"] for t in tests}


def test_default_is_ten_rounds() -> None:
    # the round test needs p <= 0.01: 5 a side at best, 10 to find a 20 % shift reliably
    parser = argparse.ArgumentParser()
    add_ab_parser(parser.add_subparsers())
    assert parser.parse_args(["ab", "main"]).rounds == 10


def test_rounds_alternate_the_order() -> None:
    assert rounds_order(3) == [(0, "base"), (0, "head"), (1, "head"), (1, "base"),
                               (2, "base"), (2, "head")]


def test_a_commit_making_one_function_slower_is_its_tests_regression(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "mylib.py").write_text(LIB.format(n=200_000))
    git(repo, "commit", "-qam", "twice the work")
    status, out, data = ab(capsys, "HEAD~1")
    assert status == 1, out
    assert verdicts(data)["test_work"] == "regression", out
    assert verdicts(data)["test_other"] != "regression", out
    assert "test_work" in out and "REGRESSION" in out.upper()
    base = read_report(repo / "agentperf-ab/base.json")  # valid against the schema
    head = read_report(repo / "agentperf-ab/head.json")
    for report in (base, head):  # pooled over the rounds: 4 x 10 samples per test
        assert {t["latency"]["count"] for t in report["tests"]} == {40}
        assert {(t["runs"]["runs"], t["runs"]["sessions"]) for t in report["tests"]} == {(40, 4)}
    assert worktrees(repo) == worktrees(repo)[:1]  # the base worktree is gone


def test_an_identical_commit_is_not_a_regression_three_times(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "mylib.py").write_text("# same code, new comment\n" + LIB.format(n=100_000))
    git(repo, "commit", "-qam", "comment only")
    for _ in range(3):
        status, out, data = ab(capsys, "HEAD~1")
        assert status == 0, out
        assert "regression" not in verdicts(data).values(), out
    assert len(worktrees(repo)) == 1


def test_head_is_the_working_tree_with_its_uncommitted_changes(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "mylib.py").write_text(LIB.format(n=200_000))  # not committed
    status, out, data = ab(capsys, "HEAD")
    assert status == 1, out
    assert verdicts(data)["test_work"] == "regression", out
    assert data["base_commit"] == git(repo, "rev-parse", "HEAD")


def test_usage_errors_exit_2_and_leave_no_worktree(
    repo: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert main(["ab", "no-such-ref"]) == 2
    assert "BASE_REF 'no-such-ref' is not a commit" in capsys.readouterr().err
    assert main(["ab", "HEAD", "--", "-q", "-p", "pytest_agentperf.plugin", "-k", "nothing"]) == 2
    err = capsys.readouterr().err
    assert "pytest on base" in err and "exited with status 5" in err
    assert len(worktrees(repo)) == 1
    with pytest.raises(SystemExit) as exc:
        main(["ab", "HEAD", "--rounds", "0"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["compare", "a.json", "b.json", "--", "-q"])
    assert exc.value.code == 2
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert main(["ab", "HEAD"]) == 2
    assert "not a git repository" in capsys.readouterr().err


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_removes_the_worktree(repo: Path) -> None:
    (repo / "test_lib.py").write_text("import time\n\ndef test_slow():\n    time.sleep(60)\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_agentperf", "ab", "HEAD", "--", "-q", "-p",
         "pytest_agentperf.plugin"],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # an xdist worker ignores SIGINT and a child inherits that; a user's shell does not
        preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 60
        while len(worktrees(repo)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(worktrees(repo)) == 2, "the base worktree never appeared"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out
    assert "interrupted" in out
    assert len(worktrees(repo)) == 1
