"""compare.py: Mann-Whitney U, verdicts per metric, report comparison, merging, simulation."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from pytest_agentperf.compare import (
    ROUND_ALPHA_MAX,
    Tolerances,
    compare_entries,
    compare_reports,
    environment_warnings,
    format_comparison,
    latency_significance,
    parse_tolerance_spec,
    round_alpha,
)
from pytest_agentperf.merge import merge_entries, merge_reports, pool_samples
from pytest_agentperf.report import load_schema
from pytest_agentperf.stats import summarize


def entry(samples: list[float], nodeid: str = "t.py::t", tokens: int = 0,
          peak_mb: float | None = None, ops: dict[str, list[float]] | None = None,
          outcome: str = "passed") -> dict[str, Any]:
    lat = summarize(samples)
    lat.update(exact=True, source="profiler", samples=list(samples))
    operations = {}
    for key, values in (ops or {}).items():
        s = summarize(values)
        operations[key] = {"count": len(values), "total_s": math.fsum(values),
                           "mean_s": s["mean"], "p50_s": s["p50"], "p95_s": s["p95"],
                           "max_s": s["max"], "tokens": tokens, "samples": list(values)}
    return {
        "nodeid": nodeid, "outcome": outcome, "duration_s": math.fsum(samples),
        "budget": None, "latency": lat,
        "memory": None if peak_mb is None else {"peak_mb": peak_mb, "method": "sample"},
        "tokens": {"total": tokens, "prompt": tokens, "completion": 0, "requests": 1,
                   "per_request": float(tokens)},
        "operations": operations, "violations": [], "findings": [],
    }


def report(*tests: dict[str, Any], python: str = "3.11.9") -> dict[str, Any]:
    return {"schema_version": 1, "created": "2026-01-01T00:00:00Z", "complete": True,
            "environment": {"python": python, "platform": "Linux", "machine": "x86_64",
                            "cpu_count": 2, "pytest": "8", "agentperf": "0.1",
                            "git_commit": None},
            "summary": {}, "tests": list(tests)}


def noisy(rng: random.Random, n: int, scale: float = 1.0, sigma: float = 0.1,
          outliers: float = 0.05) -> list[float]:
    out = []
    for _ in range(n):
        v = 0.010 * scale * math.exp(rng.gauss(0.0, sigma))
        if rng.random() < outliers:
            v *= rng.uniform(2.0, 6.0)
        out.append(v)
    return out


# -- the simulation the issue asks for --------------------------------------------------
def test_false_alarms_and_power_by_simulation() -> None:
    """Log-normal (sigma 0.1) with 5 % outliers x2..6, n = 30 per side, defaults."""
    rng = random.Random(20261128)
    tol = Tolerances()
    trials = 1000
    false_alarms = bench_false = detected = bench_detected = 0
    for _ in range(trials):
        base, same = noisy(rng, 30), noisy(rng, 30)
        if compare_entries(entry(base), entry(same), tol).verdict == "regression":
            false_alarms += 1
        if sum(same) > sum(base) * 1.10:  # pytest-benchmark's bare mean rule
            bench_false += 1
        slower = noisy(rng, 30, scale=1.2)
        if compare_entries(entry(base), entry(slower), tol).verdict == "regression":
            detected += 1
        if sum(slower) > sum(base) * 1.10:
            bench_detected += 1
    assert false_alarms / trials <= 0.01
    assert detected / trials >= 0.95
    # the bare percentage rule flaps on the same samples (kept as a sanity check)
    assert bench_false > 10 * max(false_alarms, 1)


# -- process noise: sessions and the noise allowance -------------------------------------
def sessions_of(rng: random.Random, k: int, m: int, scale: float = 1.0,
                between: float = 0.03) -> list[dict[str, Any]]:
    """``k`` one-session entries of ``m`` samples, each session scaled by its own noise."""
    return [entry(noisy(rng, m, scale * math.exp(rng.gauss(0.0, between))))
            for _ in range(k)]


def test_identical_code_on_noisy_sessions_is_not_a_regression() -> None:
    """Sessions 20 % apart (CPU burners starting and stopping between rounds), identical
    code, 5 rounds of 10 runs a side: Mann-Whitney on the pooled samples alone alarms
    often; with the round test beside it the gate alarms at most at the round test's
    level (1 %), and a stricter alpha keeps it there."""
    rng = random.Random(2026)
    trials = 200
    alarms = strict_alarms = pooled_alarms = 0
    strict = Tolerances(alpha=0.001)
    for _ in range(trials):
        base = merge_entries(sessions_of(rng, 5, 10, between=0.2))
        head = merge_entries(sessions_of(rng, 5, 10, between=0.2))
        alarms += compare_entries(base, head).verdict == "regression"
        strict_alarms += compare_entries(base, head, strict).verdict == "regression"
        for e in (base, head):
            e["latency"].pop("sample_sessions")
        pooled_alarms += compare_entries(base, head).verdict == "regression"
    assert alarms / trials <= 0.01
    assert strict_alarms / trials <= 0.01
    assert pooled_alarms >= max(2 * alarms, 0.08 * trials)


def test_a_real_slowdown_over_rounds_is_found_with_round_evidence() -> None:
    """20 % slower, 5 samples a session: found >= 95 % of the time with 10 rounds a side
    (the issue's target); 5 rounds a side, whose round test can only reach p <= 0.01 by
    (nearly) separating the rounds completely, find it less often."""
    rng = random.Random(7)
    found = {5: 0, 10: 0}
    for k in found:
        for _ in range(100):
            base = merge_entries(sessions_of(rng, k, 5))
            head = merge_entries(sessions_of(rng, k, 5, scale=1.2))
            tc = compare_entries(base, head)
            found[k] += tc.verdict == "regression"
        p50 = next(m for m in tc.metrics if m.metric == "latency.p50")
        assert p50.evidence.method == "round-permutation"
        assert f"over {k}/{k} sessions" in p50.describe()
        assert "Mann-Whitney p=" in p50.describe()
    assert found[10] >= 95
    assert 80 <= found[5] < 95  # a smaller K is weaker, not blind
    assert "round permutation p=0.001 over 10/10 sessions" in p50.describe()


def _rounds_entry(centres: list[float]) -> dict[str, Any]:
    """One session (round) per centre, five samples each spread the same way."""
    return merge_entries([entry([c + s for s in (-0.2, -0.1, 0.0, 0.1, 0.2)])
                          for c in centres])


def test_the_round_test_must_reach_p_at_most_0_01() -> None:
    """Five rounds a side: the round permutation p is a multiple of 1/252.  Head's rounds
    are all slower but one; where the fastest base round sits decides between 2/252
    (a regression) and 3/252 = 0.012 (not one: above 0.01, though below the 0.05 the gate
    used before), with Mann-Whitney on the pooled samples far below alpha in both."""
    assert round_alpha(Tolerances()) == ROUND_ALPHA_MAX == 0.01
    assert round_alpha(Tolerances(alpha=0.0005)) == 0.005
    head = _rounds_entry([12.0, 12.2, 12.4, 12.6, 10.9])
    for top, p_round, verdict in ((11.0, "0.0079", "regression"),
                                  (12.1, "0.012", "unchanged")):
        base = _rounds_entry([10.0, 10.2, 10.4, 10.6, top])
        tc = compare_entries(base, head)
        p50 = next(m for m in tc.metrics if m.metric == "latency.p50")
        assert p50.change is not None and p50.change > 0.10
        assert p50.evidence.p_value is not None and p50.evidence.p_value < 1e-6
        assert f"round permutation p={p_round} over 5/5 sessions" in p50.describe()
        assert p50.verdict == verdict, p50.describe()
        assert tc.verdict == verdict
    # four rounds a side cannot reach 0.01 (1/70 at best): the noise allowance decides
    four = compare_entries(_rounds_entry([10.0, 10.2, 10.4, 10.6]),
                           _rounds_entry([12.0, 12.2, 12.4, 12.6]))
    p50 = next(m for m in four.metrics if m.metric == "latency.p50")
    assert p50.evidence.method == "mann-whitney" and p50.verdict == "regression"
    assert "beyond a 5% noise allowance" in p50.describe()


def test_one_session_needs_a_shift_beyond_the_noise_allowance() -> None:
    rng = random.Random(3)
    base = noisy(rng, 400, sigma=0.02, outliers=0)
    tol = Tolerances()
    # 4 % slower with 400 tight samples: certain, but within what processes differ by
    slightly = [v * 1.04 for v in noisy(rng, 400, sigma=0.02, outliers=0)]
    found = latency_significance(base, slightly, "greater", tol)
    assert found is not None and found[0] > 0.5 and found[1] == "mann-whitney"
    assert found[2] == "beyond a 5% noise allowance" and found[3] is True
    clearly = [v * 1.12 for v in noisy(rng, 400, sigma=0.02, outliers=0)]
    found = latency_significance(base, clearly, "greater", tol)
    assert found is not None and found[0] < 1e-9
    faster = [v / 1.12 for v in noisy(rng, 400, sigma=0.02, outliers=0)]
    assert compare_entries(entry(base), entry(faster)).verdict == "improvement"
    # the allowance is half the latency tolerance
    found = latency_significance(base, slightly, "greater", Tolerances(latency=0.0))
    assert found is not None and found[0] < 1e-9 and found[2] is None


# -- verdicts ----------------------------------------------------------------------------
def test_two_fold_slowdown_is_a_regression_with_evidence() -> None:
    rng = random.Random(1)
    base, cur = noisy(rng, 20), noisy(rng, 20, scale=2.0)
    tc = compare_entries(entry(base), entry(cur))
    assert tc.verdict == "regression"
    p50 = next(m for m in tc.metrics if m.metric == "latency.p50")
    assert p50.verdict == "regression"
    assert p50.change is not None and 0.6 < p50.change < 1.5
    assert p50.evidence.p_value is not None and p50.evidence.p_value < 1e-4
    text = p50.describe()
    assert "latency.p50" in text and "->" in text and "Mann-Whitney p=" in text
    assert "tolerance 10%" in text and "n=20/20" in text
    # the reverse is an improvement
    assert compare_entries(entry(cur), entry(base)).verdict == "improvement"


def test_too_few_samples_is_inconclusive_not_a_pass() -> None:
    tc = compare_entries(entry([0.01]), entry([0.05]))
    assert tc.verdict == "inconclusive"
    assert all(m.verdict == "inconclusive" for m in tc.metrics if m.metric.startswith("lat"))
    assert "too few samples" in (tc.metrics[0].evidence.note or "")
    # a within-tolerance change with few samples is inconclusive too
    assert compare_entries(entry([0.01] * 3), entry([0.01] * 3)).verdict == "inconclusive"


def test_small_change_significant_but_within_tolerance_is_unchanged() -> None:
    base = [0.010 + i * 1e-6 for i in range(50)]
    cur = [v * 1.05 for v in base]
    tc = compare_entries(entry(base), entry(cur))
    assert tc.verdict == "unchanged"


def test_tokens_compare_by_tolerance_alone() -> None:
    same = [0.01] * 10
    tc = compare_entries(entry(same, tokens=100), entry(same, tokens=150))
    tok = next(m for m in tc.metrics if m.metric == "tokens.total")
    assert tok.verdict == "regression" and tok.change == pytest.approx(0.5)
    assert tok.evidence.method == "tolerance"
    tok2 = next(m for m in compare_entries(entry(same, tokens=100),
                                           entry(same, tokens=104)).metrics
                if m.metric == "tokens.total")
    assert tok2.verdict == "unchanged"
    assert next(m for m in compare_entries(entry(same, tokens=100), entry(same, tokens=90))
                .metrics if m.metric == "tokens.total").verdict == "improvement"
    zero = next(m for m in compare_entries(entry(same, tokens=0), entry(same, tokens=3))
                .metrics if m.metric == "tokens.total")
    assert zero.verdict == "regression" and zero.change is None


def test_memory_needs_tolerance_and_floor() -> None:
    s = [0.01] * 10
    def mem(b: float, c: float, **kw: float) -> str:
        tc = compare_entries(entry(s, peak_mb=b), entry(s, peak_mb=c), Tolerances(**kw))
        return next(m.verdict for m in tc.metrics if m.metric == "memory.peak_mb")
    assert mem(1.0, 3.0) == "unchanged"  # +200 % but under the 5 MiB floor
    assert mem(100.0, 108.0) == "unchanged"  # +8 MiB but under +10 %
    assert mem(100.0, 120.0) == "regression"
    assert mem(120.0, 100.0) == "improvement"
    assert mem(1.0, 3.0, memory_floor_mb=1.0) == "regression"


def test_operations_compared_per_key() -> None:
    rng = random.Random(3)
    base = entry(noisy(rng, 20), ops={"planner:llm": noisy(rng, 20), "tool:x": [0.01]})
    cur = entry(noisy(rng, 20), ops={"planner:llm": noisy(rng, 20, scale=3.0),
                                     "tool:x": [0.01]})
    tc = compare_entries(base, cur)
    verdicts = {m.metric: m.verdict for m in tc.metrics}
    assert verdicts["op[planner:llm].p50"] == "regression"
    assert verdicts["op[tool:x].p95"] == "inconclusive"
    assert tc.verdict == "regression"


def test_compare_reports_and_table() -> None:
    rng = random.Random(4)
    a = noisy(rng, 15)
    base = report(entry(a, "t.py::same"), entry(a, "t.py::slow"), entry(a, "t.py::gone"))
    cur = report(entry(a, "t.py::same"), entry([v * 2 for v in a], "t.py::slow"),
                 entry(a, "t.py::new"), python="3.12.1")
    result = compare_reports(base, cur)
    verdicts = {t.nodeid: (t.verdict, t.status) for t in result.tests}
    assert verdicts == {
        "t.py::same": ("unchanged", "compared"), "t.py::slow": ("regression", "compared"),
        "t.py::new": ("inconclusive", "new"), "t.py::gone": ("inconclusive", "missing"),
    }
    assert result.has_regressions
    assert result.counts()["regression"] == 1
    assert "Python 3.11.9 vs 3.12.1" in result.environment_warnings[0]
    table = format_comparison(result)
    assert "t.py::slow" in table and "regression" in table and "t.py::gone" in table
    assert "1 regressed" in table and "warning: baseline comes from another machine" in table


def test_environment_warnings() -> None:
    env = report()["environment"]
    assert environment_warnings(env, dict(env)) == []
    assert "CPU count 2 vs 8" in environment_warnings(env, {**env, "cpu_count": 8})[0]
    assert "no environment" in environment_warnings(None, env)[0]


def test_tolerance_spec_parsing() -> None:
    assert parse_tolerance_spec("latency=20%,memory=0.2,tokens=0%,memory_floor=8") == {
        "latency": 0.2, "memory": 0.2, "tokens": 0.0, "memory_floor_mb": 8.0}
    assert parse_tolerance_spec("") == {}
    for bad, match in (("latency=10", "ambiguous"), ("speed=1%", "unknown tolerance key"),
                       ("latency", "key=value"), ("latency=x%", "not a number"),
                       ("alpha=0.9", "out of range")):
        with pytest.raises(ValueError, match=match):
            parse_tolerance_spec(bad)
    with pytest.raises(ValueError, match="unknown tolerance key"):
        Tolerances().override({"nope": 1.0})
    with pytest.raises(ValueError):
        Tolerances(latency=-1)


# -- merging -----------------------------------------------------------------------------
def test_pool_samples_exact_and_proportional() -> None:
    assert pool_samples([([1.0, 2.0], 2), ([3.0], 1)], 10) == ([1.0, 2.0, 3.0], True)
    pooled, exact = pool_samples([([1.0] * 100, 10_000), ([2.0] * 100, 100)], 1000)
    assert not exact
    ones, twos = pooled.count(1.0), pooled.count(2.0)
    assert ones == 100 and twos == 1  # proportional to the counts, within each reservoir


def test_merge_entries_pools_and_averages() -> None:
    a = entry([0.01] * 5, tokens=100, peak_mb=10.0, ops={"p:llm": [0.01] * 5})
    b = entry([0.03] * 5, tokens=200, peak_mb=30.0, ops={"p:llm": [0.03] * 5},
              outcome="failed")
    m = merge_entries([a, b])
    assert m["latency"]["count"] == 10 and m["latency"]["exact"] is True
    assert m["latency"]["p50"] == pytest.approx(0.02)
    assert m["tokens"]["total"] == 150  # per-run figures are averaged
    assert m["memory"]["peak_mb"] == 30.0 and m["memory"]["values"] == [10.0, 30.0]
    assert m["operations"]["p:llm"]["count"] == 10
    assert m["outcome"] == "failed"
    assert m["merged"] == {"runs": 2, "exact": True}
    assert m["latency"]["sample_sessions"] == [0] * 5 + [1] * 5
    assert m["operations"]["p:llm"]["sample_sessions"] == [0] * 5 + [1] * 5
    # a merged entry merged again keeps its sessions apart from the new ones
    again = merge_entries([m, entry([0.02] * 3)])
    assert again["latency"]["sample_sessions"] == [0] * 5 + [1] * 5 + [2] * 3
    # runs of one process (perf_runs) are one session: no labels
    one = merge_entries([a, b], sessions=False)
    assert "sample_sessions" not in one["latency"]
    assert "sample_sessions" not in one["operations"]["p:llm"]


def test_merge_reports_validates_and_flags_inexact() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    rng = random.Random(5)
    big = noisy(rng, 1000)
    e1 = entry(big, "t.py::a")
    e1["latency"]["count"] = 5000  # a reservoir standing for more samples
    e1["latency"]["exact"] = False
    r1 = report(e1, entry([0.01] * 3, "t.py::only1"))
    r2 = report(entry(noisy(rng, 1000), "t.py::a"), entry([0.02] * 3, "t.py::only2"))
    r2["complete"] = False
    r2["incomplete_reason"] = "interrupted"
    merged = merge_reports([r1, r2], ["one.json", "two.json"])
    jsonschema.validate(merged, load_schema())
    tests = {t["nodeid"]: t for t in merged["tests"]}
    assert set(tests) == {"t.py::a", "t.py::only1", "t.py::only2"}
    assert tests["t.py::a"]["latency"]["count"] == 6000
    assert tests["t.py::a"]["latency"]["exact"] is False
    assert len(tests["t.py::a"]["latency"]["samples"]) <= 1000
    sessions = tests["t.py::a"]["latency"]["sample_sessions"]  # subsampled with the samples
    assert len(sessions) == len(tests["t.py::a"]["latency"]["samples"])
    assert sessions.count(0) > 4 * sessions.count(1) > 0  # in proportion to the counts
    assert merged["merge"]["exact"] is False
    assert merged["complete"] is False and "two.json: interrupted" in merged["incomplete_reason"]
    assert merged["summary"]["tests"] == 3


def test_the_terminal_line_is_the_comparisons_own_description() -> None:
    """The regression gate's terminal line is read back from the report entry's dict and
    described by ``MetricComparison.describe``, the same text as the failure message."""
    from pytest_agentperf.compare import Evidence, MetricComparison
    from pytest_agentperf.plugin.baseline import _describe

    metrics = [
        MetricComparison("latency.p95", "s", 0.21, 0.43, 0.43 / 0.21 - 1, 0.1, "regression",
                         Evidence("mann-whitney", 1e-9, 30, 30)),
        MetricComparison("tokens.total", "tokens", 100.0, 130.0, 0.3, 0.05, "regression",
                         Evidence("tolerance")),
        MetricComparison("memory.peak_mb", "MiB", 10.0, 30.0, 2.0, 0.1, "regression",
                         Evidence("tolerance+floor", note="above the 5 MiB floor")),
    ]
    for m in metrics:
        assert MetricComparison.from_dict(m.as_dict()) == m
        assert _describe(m.as_dict()) == m.describe()
    assert _describe(metrics[0].as_dict()) == (
        "latency.p95 210 ms -> 430 ms (+104.8%, tolerance 10%; Mann-Whitney p=1.0e-09, "
        "n=30/30)")
    # a malformed entry still gives a line, with unknown figures
    assert _describe({"metric": "latency.p95", "baseline": "x"}).startswith("latency.p95 ")
