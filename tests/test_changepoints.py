"""changepoints.py: E-divisive means with a permutation test, and the quantile search over
runs of samples, on series with known shifts."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from pytest_agentperf.changepoints import e_divisive, q_statistics, quantile_changes
from pytest_agentperf.stats import summarize


def noisy(rng: random.Random, levels: list[float], sigma: float = 0.02) -> list[float]:
    return [lv * math.exp(rng.gauss(0.0, sigma)) for lv in levels]


def test_q_statistic_is_the_energy_divergence() -> None:
    xs = [1.0, 4.0, 2.0, 8.0, 5.0, 7.0, 3.0, 9.0]

    def mean_abs(a: list[float], b: list[float]) -> float:
        return sum(abs(x - y) for x in a for y in b) / (len(a) * len(b))

    def within(a: list[float]) -> float:
        pairs = list(itertools.combinations(a, 2))
        return sum(abs(x - y) for x, y in pairs) / len(pairs)

    q = q_statistics(xs, min_size=2)
    for t in range(2, len(xs) - 1):
        left, right = xs[:t], xs[t:]
        m, k = len(left), len(right)
        expected = m * k / (m + k) * (2 * mean_abs(left, right) - within(left) - within(right))
        assert q[t] == pytest.approx(expected), t
    assert q[0] == q[1] == q[len(xs) - 1] == 0.0


def test_a_step_is_found_where_it_begins_with_levels_and_significance() -> None:
    series = noisy(random.Random(1), [10.0] * 20 + [13.0] * 20)
    (cp,) = e_divisive(series)
    assert cp.index == 20
    assert cp.before == pytest.approx(10.0, rel=0.03)
    assert cp.after == pytest.approx(13.0, rel=0.03)
    assert cp.change == pytest.approx(0.3, abs=0.05)
    assert cp.p_value <= 0.005
    assert e_divisive(series) == [cp]  # deterministic


def test_a_staircase_and_a_recovery() -> None:
    series = noisy(random.Random(2), [10.0] * 12 + [13.0] * 12 + [17.0] * 12)
    assert [c.index for c in e_divisive(series)] == [12, 24]
    # a regression fixed later: binary segmentation (as Otava/MongoDB) splits the longer
    # side first, then finds the way back
    series = noisy(random.Random(2), [10.0] * 20 + [15.0] * 10 + [10.0] * 10)
    up, down = e_divisive(series)
    assert (up.index, down.index) == (20, 30)
    assert up.after > up.before and down.after < down.before


def test_no_change_in_flat_or_noisy_series() -> None:
    assert e_divisive([100.0] * 30) == []
    assert e_divisive([1.0, 2.0]) == []
    rng = random.Random(3)
    false = sum(bool(e_divisive(noisy(rng, [10.0] * 40, sigma=0.1))) for _ in range(60))
    assert false <= 2


def test_min_size_runs_are_needed_after_a_step() -> None:
    rng = random.Random(4)
    base = noisy(rng, [10.0] * 30)
    assert e_divisive([*base, 20.0, 20.1]) == []  # two runs: not yet a level
    (cp,) = e_divisive([*base, 20.0, 20.1, 19.9])
    assert cp.index == 30


def test_a_step_in_a_deterministic_metric() -> None:
    (cp,) = e_divisive([100.0] * 20 + [120.0] * 5)
    assert (cp.index, cp.before, cp.after) == (20, 100.0, 120.0)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        e_divisive([1.0, float("nan"), 2.0])
    with pytest.raises(ValueError, match="min_size"):
        e_divisive([1.0] * 10, min_size=0)
    with pytest.raises(ValueError, match="alpha"):
        e_divisive([1.0] * 10, alpha=1.5)


def test_numpy_batches_and_pure_python_give_the_same_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("numpy")
    from pytest_agentperf import changepoints

    rng = random.Random(9)
    rows = [noisy(rng, [10.0] * n, sigma=0.3) for n in (6, 7, 12, 25, 40) for _ in range(4)]
    for row in rows:
        for min_size in (1, 2, 3):
            (batch,) = changepoints._best_q_batch([row], min_size)
            assert batch == pytest.approx(changepoints._best_split(row, min_size)[1],
                                          rel=1e-9, abs=1e-12)
    series = [noisy(random.Random(s), [10.0] * 20 + [12.0] * 10 + [9.0] * 10, sigma=0.1)
              for s in range(6)] + [noisy(random.Random(7), [10.0] * 40, sigma=0.1)]
    with_numpy = [e_divisive(s) for s in series]
    monkeypatch.setattr(changepoints, "_batch_evaluator", lambda: None)
    assert [e_divisive(s) for s in series] == with_numpy
    assert any(with_numpy) and not with_numpy[-1]


# -- p95: the quantile search over the runs' samples ------------------------------------
def hiccup_runs(rng: random.Random, levels: list[float], hiccups: float = 0.02,
                samples: int = 30) -> list[list[float]]:
    """Runs of ``samples`` latencies: log-normal around 10 ms x level (sigma 0.1), a share
    ``hiccups`` of them x2..6 (as bench/bench_changepoints.py)."""
    runs = []
    for level in levels:
        row = []
        for _ in range(samples):
            v = 0.010 * level * math.exp(rng.gauss(0.0, 0.1))
            if rng.random() < hiccups:
                v *= rng.uniform(2.0, 6.0)
            row.append(v)
        runs.append(row)
    return runs


def test_a_p95_step_is_found_in_the_samples_where_the_per_run_p95_hides_it() -> None:
    for seed in range(3):
        runs = hiccup_runs(random.Random(seed), [1.0] * 35 + [1.2] * 5)
        # one hiccup in 30 samples is the per-run p95: that series shows nothing
        assert e_divisive([summarize(r)["p95"] for r in runs]) == []
        (cp,) = quantile_changes(runs)
        assert cp.index == 35 and cp.p_value <= 0.005
        assert cp.change == pytest.approx(0.2, abs=0.07)
        assert cp.before == pytest.approx(summarize([v for r in runs[:35] for v in r])["p95"])
        assert quantile_changes(runs) == [cp]  # deterministic


def test_no_p95_change_without_a_shift_even_when_whole_runs_are_slow() -> None:
    for seed in range(10):
        assert quantile_changes(hiccup_runs(random.Random(100 + seed), [1.0] * 40)) == []
    # each run as a whole 20 % faster or slower (a busy machine): its 30 samples are not
    # 30 independent pieces of evidence, because whole runs are permuted
    for seed in range(10):
        rng = random.Random(200 + seed)
        levels = [math.exp(rng.gauss(0.0, 0.2)) for _ in range(40)]
        runs = [[0.010 * lv * math.exp(rng.gauss(0.0, 0.05)) for _ in range(30)]
                for lv in levels]
        assert quantile_changes(runs) == []


def test_a_step_of_the_slow_path_only_moves_p95_not_p50() -> None:
    rng = random.Random(3)
    runs = []
    for i in range(40):  # a quarter of the calls take the slow path, which gets 20 % slower
        slow = 0.020 * (1.2 if i >= 35 else 1.0)
        runs.append([(slow if rng.random() < 0.25 else 0.010) * math.exp(rng.gauss(0, 0.05))
                     for _ in range(30)])
    (cp,) = quantile_changes(runs)
    assert cp.index == 35 and cp.change == pytest.approx(0.2, abs=0.05)
    assert e_divisive([summarize(r)["p50"] for r in runs]) == []
    assert quantile_changes(runs, 50) == []


def test_a_fall_and_runs_of_other_sizes() -> None:
    rng = random.Random(5)
    runs = hiccup_runs(rng, [1.0] * 20, samples=12) + hiccup_runs(rng, [0.8] * 20, samples=300)
    (cp,) = quantile_changes(runs)
    assert cp.index == 20 and cp.after < cp.before
    assert quantile_changes([[0.01] * 5] * 12) == []  # one value throughout


def test_quantile_search_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="no samples"):
        quantile_changes([[1.0], []])
    with pytest.raises(ValueError, match="non-finite"):
        quantile_changes([[1.0], [float("inf")]])
    with pytest.raises(ValueError, match="0 < q < 100"):
        quantile_changes([[1.0]] * 8, 100)
