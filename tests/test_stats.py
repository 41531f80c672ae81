"""Percentiles and bounded sample sets."""

from __future__ import annotations

import random
import statistics

import pytest

from pytest_agentperf.stats import SampleSet, percentile, percentiles, summarize


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
