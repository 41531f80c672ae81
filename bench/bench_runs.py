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
``perf_runs(1)``, in separate pytest processes, per extra run; the reference in
the same command is N parametrized copies of the same test (what each run would
cost as a separate pytest test).

Run: ``python bench/bench_runs.py [--quick] [--part stats|cost|all]``.
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


def stats_part(quick: bool) -> None:
    trials = 200 if quick else 1000
    scenarios = [(0.10, 0.05)] if quick else [(0.05, 0.0), (0.10, 0.0), (0.10, 0.05),
                                              (0.20, 0.05)]
    ms = (1, 5) if quick else (1, 5, 10)
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

@pytest.mark.parametrize("i", range({copies}))
@pytest.mark.perf_budget(p95=100)
def test_copy(i):
    pass

@pytest.mark.parametrize("i", range({copies}))
def test_plain(i):
    pass
"""


def _session_seconds(directory: Path, runs: int, copies: int, select: str) -> float:
    (directory / "test_cost.py").write_text(TEST_FILE.format(runs=runs, copies=copies))
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
            "pytest_agentperf.plugin", "-k", select, "--junitxml=junit.xml", "test_cost.py"]
    env = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run(argv, cwd=directory, env=env, check=True, capture_output=True)
    import xml.etree.ElementTree as ET

    suite = ET.parse(directory / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    return float(suite.get("time", "nan"))


def cost_part(quick: bool) -> None:
    n = 500 if quick else 2000
    repeats = 3 if quick else 5
    with tempfile.TemporaryDirectory(prefix="bench-runs-") as tmp:
        d = Path(tmp)
        (d / "pytest.ini").write_text("[pytest]\n")
        cases = {"one": (1, 1, "trivial"), "many": (n + 1, 1, "trivial"),
                 "ref1": (1, 1, "copy"), "refn": (1, n + 1, "copy"),
                 "plain1": (1, 1, "plain"), "plainn": (1, n + 1, "plain")}
        results: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(repeats):  # interleaved, min of each
            for key, (runs, copies, select) in cases.items():
                results[key].append(_session_seconds(d, runs, copies, select))
    best = {k: min(v) for k, v in results.items()}
    per_run = (best["many"] - best["one"]) / n
    per_test = (best["refn"] - best["ref1"]) / n
    per_plain = (best["plainn"] - best["plain1"]) / n
    print(f"cost of one extra run of a trivial measured test (min of {repeats} sessions, "
          f"{n} extra runs, JUnit session time):")
    print(f"  perf_runs: {per_run * 1e3:.3f} ms per extra run")
    print(f"  reference, one more parametrized measured test: {per_test * 1e3:.3f} ms "
          f"(ratio run / test {per_run / per_test:.2f})")
    print(f"  reference, one more plain pytest test (no plugin at work): "
          f"{per_plain * 1e3:.3f} ms (ratio run / plain test {per_run / per_plain:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer trials")
    ap.add_argument("--part", choices=("stats", "cost", "all"), default="all")
    args = ap.parse_args()
    if args.part in ("stats", "all"):
        stats_part(args.quick)
    if args.part in ("cost", "all"):
        cost_part(args.quick)


if __name__ == "__main__":
    main()
