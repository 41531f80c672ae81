"""Repeated runs and ``ab``: false alarms, detection power, and the cost of a run.

**Statistics** (simulated, the noise models of ``bench_regression_stats.py``):
log-normal latencies (median 10 ms, ``sigma`` in log space) with a fraction of
outliers x2..6, plus what separate pytest processes add — a per-process factor
(log-normal, 3 %) and a slow machine drift (a random walk, 2 % a round) that
both sides of an interleaved round share.  For each cell the same simulated
runs go to

* **ab, K rounds**: each side's K runs (``m`` samples each: ``perf_runs(m)``)
  merged with ``merge.merge_entries`` and compared with ``compare.compare_entries``
  — what ``pytest-agentperf ab --rounds K`` does;
* **baseline file**: the first round's base run against the first round's head
  run, one run each — ``--perf-compare`` with a saved report, here even from
  the same machine (a saved baseline from another runner adds runner-to-runner
  noise this simulation leaves out, so it flatters the baseline file).

Each cell gives the gate as it is, then in brackets, on the same samples, the
gate with the round test at its previous level (p <= 0.05) and the gate before
sessions were told apart (pooled Mann-Whitney as if the samples were iid).

**Cost of a run**: one trivial test with ``perf_runs(N + 1)`` against
``perf_runs(1)``, in separate pytest processes, per extra run.  The references in
the same command: N more parametrized copies of the test, measured (a budget) and
plain (what each run would cost as a separate pytest test); and pytest's own
protocol repeated N more times with nothing measured (a ``conftest.py`` hook that
re-runs setup/call/teardown the way ``perf_runs`` and pytest-rerunfailures do),
which splits an extra run into pytest's part and ours.  ``--previous REF`` adds
the ``perf_runs`` case on the code at REF (a temporary git worktree, first on the
import path).

Run: ``python bench/bench_runs.py [--quick] [--part stats|cost|all] [--previous REF]``.
"""

from __future__ import annotations

import argparse
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib
from collections.abc import Iterator

from pytest_agentperf import compare
from pytest_agentperf.compare import Tolerances, compare_entries
from pytest_agentperf.merge import merge_entries
from pytest_agentperf.stats import best_possible_p, mann_whitney_u, summarize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_regression_stats import noisy_samples as run_samples  # the same noise model

PROCESS_SIGMA = 0.03
DRIFT_SIGMA = 0.02


def entry(samples: list[float]) -> dict[str, Any]:
    lat = summarize(samples)
    lat["samples"] = samples
    lat["source"] = "call"
    return {"nodeid": "t", "outcome": "passed", "latency": lat}


def simulate(rng: random.Random, rounds: int, m: int, shift: float, sigma: float,
             outliers: float, process: float = PROCESS_SIGMA
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-round entries of base and head, interleaved A B, B A, ... on one drifting machine."""
    drift = 1.0
    base: list[dict[str, Any]] = []
    head: list[dict[str, Any]] = []
    for _ in range(rounds):
        drift *= math.exp(rng.gauss(0.0, DRIFT_SIGMA))
        for side in ("base", "head"):
            factor = drift * math.exp(rng.gauss(0.0, process))
            if side == "head":
                factor *= 1.0 + shift
            samples = run_samples(rng, m, factor, sigma, outliers)
            (base if side == "base" else head).append(entry(samples))
    return base, head


@contextlib.contextmanager
def round_level(level: float) -> Iterator[None]:
    """The gate with its round test at another level (the previous one was 0.05)."""
    saved = compare.ROUND_ALPHA_MAX
    compare.ROUND_ALPHA_MAX = level
    try:
        yield
    finally:
        compare.ROUND_ALPHA_MAX = saved


def regressed(base: list[dict[str, Any]], head: list[dict[str, Any]], tol: Tolerances
              ) -> tuple[bool, bool, bool]:
    """(the gate, the gate with the round test at p <= 0.05, the gate before sessions:
    Mann-Whitney on the pooled samples as if iid)."""
    b, h = merge_entries(base), merge_entries(head)
    now = compare_entries(b, h, tol).verdict == "regression"
    with round_level(0.05):
        previous = compare_entries(b, h, tol).verdict == "regression"
    bs, hs = b["latency"]["samples"], h["latency"]["samples"]
    before = False
    if min(len(bs), len(hs)) >= tol.min_samples and best_possible_p(len(bs), len(hs)) < tol.alpha:
        changed = any(h["latency"][k] > b["latency"][k] * (1 + tol.latency)
                      for k in ("p50", "p95", "mean"))
        before = changed and mann_whitney_u(hs, bs, "greater").p_value < tol.alpha
    return now, previous, before


def _cell(counts: list[int], trials: int) -> str:
    now, previous, before = (c / trials for c in counts)
    return f"{now:>5.1%} ({previous:>5.1%};{before:>5.1%})"


def _run_cells(rng: random.Random, trials: int, m: int, shift: float, sigma: float,
               outliers: float, process: float = PROCESS_SIGMA) -> list[str]:
    counts = {k: [0, 0, 0] for k in (5, 10, 20, 1)}  # k=1: the baseline file
    for _ in range(trials):
        base, head = simulate(rng, 20, m, shift, sigma, outliers, process)
        for k, c in counts.items():
            for i, hit in enumerate(regressed(base[:k], head[:k], tol=Tolerances())):
                c[i] += hit
    return [_cell(c, trials) for c in counts.values()]


def stats_part(quick: bool, focus: bool = False) -> None:
    trials = 200 if quick else 1000
    scenarios = [(0.10, 0.05)] if quick or focus else [(0.05, 0.0), (0.10, 0.0), (0.10, 0.05),
                                                       (0.20, 0.05)]
    ms = (5, 10) if focus else (1, 5) if quick else (1, 5, 10)
    level = compare.round_alpha(Tolerances())
    print(f"{trials} simulated comparisons per cell; samples per run m (perf_runs(m)); "
          f"process noise {PROCESS_SIGMA:.0%}, drift {DRIFT_SIGMA:.0%}/round; gate: +10 % "
          "and one-sided Mann-Whitney p < 0.005 (one session a side: beyond the 5 % noise "
          f"allowance; several: and the round permutation test p <= {level:g}).  In "
          "brackets, the same samples through the gate with the round test at p <= 0.05 "
          "(the previous level); and the gate before sessions (pooled Mann-Whitney as if iid)")
    head = (f"{'sigma':>5} {'outl':>4} {'m':>3} {'shift':>6} | {'ab K=5':>19} {'K=10':>19} "
            f"{'K=20':>19} | {'baseline file':>19}")
    print(head)
    t0 = time.perf_counter()
    for sigma, outliers in scenarios:
        for m in ms:
            for shift in (0.0, 0.20):
                cells = _run_cells(random.Random(2024), trials, m, shift, sigma, outliers)
                label = "false alarms" if shift == 0 else "detected"
                print(f"{sigma:>5.2f} {outliers:>4.0%} {m:>3} {shift:>+6.0%} | "
                      f"{' '.join(cells[:3])} | {cells[3]}   ({label})", flush=True)
    busy = PROCESS_SIGMA * 5
    print(f"a busy machine (CPU burners coming and going): process noise {busy:.0%}")
    for m in (5, 10):
        for shift in (0.0, 0.20):
            cells = _run_cells(random.Random(2025), trials, m, shift, 0.10, 0.05, busy)
            label = "false alarms" if shift == 0 else "detected"
            print(f"{0.1:>5.2f} {0.05:>4.0%} {m:>3} {shift:>+6.0%} | {' '.join(cells[:3])} | "
                  f"{cells[3]}   ({label})", flush=True)
    print(f"stats elapsed {time.perf_counter() - t0:.1f} s")


TEST_FILE = """
import pytest

@pytest.mark.perf_runs({runs})
def test_trivial():
    pass

@pytest.mark.bare_runs({runs})
def test_bare():
    pass

@pytest.mark.parametrize("i", range({copies}))
@pytest.mark.perf_budget(p95=100)
def test_copy(i):
    pass

@pytest.mark.parametrize("i", range({copies}))
def test_plain(i):
    pass
"""

#: pytest's protocol (setup, call, teardown with every plugin's hooks) repeated, nothing
#: measured: the part of an extra run that is pytest's own
CONFTEST = """
import pytest
from _pytest.runner import runtestprotocol


def pytest_configure(config):
    config.addinivalue_line("markers", "bare_runs(n): run the test n times, nothing measured")


class _Target:
    def __init__(self, item, nextitem):
        self.item, self.nextitem, self.final = item, nextitem, False

    def listchain(self):
        if self.final:
            return self.nextitem.listchain() if self.nextitem is not None else []
        return self.item.listchain()[:-1]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    mark = item.get_closest_marker("bare_runs")
    if mark is None:
        return None
    n = mark.args[0]
    target = _Target(item, nextitem)
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for i in range(n):
        target.final = i == n - 1
        reports = runtestprotocol(item, log=False, nextitem=target)
    for rep in reports:
        item.ihook.pytest_runtest_logreport(report=rep)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
"""


def _session_seconds(directory: Path, runs: int, copies: int, select: str,
                     args: tuple[str, ...] = (), path: str | None = None) -> float:
    (directory / "test_cost.py").write_text(TEST_FILE.format(runs=runs, copies=copies))
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
            "pytest_agentperf.plugin", "-k", select, "--junitxml=junit.xml", *args,
            "test_cost.py"]
    env = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": "/usr/bin:/bin"}
    if path is not None:
        env["PYTHONPATH"] = path
    subprocess.run(argv, cwd=directory, env=env, check=True, capture_output=True)
    import xml.etree.ElementTree as ET

    suite = ET.parse(directory / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    return float(suite.get("time", "nan"))


@contextlib.contextmanager
def _worktree(ref: str | None) -> Iterator[str | None]:
    """The code at ``ref`` in a temporary git worktree (None: no previous code)."""
    if ref is None:
        yield None
        return
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="bench-runs-prev-") as tmp:
        where = str(Path(tmp) / "prev")
        subprocess.run(["git", "-C", str(root), "worktree", "add", "-q", "--detach", where,
                        ref], check=True)
        try:
            yield where
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", where],
                           check=False)


def cost_part(quick: bool, previous: str | None = None) -> None:
    n = 500 if quick else 2000
    repeats = 3 if quick else 5
    off = ("--perf-memory=off",)
    with tempfile.TemporaryDirectory(prefix="bench-runs-") as tmp, _worktree(previous) as prev:
        d = Path(tmp)
        (d / "pytest.ini").write_text("[pytest]\n")
        (d / "conftest.py").write_text(CONFTEST)
        cases: dict[str, tuple[int, int, str, tuple[str, ...], str | None]] = {
            "runs1": (1, 1, "trivial", (), None), "runsn": (n + 1, 1, "trivial", (), None),
            "bare1": (1, 1, "bare", (), None), "baren": (n + 1, 1, "bare", (), None),
            "off1": (1, 1, "trivial", off, None), "offn": (n + 1, 1, "trivial", off, None),
            "ref1": (1, 1, "copy", (), None), "refn": (1, n + 1, "copy", (), None),
            "plain1": (1, 1, "plain", (), None), "plainn": (1, n + 1, "plain", (), None)}
        if prev is not None:
            cases["prev1"] = (1, 1, "trivial", (), prev)
            cases["prevn"] = (n + 1, 1, "trivial", (), prev)
        results: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(repeats):  # interleaved, min of each
            for key, (runs, copies, select, args, path) in cases.items():
                results[key].append(_session_seconds(d, runs, copies, select, args, path))
    best = {k: min(v) for k, v in results.items()}

    def extra(key: str) -> float:
        return (best[key + "n"] - best[key + "1"]) / n

    per_run = extra("runs")
    bare, off_run = extra("bare"), extra("off")
    per_test, per_plain = extra("ref"), extra("plain")
    print(f"cost of one extra run of a trivial test (min of {repeats} sessions, {n} extra "
          "runs or tests, JUnit session time, all in this command):")
    print(f"  perf_runs: {per_run * 1e3:.3f} ms per extra run (target <= 0.2 ms)")
    print(f"  pytest's own protocol repeated, nothing measured: {bare * 1e3:.3f} ms "
          f"(ratio run / bare {per_run / bare:.2f}); ours on top: {(per_run - bare) * 1e3:.3f} "
          f"ms = {(per_run - bare) / per_run:.0%} of a run")
    print(f"  perf_runs with --perf-memory=off: {off_run * 1e3:.3f} ms (the memory probe: "
          f"{(per_run - off_run) * 1e3:.3f} ms a run)")
    print(f"  reference, one more parametrized measured test: {per_test * 1e3:.3f} ms "
          f"(ratio run / test {per_run / per_test:.2f})")
    print(f"  reference, one more plain pytest test (no plugin at work): "
          f"{per_plain * 1e3:.3f} ms (ratio run / plain test {per_run / per_plain:.2f})")
    if "prev1" in best:
        per_prev = extra("prev")
        print(f"  the same perf_runs on {previous}: {per_prev * 1e3:.3f} ms (ratio now / "
              f"previous {per_run / per_prev:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer trials")
    ap.add_argument("--part", choices=("stats", "cost", "all"), default="all")
    ap.add_argument("--focus", action="store_true", help="stats: only sigma 0.1 with 5 %% "
                    "outliers at perf_runs(5) and (10), and the busy machine (all trials)")
    ap.add_argument("--previous", metavar="REF", help="also time perf_runs on the code at "
                    "REF (git), for a now/previous ratio")
    args = ap.parse_args()
    if args.part in ("stats", "all"):
        stats_part(args.quick, args.focus)
    if args.part in ("cost", "all"):
        cost_part(args.quick, args.previous)


if __name__ == "__main__":
    main()
