"""OptimizationChecker: N+1 patterns found (including the last cluster), varied ones not."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_agentperf.findings import N_PLUS_ONE
from pytest_agentperf.toolkit.checker import OptimizationChecker


def _ops(key: str, start: float, n: int, step: float) -> list[dict[str, Any]]:
    return [{"type": key, "timestamp": start + i * step} for i in range(n)]


def test_single_tight_loop_is_found() -> None:
    ops = _ops("db:query", 100.0, 20, 0.002)
    # the guide's version never examined the last (here: only) cluster
    assert OptimizationChecker.check_n_plus_one_queries(ops) == [
        "Potential N+1 query pattern detected for db:query: 1 clusters with avg size 20.0"
    ]
    [finding] = OptimizationChecker.find_n_plus_one(ops)
    assert finding.kind == N_PLUS_ONE
    assert finding.details["operation"] == "db:query"
    assert finding.details["calls"] == 20
    assert finding.details["cluster_sizes"] == [20]
    assert "db:query" in finding.message and "20" in finding.message


def test_several_clusters_are_all_reported_and_small_ones_ignored() -> None:
    ops = (
        _ops("tool:search", 0.0, 8, 0.01)
        + _ops("tool:search", 1.0, 3, 0.01)  # too small a cluster
        + _ops("tool:search", 2.0, 12, 0.01)  # the last cluster
    )
    [finding] = OptimizationChecker.find_n_plus_one(list(reversed(ops)))  # order-free
    assert finding.details["cluster_sizes"] == [8, 12]
    assert finding.details["calls"] == 23
    assert finding.details["avg_cluster_size"] == 10.0
    assert OptimizationChecker.check_n_plus_one_queries(ops) == [
        "Potential N+1 query pattern detected for tool:search: 2 clusters with avg size 10.0"
    ]


def test_varied_sequence_is_not_flagged() -> None:
    kinds = [f"agent{i % 5}:{op}" for i, op in enumerate(
        ["plan", "search", "read", "summarise", "reply", "critique", "store", "recall", "rank",
         "answer"] * 3
    )]
    ops = [{"type": k, "timestamp": 10.0 + i * 0.005} for i, k in enumerate(kinds)]
    assert OptimizationChecker.find_n_plus_one(ops) == []
    assert OptimizationChecker.check_n_plus_one_queries(ops) == []


def test_repeated_but_spread_out_calls_are_not_flagged() -> None:
    ops = _ops("llm:chat", 0.0, 30, 0.5)  # one call every 500 ms: a conversation
    assert OptimizationChecker.find_n_plus_one(ops) == []


def test_few_calls_are_not_flagged() -> None:
    assert OptimizationChecker.find_n_plus_one(_ops("db:query", 0.0, 10, 0.001)) == []
    assert OptimizationChecker.find_n_plus_one([]) == []


def test_interleaved_operations_are_examined_each_on_its_own() -> None:
    ops: list[tuple[str, float]] = []
    for i in range(15):  # for item in items: cache.get(item); db.get(item)
        ops.append(("cache:get", i * 0.004))
        ops.append(("db:get", i * 0.004 + 0.002))
    found = {f.details["operation"]: f.details for f in OptimizationChecker.find_n_plus_one(ops)}
    assert set(found) == {"cache:get", "db:get"}
    assert found["db:get"]["cluster_sizes"] == [15]


def test_thresholds_are_parameters() -> None:
    ops = _ops("db:query", 0.0, 20, 0.2)
    assert OptimizationChecker.find_n_plus_one(ops) == []
    [finding] = OptimizationChecker.find_n_plus_one(ops, max_gap_s=0.5)
    assert finding.details["max_gap_s"] == 0.5
    assert OptimizationChecker.find_n_plus_one(ops, max_gap_s=0.5, min_cluster_size=21) == []
    with pytest.raises(ValueError):
        OptimizationChecker.find_n_plus_one(ops, max_gap_s=0)


def test_check_synchronous_io() -> None:
    issues = OptimizationChecker.check_synchronous_io(
        {"function_calls": ["time.sleep", "open", "asyncio.sleep"]}
    )
    assert issues == [
        "Synchronous I/O detected: time.sleep. Consider using async alternative.",
        "Synchronous I/O detected: open(. Consider using async alternative.",
    ]
    assert OptimizationChecker.check_synchronous_io({"function_calls": ["asyncio.sleep"]}) == []
    assert OptimizationChecker.check_synchronous_io({}) == []
    source = "data = requests.get(url)\nawait asyncio.sleep(1)\n"
    assert OptimizationChecker.check_synchronous_io({"function_calls": source}) == [
        "Synchronous I/O detected: requests.get. Consider using async alternative."
    ]
