"""Percentiles and bounded sample sets."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_agentperf.histogram import LatencyHistogram
from pytest_agentperf.stats import (
    SampleSet,
    mann_whitney_u,
    percentile,
    percentiles,
    round_permutation_count,
    round_permutation_test,
    summarize,
)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([7.0], 95, 7.0),
        ([1.0, 2.0], 50, 1.5),
        ([1.0, 2.0], 95, 1.95),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95, 9.55),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, 9.1),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50, 5.5),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0, 1.0),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 100, 10.0),
    ],
)
def test_percentile_is_linear_interpolation_type_7(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(sorted(values), q) == pytest.approx(expected)


def test_small_n_p95_is_not_the_maximum_unlike_the_guide() -> None:
    values = [0.01] * 9 + [1.0]  # one outlier in ten
    # the guide: statistics.quantiles needs > 20 values, so it reports max()
    assert percentiles(values, [95])[0] == pytest.approx(0.5545)
    assert percentiles(values, [50])[0] == pytest.approx(0.01)


def test_percentile_matches_statistics_inclusive_method() -> None:
    rng = random.Random(1)
    for n in (2, 3, 5, 19, 20, 21, 100, 999):
        values = [rng.lognormvariate(0, 1) for _ in range(n)]
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        got = percentiles(values, [q for q in range(1, 100)])
        assert got == pytest.approx(cuts, rel=1e-9)


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile([1.0], 101)


def test_summary_of_nothing_is_null() -> None:
    assert summarize([]) == {"count": 0, "min": None, "mean": None, "p50": None, "p90": None,
                             "p95": None, "p99": None, "max": None}


def test_sampleset_exact_then_histogram_within_a_tenth_of_a_percent() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-4, 1) for _ in range(20_000)]
    bounded = SampleSet(max_exact=1000, reservoir_size=100)
    bounded.extend(values)
    assert not bounded.exact
    assert len(bounded) == 20_000
    assert len(bounded.reservoir) == 100
    exact = summarize(values)
    got = bounded.summary()
    for key in ("p50", "p90", "p95", "p99"):
        assert got[key] == pytest.approx(exact[key], rel=2e-3), key
    assert got["min"] == exact["min"]
    assert got["max"] == exact["max"]
    assert got["mean"] == pytest.approx(exact["mean"])


def test_sampleset_merge_is_order_independent() -> None:
    rng = random.Random(3)
    a_vals = [rng.random() for _ in range(500)]
    b_vals = [rng.random() for _ in range(700)]
    a, b = SampleSet(max_exact=600), SampleSet(max_exact=600)
    a.extend(a_vals)
    b.extend(b_vals)
    a.merge(b)
    assert len(a) == 1200
    assert a.summary()["p95"] == pytest.approx(summarize(a_vals + b_vals)["p95"], rel=2e-3)
    small, other = SampleSet(), SampleSet()
    small.extend([1.0, 2.0])
    other.extend([3.0])
    small.merge(other)
    assert small.exact and small.summary()["max"] == 3.0


def test_reservoir_is_a_uniform_sample_of_everything_recorded() -> None:
    n, k = 200_000, 1000
    samples = SampleSet(max_exact=50_000, reservoir_size=k)
    samples.extend(float(i) for i in range(n))
    kept = samples.reservoir
    assert len(kept) == k and len(set(kept)) == k
    # uniform over 0..n-1: mean n/2 (standard error ~ n/sqrt(12 k) ~ 1.8 % of n)
    assert abs(statistics.fmean(kept) - n / 2) < 0.06 * n
    for lo in range(0, n, n // 4):  # every quarter of the stream is represented
        share = sum(lo <= v < lo + n // 4 for v in kept) / k
        assert 0.18 < share < 0.32


_SECONDS = st.floats(min_value=0.0, max_value=3600.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.one_of(_SECONDS, st.lists(_SECONDS, max_size=40)), max_size=30),
    max_exact=st.integers(min_value=1, max_value=60),
    reservoir_size=st.integers(min_value=0, max_value=12),
)
def test_batched_extend_equals_adding_one_by_one(
    steps: list[float | list[float]], max_exact: int, reservoir_size: int
) -> None:
    """``extend`` is ``add`` in batch: the same count, extremes, percentiles, exact/histogram
    switchover and the very same reservoir (Algorithm L takes the same steps)."""
    batched = SampleSet(max_exact=max_exact, reservoir_size=reservoir_size)
    single = SampleSet(max_exact=max_exact, reservoir_size=reservoir_size)
    for step in steps:
        values = step if isinstance(step, list) else [step]
        batched.extend(values)
        for v in values:
            single.add(v)
        assert len(batched) == len(single)
        assert batched.exact == single.exact
        assert batched.reservoir == single.reservoir
    got, want = batched.summary(), single.summary()
    mean = want.pop("mean")
    assert got.pop("mean") == (None if mean is None else pytest.approx(mean, rel=1e-9,
                                                                         abs=1e-12))
    assert got == want  # count, min, max, p50..p99 and exact
    assert batched.total == pytest.approx(single.total, rel=1e-9, abs=1e-12)
    if len(single):
        for q in (0, 1, 50, 95, 99.9, 100):
            assert batched.percentile(q) == single.percentile(q)


_NANOS = st.integers(min_value=0, max_value=4_000_000_000_000)  # 0 .. 4000 s, past the HDR top


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.lists(_NANOS, max_size=40), max_size=20),
    max_exact=st.integers(min_value=1, max_value=60),
    reservoir_size=st.integers(min_value=0, max_value=12),
)
def test_extend_ns_equals_adding_the_seconds_one_by_one(
    steps: list[list[int]], max_exact: int, reservoir_size: int
) -> None:
    """``extend_ns`` is ``add(ns / 1e9)`` for each value: the same count, extremes, reservoir
    and switch to the histogram; percentiles agree to the histogram's resolution."""
    batched = SampleSet(max_exact=max_exact, reservoir_size=reservoir_size)
    single = SampleSet(max_exact=max_exact, reservoir_size=reservoir_size)
    for step in steps:
        batched.extend_ns(step)
        for v in step:
            single.add(v / 1e9)
        assert len(batched) == len(single) and batched.exact == single.exact
        assert batched.reservoir == single.reservoir
    got, want = batched.summary(), single.summary()
    assert (got["min"], got["max"]) == (want["min"], want["max"])
    assert batched.total == pytest.approx(single.total, rel=1e-9, abs=1e-12)
    if len(single):
        for q in (0, 50, 95, 100):  # ns recorded as they are, not via int(s * 1e9)
            assert batched.percentile(q) == pytest.approx(single.percentile(q), rel=2e-3,
                                                          abs=2e-9)


def test_sample_set_from_a_large_histogram_is_built_from_its_counts() -> None:
    hist = LatencyHistogram(exact_limit=100)
    rng = random.Random(5)
    values = [int(rng.lognormvariate(16, 1.5)) + 1 for _ in range(50_000)]
    hist.record_many_ns(values)
    samples = SampleSet.from_histogram(hist, reservoir_size=500)
    assert len(samples) == 50_000 and not samples.exact
    summary = samples.summary()
    assert summary["min"] == min(values) / 1e9 and summary["max"] == max(values) / 1e9
    assert summary["mean"] == pytest.approx(statistics.fmean(values) / 1e9, rel=1e-12)
    for q in (50, 90, 95, 99):  # the same HDR counts: the very same percentiles
        assert samples.percentile(q) == hist.percentile(q)
        assert samples.percentile(q) == pytest.approx(percentile(sorted(values), q) / 1e9,
                                                      rel=2e-3)
    kept = samples.reservoir
    assert len(kept) == 500
    assert all(summary["min"] <= v <= summary["max"] for v in kept)
    # a uniform sample of the recorded values: its median near theirs
    assert percentile(sorted(kept), 50) == pytest.approx(summary["p50"], rel=0.15)
    samples.add(1.0)  # goes on like any set in histogram mode
    assert len(samples) == 50_001 and len(samples.reservoir) == 500


# -- Mann-Whitney ------------------------------------------------------------------------
def test_mann_whitney_known_values() -> None:
    # perfect separation, 5 vs 5, exact: 1 / C(10, 5)
    r = mann_whitney_u([6, 7, 8, 9, 10], [1, 2, 3, 4, 5], "greater")
    assert r.method == "exact"
    assert r.u == 25
    assert r.p_value == pytest.approx(1 / 252)
    assert mann_whitney_u([6, 7, 8, 9, 10], [1, 2, 3, 4, 5], "less").p_value == 1.0
    same = mann_whitney_u([1.0] * 10, [1.0] * 10, "two-sided")
    assert same.p_value == 1.0
    with pytest.raises(ValueError, match="at least one"):
        mann_whitney_u([], [1.0])


def test_mann_whitney_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(7)
    for _ in range(60):
        n1, n2 = rng.randint(1, 40), rng.randint(1, 40)
        digits = rng.choice([0, 1, 4])  # 0 digits: many ties
        x = [round(rng.gauss(0, 1), digits) for _ in range(n1)]
        y = [round(rng.gauss(0.4, 1), digits) for _ in range(n2)]
        for alt in ("greater", "less", "two-sided"):
            ours = mann_whitney_u(x, y, alt)  # type: ignore[arg-type]
            ref = stats.mannwhitneyu(x, y, alternative=alt, method="auto")
            assert ours.u == pytest.approx(ref.statistic)
            assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)


# -- round permutation -----------------------------------------------------------------
def rounds(rng: random.Random, k: int, m: int, scale: float = 1.0, between: float = 0.0,
           sigma: float = 0.1) -> tuple[list[float], list[int]]:
    """``k`` sessions of ``m`` log-normal samples, each session scaled by its own noise."""
    values: list[float] = []
    groups: list[int] = []
    for g in range(k):
        factor = scale * math.exp(rng.gauss(0.0, between))
        values.extend(0.01 * factor * math.exp(rng.gauss(0.0, sigma)) for _ in range(m))
        groups.extend([g] * m)
    return values, groups


def test_round_permutation_exact_p_of_a_perfect_separation() -> None:
    rng = random.Random(3)
    slow, g_slow = rounds(rng, 5, 4, scale=2.0, sigma=0.01)
    fast, g_fast = rounds(rng, 5, 4, sigma=0.01)
    r = round_permutation_test(slow, g_slow, fast, g_fast, "greater")
    assert r.method == "exact" and r.permutations == round_permutation_count(5, 5) == 252
    assert r.p_value == pytest.approx(1 / 252)
    assert r.auc == 1.0 and (r.rounds_x, r.rounds_y) == (5, 5)
    assert round_permutation_test(slow, g_slow, fast, g_fast, "less").p_value == 1.0
    assert round_permutation_test(slow, g_slow, fast, g_fast).p_value == pytest.approx(2 / 252)
    # one sample per session: the same as an exact Mann-Whitney test
    x, y = [6.0, 7.0, 8.0, 9.0, 10.0], [1.0, 2.0, 3.0, 4.0, 5.5]
    one_each = round_permutation_test(x, None, y, None)  # one session a side: no evidence
    assert one_each.permutations == 2 and one_each.p_value == 1.0
    assert round_permutation_test(x, list(range(5)), y, list(range(5)), "greater").p_value == \
        pytest.approx(mann_whitney_u(x, y, "greater").p_value)
    with pytest.raises(ValueError, match="3 group labels for 5 values"):
        round_permutation_test(x, [0, 1, 2], y, None)


def test_round_permutation_keeps_its_level_when_sessions_are_noisy() -> None:
    """Identical code, sessions 20 % apart (a machine whose load changes between rounds):
    Mann-Whitney on the pooled samples alarms often, the round test at its level."""
    rng = random.Random(11)
    trials = 300
    pooled_alarms = round_alarms = 0
    for _ in range(trials):
        x, gx = rounds(rng, 5, 10, between=0.2)
        y, gy = rounds(rng, 5, 10, between=0.2)
        pooled_alarms += mann_whitney_u(x, y, "greater").p_value < 0.05
        round_alarms += round_permutation_test(x, gx, y, gy, "greater").p_value < 0.05
    assert round_alarms / trials <= 0.08
    assert pooled_alarms / trials >= 0.2


def test_round_permutation_monte_carlo_is_seeded_and_stops_early() -> None:
    rng = random.Random(5)
    x, gx = rounds(rng, 12, 3)
    y, gy = rounds(rng, 12, 3)
    a = round_permutation_test(x, gx, y, gy, "greater", max_exact=100)
    b = round_permutation_test(x, gx, y, gy, "greater", max_exact=100)
    assert a == b and a.method == "monte-carlo"
    assert a.p_value > 0.05 and a.permutations < 4_999  # stopped once clearly not significant
    slow, gs = rounds(rng, 12, 3, scale=1.5)
    c = round_permutation_test(slow, gs, y, gy, "greater", max_exact=100, resamples=999)
    assert c.permutations == 999 and c.p_value == pytest.approx(1 / 1000)
