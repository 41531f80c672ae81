"""Change-point detection on simulated run histories vs the pairwise gate on the same series.

Each series is 40 runs; each run has 30 latency samples from the noise model of
``bench_regression_stats.py`` (log-normal, median 10 ms, sigma 0.1 in log space,
5 % outliers x2..6), and the series is one headline metric per run (p50 or p95).

* **no shift**: how many series get any change point (false alarms);
* **20 % step** at run 35: found within the 5 runs after it (a change point
  within 2 runs of the step when the series ends 5 runs after it);
* **2 %-per-run creep** from run 25: found within 15 runs (an upward change
  point at or after run 25, or a drift reported, by the end of the series).

Side by side, the **pairwise gate** on the same series: each run's samples against
the 5 runs before it pooled (``compare.compare_entries``, +10 % and Mann-Whitney
p < 0.005), as ``--perf-compare=history`` did before change points, at every run
of the window (the 5 runs from the step, the 15 runs of the creep, the last 15
runs without a shift): a hit when any of them fails.

Per-run p95 of 30 samples with 5 % outliers is mostly outlier noise: E-divisive on
that series (row ``p95-run``) finds neither the step nor the creep.  Row ``p95`` is
what the history searches now: :func:`~pytest_agentperf.changepoints.quantile_changes`
on the runs' samples (shares above the p95 before/after each split, whole runs
permuted).  Rows ``p95-rank`` (E-divisive on the ranks of the per-run p95) and
``p90`` (the per-run p90) are the alternatives measured before it.

The 20 % step scales the hiccups too (every sample of a run is ``level x`` its
noise).  With exactly 5 % hiccups x2..6 the model's p95 falls in the empty gap
between the latency body (at most ~1.4x the median) and the hiccups (at least
~1.8x): its density there is ~1 % of the density at the p50, so the p95 itself
carries almost no information about the level.  **bound** prints the power of the
best possible test of "the p95 rose" given the exact p95 before the step (a sign
test of the 150 samples after it, alpha 0.005).  The same series with 2 % hiccups
(the p95 inside the latency body) are measured beside it.

**Speed**: the same series through the E-divisive of commit ``REFERENCE`` (before the
numpy batches and per-segment seeds, read with ``git show``), this version without
numpy (pure Python), and with numpy: ms per series and the ratios, in one command.

Run: ``python bench/bench_changepoints.py [--quick] [--part detect|speed|all]``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_agentperf.changepoints import ChangePoint, e_divisive, quantile_changes
from pytest_agentperf.compare import Tolerances, compare_entries
from pytest_agentperf.stats import summarize

RUNS = 40
SAMPLES = 30
#: series per cell whose runs-to-find are measured (each search again on every prefix)
DELAYS = 30
#: the last commit with the E-divisive before the batches (the speed reference)
REFERENCE = "125a5b4"


def run_samples(rng: random.Random, level: float, sigma: float = 0.1,
                outliers: float = 0.05) -> list[float]:
    """One run: the noise model of ``bench_regression_stats.py`` (the level scales every
    sample, hiccups included)."""
    out = []
    for _ in range(SAMPLES):
        v = 0.010 * level * math.exp(rng.gauss(0.0, sigma))
        if rng.random() < outliers:
            v *= rng.uniform(2.0, 6.0)
        out.append(v)
    return out


def levels(kind: str) -> list[float]:
    if kind == "none":
        return [1.0] * RUNS
    if kind == "step":
        return [1.0 if i < 35 else 1.2 for i in range(RUNS)]
    return [1.0 if i < 25 else 1.02 ** (i - 24) for i in range(RUNS)]  # creep


def entry(samples: list[float]) -> dict[str, Any]:
    lat = summarize(samples)
    lat["samples"] = samples
    return {"nodeid": "t", "latency": lat}


def metric_series(runs: list[list[float]], metric: str) -> list[float]:
    if metric == "p95-rank":
        p95 = [summarize(r)["p95"] for r in runs]
        order = sorted(range(len(p95)), key=p95.__getitem__)
        ranks = [0.0] * len(p95)
        for rank, i in enumerate(order):
            ranks[i] = float(rank)
        return ranks
    if metric == "p90":
        return [summarize(r)["p90"] for r in runs]
    if metric == "p95-run":
        return [summarize(r)["p95"] for r in runs]
    return [summarize(r)[metric] for r in runs]


def detect(runs: list[list[float]], metric: str) -> list[ChangePoint]:
    """Change points of ``metric``: p95 on the samples (as the history), else on the
    per-run series."""
    if metric == "p95":
        return quantile_changes(runs, 95)
    return e_divisive(metric_series(runs, metric))


def trial(kind: str, metric: str, rng: random.Random, outliers: float = 0.05,
          want_delay: bool = False) -> tuple[bool, bool, float, int | None]:
    """(change-point detection hit, pairwise gate hit, seconds spent detecting, and with
    ``want_delay`` the runs after the shift began until a search finds it)."""
    runs = [run_samples(rng, lv, outliers=outliers) for lv in levels(kind)]
    t0 = time.perf_counter()
    cps = detect(runs, metric)
    spent = time.perf_counter() - t0
    first = 35 if kind == "step" else 25
    if kind == "none":
        hit = bool(cps)
    elif kind == "step":
        hit = any(abs(c.index - 35) <= 2 and c.after > c.before for c in cps)
    else:
        hit = any(c.index >= 25 and c.after > c.before for c in cps)
    delay = None
    if want_delay and hit and kind != "none":  # the shortest prefix that shows it
        delay = _runs_to_detect(runs, metric, first)
    # the gate gets a chance at every run of the window: 5 after the step, 15 of the creep,
    # the last 15 runs without a shift
    gate = any(compare_entries(entry([v for r in runs[i - 5:i] for v in r]), entry(runs[i]),
                               Tolerances()).verdict == "regression"
               for i in range(first, RUNS))
    return hit, gate, spent, delay


def _runs_to_detect(runs: list[list[float]], metric: str, first: int) -> int | None:
    """How many runs from ``first`` on the series needs before an upward change point at
    or after ``first - 2`` appears (the history is searched after every run)."""
    for end in range(first + 3, RUNS + 1):
        part = runs[:end]
        if any(c.index >= first - 2 and c.after > c.before
               for c in detect(part, metric)):
            return end - first
    return None


def bound(outliers: float) -> tuple[float, float, float]:
    """(true p95 before the step, share of samples above it after a 20 % step, power of the
    one-sided sign test of the 150 samples after the step at alpha 0.005)."""
    rng = random.Random(f"bound-{outliers}")
    big = sorted(v for _ in range(20_000) for v in run_samples(rng, 1.0, outliers=outliers))
    p95 = big[int(0.95 * len(big))]
    after = [v for _ in range(20_000) for v in run_samples(rng, 1.2, outliers=outliers)]
    share = sum(v > p95 for v in after) / len(after)
    n = 5 * SAMPLES

    def tail(k: int, p: float) -> float:  # P(Binomial(n, p) >= k)
        return math.fsum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))

    k = next(k for k in range(n + 1) if tail(k, 0.05) <= 0.005)
    return p95 / 0.010, share, tail(k, share)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer series")
    ap.add_argument("--part", choices=("detect", "speed", "all"), default="all")
    ap.add_argument("--outliers", default="0.05,0.02",
                    help="hiccup shares to simulate (default 0.05,0.02; the issue's is 0.05)")
    args = ap.parse_args()
    if args.part == "speed":
        speed(30 if args.quick else 100)
        return
    n_null, n_other = (300, 100) if args.quick else (1000, 300)
    t_start = time.perf_counter()
    for outliers in (float(v) for v in args.outliers.split(",")):
        p95, share, power = bound(outliers)
        print(f"\n{RUNS} runs per series, {SAMPLES} samples per run, sigma 0.1, "
              f"{outliers:.0%} hiccups x2..6; alpha 0.005, 199 permutations, min 3 runs a side")
        print(f"bound: true p95 {p95:.2f}x the median; after a 20 % step {share:.2%} of "
              f"samples exceed it (5 % before): the best sign test of 5 runs finds it in "
              f"{power:.1%}")
        print(f"{'scenario':<26} {'metric':<8} {'series':>6} | {'change points':>13} "
              f"{'runs to find':>12} {'pairwise gate':>13} | {'ms/series':>9}")
        for kind, label in (("none", "no shift (false alarms)"),
                            ("step", "20% step, 5 runs after"),
                            ("creep", "2%/run creep, 15 runs")):
            metrics = ("p50", "p95", "p95-run") + (("p95-rank", "p90") if outliers == 0.05
                                                   else ())
            for metric in metrics:
                rng = random.Random(f"{kind}-{metric if metric != 'p95-run' else 'p95'}"
                                    + ("" if outliers == 0.05 else f"-{outliers}"))
                n = n_null if kind == "none" else n_other
                hits = gates = 0
                spent = 0.0
                delays: list[int] = []
                for _ in range(n):
                    hit, gate, s, delay = trial(kind, metric, rng, outliers,
                                                len(delays) < DELAYS)
                    hits += hit
                    gates += gate
                    spent += s
                    if delay is not None:
                        delays.append(delay)
                found = (f"{sorted(delays)[len(delays) // 2]:>5} median" if delays
                         else f"{'-':>12}")
                print(f"{label:<26} {metric:<8} {n:>6} | {hits / n:>13.1%} {found:>12} "
                      f"{gates / n:>13.1%} | {spent / n * 1e3:>9.1f}", flush=True)
    print(f"elapsed {time.perf_counter() - t_start:.1f} s")
    speed(30 if args.quick else 100)


def _reference() -> Any:
    """The E-divisive of commit REFERENCE as a module, or None without git."""
    import subprocess
    import types

    root = Path(__file__).resolve().parents[1]
    try:
        text = subprocess.run(["git", "show", f"{REFERENCE}:pytest_agentperf/changepoints.py"],
                              cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("changepoints_reference")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(text, f"{REFERENCE}:changepoints.py", "exec"), module.__dict__)
    return module


def speed(n: int) -> None:
    from pytest_agentperf import changepoints

    rng = random.Random("speed")
    series = [metric_series([run_samples(rng, lv) for lv in levels(kind)], "p50")
              for _ in range(n) for kind in ("none", "step", "creep")]
    timings: dict[str, float] = {}
    answers: dict[str, list[list[tuple[int, float]]]] = {}
    ref = _reference()
    if ref is not None:
        t0 = time.perf_counter()
        answers["ref"] = [[(c.index, c.p_value) for c in ref.e_divisive(s)] for s in series]
        timings[f"commit {REFERENCE}"] = time.perf_counter() - t0
    batch = changepoints._batch_evaluator
    changepoints._batch_evaluator = lambda: None  # type: ignore[assignment]
    try:
        t0 = time.perf_counter()
        answers["pure"] = [[(c.index, c.p_value) for c in changepoints.e_divisive(s)]
                           for s in series]
        timings["pure Python"] = time.perf_counter() - t0
    finally:
        changepoints._batch_evaluator = batch  # type: ignore[assignment]
    if batch() is not None:
        t0 = time.perf_counter()
        answers["numpy"] = [[(c.index, c.p_value) for c in changepoints.e_divisive(s)]
                            for s in series]
        timings["numpy batches"] = time.perf_counter() - t0
    same = all(a == next(iter(answers.values())) for a in answers.values())
    first = next(iter(timings.values()))
    print(f"speed, {len(series)} series of {RUNS} runs (p50; no shift, step, creep); "
          f"the same change points and p-values from all: {same}")
    for name, spent in timings.items():
        print(f"  {name:<16} {spent / len(series) * 1e3:>8.1f} ms/series  "
              f"(ratio first / this {first / spent:.1f})")


if __name__ == "__main__":
    main()
