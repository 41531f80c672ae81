"""Recording one run of 5,000 tests: PostgreSQL vs SQLite, in the same command.

Builds a report of N tests (each with 20 raw latency samples, tokens and memory,
as the plugin writes them), then records it with ``HistoryStore.record_run`` into
a fresh SQLite file and into a throwaway PostgreSQL cluster on 127.0.0.1
(``tests/pg_cluster.py``: initdb + pg_ctl, Debian's ``postgresql`` package),
alternating, several times.  Prints the median time of each and the ratio
PostgreSQL / SQLite.  Also times a history baseline for one test (runs since the
last change point) on both stores after 40 recorded runs of 200 tests.

Run: ``python bench/bench_history_store.py [--tests 5000] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from pytest_agentperf.history import HistoryStore, open_history
from pytest_agentperf.history.changes import HistoryBaseline
from pytest_agentperf.report import build_report, environment
from pytest_agentperf.stats import summarize

ROOT = Path(__file__).resolve().parents[1]


def make_report(n: int, rng: random.Random, level: float = 1.0) -> dict[str, Any]:
    tests = []
    for i in range(n):
        samples = [0.010 * level * (1 + rng.gauss(0, 0.05)) for _ in range(20)]
        lat = summarize(samples)
        lat.update(exact=True, source="profiler", samples=samples)
        tests.append({"nodeid": f"tests/test_mod{i // 100}.py::test_{i}", "outcome": "passed",
                      "duration_s": sum(samples), "budget": {"p95": 1.0}, "latency": lat,
                      "memory": {"peak_mb": 12.5, "method": "hwm"},
                      "tokens": {"total": 120, "prompt": 100, "completion": 20, "requests": 1,
                                 "per_request": 120.0},
                      "operations": {}, "violations": [], "findings": []})
    return build_report(tests=tests, env=environment(ROOT, "8", "bench"), complete=True)


def timed_record(store: HistoryStore, report: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    store.record_run(report)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from pg_cluster import cluster

    rng = random.Random(1)
    report = make_report(args.tests, rng)
    with cluster() as pg, tempfile.TemporaryDirectory() as tmp:
        os.environ["PGPASSWORD"] = pg.password
        url = pg.create_db("bench")
        sqlite_t, pg_t = [], []
        with open_history(Path(tmp) / "h.db") as sq, open_history(url) as pq:
            for _ in range(args.repeat):
                sqlite_t.append(timed_record(sq, report))
                pg_t.append(timed_record(pq, report))
        s, p = statistics.median(sqlite_t), statistics.median(pg_t)
        print(f"record one run of {args.tests} tests (median of {args.repeat}):")
        print(f"  SQLite      {s * 1e3:8.0f} ms")
        print(f"  PostgreSQL  {p * 1e3:8.0f} ms   ratio PostgreSQL / SQLite = {p / s:.2f}")

        url2 = pg.create_db("bench_baseline")
        with open_history(Path(tmp) / "b.db") as sq, open_history(url2) as pq:
            for run in range(40):
                r = make_report(200, rng, level=1.0 if run < 30 else 1.2)
                sq.record_run(r)
                pq.record_run(r)
            times = {}
            for name, store in (("SQLite", sq), ("PostgreSQL", pq)):
                group = store.runs(limit=1)[0].machine_group or ""
                base = HistoryBaseline(store, group)
                t0 = time.perf_counter()
                for i in range(20):
                    base.entry(f"tests/test_mod{i // 100}.py::test_{i}", r["tests"][i])
                times[name] = (time.perf_counter() - t0) / 20
            print("history baseline per test (40 runs, a 20 % step at run 31, change points "
                  "on 5 metrics + drift):")
            print(f"  SQLite      {times['SQLite'] * 1e3:8.1f} ms")
            print(f"  PostgreSQL  {times['PostgreSQL'] * 1e3:8.1f} ms   ratio "
                  f"{times['PostgreSQL'] / times['SQLite']:.2f}")


if __name__ == "__main__":
    main()
