"""Cost of pricing each captured LLM call (``perf_llm_prices``) in the capture's sink.

Folds the same stream of calls into :class:`~pytest_agentperf.llm.LLMStats` in four modes,
interleaved in a shuffled order, and prints the median time per call of each and its ratio to
the reference (no prices, as a test without ``perf_llm_prices``):

* ``none``  -- no pricer (the reference);
* ``table`` -- the user's price table;
* ``auto``  -- genai-prices, every call with the same usage (its memo answers);
* ``auto-distinct`` -- genai-prices, every call with a new usage (a dataset look-up each).

A real LLM call takes 0.1-10 s, so even the slowest mode is far below one call.

    python bench/bench_prices.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from pytest_agentperf.llm import LLMCall, LLMStats, ModelPrice
from pytest_agentperf.llm.cost import TablePricer
from pytest_agentperf.llm.prices import AutoPricer


def calls(n: int, distinct: bool, offset: int) -> list[LLMCall]:
    return [LLMCall("openai", "gpt-4o-mini", "chat", 0.1, agent="a",
                    prompt_tokens=1000 + (offset + i if distinct else 0), completion_tokens=100,
                    total_tokens=1100 + (offset + i if distinct else 0), cached_tokens=200)
            for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, rounds = (200, 5) if args.quick else (1000, 15)
    modes = {
        "none": None,
        "table": TablePricer({"gpt-4o-mini": ModelPrice(0.15, 0.6, 0.075)}),
        "auto": AutoPricer(),
        "auto-distinct": AutoPricer(),
    }
    times: dict[str, list[float]] = {m: [] for m in modes}
    offset = 0
    for _ in range(rounds):
        order = list(modes)
        random.shuffle(order)
        for mode in order:
            batch = calls(n, mode == "auto-distinct", offset)
            offset += n
            stats = LLMStats(modes[mode])
            t0 = time.perf_counter()
            for call in batch:
                stats.add(call)
            times[mode].append((time.perf_counter() - t0) / n)
    ref = statistics.median(times["none"])
    for mode, values in times.items():
        med = statistics.median(values)
        print(f"{mode:14s} {med * 1e6:8.1f} us/call  ratio {med / ref:6.2f}")


if __name__ == "__main__":
    main()
