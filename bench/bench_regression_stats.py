"""False-alarm rate and power of the regression gate vs pytest-benchmark's percentage rule.

Synthetic noisy latencies: log-normal (median 10 ms, sigma in log space) with a
fraction of outliers multiplied by 2..6 (a shared CI runner's hiccups).  For
each scenario the same pairs of samples go to

* **agentperf**: ``compare.compare_entries`` (a regression when p50, p95 or mean
  is beyond +10 % **and** a one-sided Mann-Whitney U test gives p < 0.005);
* **pytest-benchmark rule**: "the mean changed by more than +10 %" (its
  ``--benchmark-compare-fail=mean:10%``), no significance test.

Run: ``python bench/bench_regression_stats.py [--quick]``.
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

from pytest_agentperf.compare import Tolerances, compare_entries
from pytest_agentperf.stats import summarize


def noisy_samples(rng: random.Random, n: int, scale: float, sigma: float,
                  outliers: float) -> list[float]:
    out = []
    for _ in range(n):
        v = 0.010 * scale * math.exp(rng.gauss(0.0, sigma))
        if rng.random() < outliers:
            v *= rng.uniform(2.0, 6.0)
        out.append(v)
    return out


def entry(samples: list[float]) -> dict[str, Any]:
    lat = summarize(samples)
    lat["samples"] = samples
    return {"nodeid": "t", "latency": lat}


def rates(trials: int, n: int, shift: float, sigma: float, outliers: float,
          seed: int) -> tuple[float, float]:
    """(agentperf regression rate, pytest-benchmark rule rate) over ``trials`` pairs."""
    rng = random.Random(seed)
    tol = Tolerances()
    ours = theirs = 0
    for _ in range(trials):
        base = noisy_samples(rng, n, 1.0, sigma, outliers)
        cur = noisy_samples(rng, n, 1.0 + shift, sigma, outliers)
        if compare_entries(entry(base), entry(cur), tol).verdict == "regression":
            ours += 1
        if math.fsum(cur) / n > math.fsum(base) / n * (1 + tol.latency):
            theirs += 1
    return ours / trials, theirs / trials


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer trials and scenarios")
    args = ap.parse_args()
    trials = 300 if args.quick else 1000
    scenarios = [(0.10, 0.05), (0.20, 0.05)] if args.quick else [
        (0.05, 0.0), (0.10, 0.0), (0.10, 0.05), (0.20, 0.05), (0.30, 0.05), (0.10, 0.10)]
    print(f"{trials} comparisons per cell, n = 30 samples per side, tolerance +10 %, "
          "alpha 0.005 (one-sided Mann-Whitney)")
    print(f"{'sigma':>6} {'outliers':>8} {'shift':>6} | {'agentperf':>9} "
          f"{'pytest-benchmark rule':>21}")
    t0 = time.perf_counter()
    for sigma, outliers in scenarios:
        for shift in (0.0, 0.20, 1.0):
            ours, theirs = rates(trials, 30, shift, sigma, outliers, seed=12345)
            label = "false alarms" if shift == 0 else "detected"
            print(f"{sigma:>6.2f} {outliers:>8.0%} {shift:>+6.0%} | {ours:>9.1%} "
                  f"{theirs:>21.1%}   ({label})")
    print(f"elapsed {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
