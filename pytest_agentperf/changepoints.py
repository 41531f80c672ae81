"""Change points in a run series: E-divisive means with a permutation significance test.

A level shift (a step) in a metric across runs — "p95 went from 12 ms to 15 ms
at run 31" — is what a pairwise gate misses when it creeps in 2 % at a time,
and what makes a baseline stale when it is accepted.  This is the algorithm
Apache Otava (ex-Hunter) and MongoDB's CI use (Matteson & James 2014, "A
nonparametric approach for multiple change point analysis of multivariate
data"; Daly et al. 2020, "The Use of Change Point Detection to Identify
Software Performance Regressions in a Continuous Integration System"):

* For a segment and each split ``t`` and right end ``k``, the divergence
  between the left part ``x[:t]`` and the right part ``x[t:k]`` is the energy
  statistic with ``alpha = 1``:
  ``Q = m k / (m + k) * (2 mean|x_i - y_j| - mean|x_i - x_i'| - mean|y_j - y_j'|)``
  (``m``, ``k`` the part sizes, means over pairs).  It is zero when the two
  parts have the same distribution and grows with any difference in level;
  searching the right end too finds a shift that goes back later.
* The best split is significant when a random permutation of the segment
  rarely reaches as large a ``max Q``: ``p = (1 + #{perm >= observed}) / (1 +
  permutations)``.  The test stops as soon as ``p`` can no longer fall below
  ``alpha`` (most segments without a change are settled in a few
  permutations), and the permutations use a fixed seed: the same series
  always gives the same answer.
* Significant splits are kept and each side is searched again (binary
  segmentation), until no segment has a significant split.

The published libraries that implement it (``signal-processing-algorithms``,
``apache-otava``) pin old numpy / Python versions or pull in cloud SDKs, so
this is a small version of our own: ``O(n^2)`` per permutation for a series
of ``n`` runs (a history window is tens of runs).  No pytest; numpy is used when it
is installed (it is not a dependency): the permutations are then evaluated in
batches, one vector expression per batch (``bench/bench_changepoints.py`` measures
the ratio to the pure-Python path), and both paths give the same answer.

A percentile such as p95 is searched differently (:func:`quantile_changes`): on
the runs' samples, not on the series of per-run p95.  A per-run p95 of a few
dozen samples is mostly its largest one or two samples, so that series hides a
step the samples show.  The split statistic is the quantile (sign) test's —
how many samples on one side lie above the other side's p95 — and the same
binary segmentation and permutation test permute whole runs.
"""

from __future__ import annotations

import bisect
import functools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ChangePoint", "e_divisive", "q_statistics", "quantile_changes"]

#: Significance level of the permutation test.
DEFAULT_ALPHA = 0.005
#: Permutations per test: p reaches 1 / (1 + permutations) = 0.005 when none of them
#: matches the observed split, and the test stops at the first one that does.
DEFAULT_PERMUTATIONS = 199
#: Fewest runs on each side of a change point.
DEFAULT_MIN_SIZE = 3


@dataclass(frozen=True)
class ChangePoint:
    """A level shift: ``index`` is the first run of the new level."""

    index: int
    before: float  # median of the segment before
    after: float  # median of the segment after
    p_value: float
    q: float

    @property
    def change(self) -> float | None:
        """Relative change of the median, ``after / before - 1`` (None when before is 0)."""
        return self.after / self.before - 1 if self.before else None


def _pair_sums(xs: Sequence[float]) -> list[float]:
    """``out[t] = sum_{i<j<t} |x_i - x_j|``: the within-pair sum of every prefix.

    Each new value's distances to the earlier ones come from a sorted copy: with
    ``k`` earlier values below it, ``sum |v - u| = v k - below + (total - below) -
    v (t - k)``, so the work per value is a slice sum and an insertion (C loops).
    """
    out = [0.0] * (len(xs) + 1)
    ordered: list[float] = []
    total = running = 0.0
    for t, v in enumerate(xs):
        k = bisect.bisect_left(ordered, v)
        below = sum(ordered[:k])
        running += v * k - below + (total - below) - v * (t - k)
        ordered.insert(k, v)
        total += v
        out[t + 1] = running
    return out


def q_statistics(xs: Sequence[float], min_size: int = DEFAULT_MIN_SIZE) -> list[float]:
    """``Q(t)`` with the right part running to the end, for every split ``t`` of ``xs``
    with at least ``min_size`` on each side (``result[t]``; 0.0 where no split is
    allowed): the divergence profile of a series."""
    n = len(xs)
    q = [0.0] * (n + 1)
    if n < 2 * min_size:
        return q
    left = _pair_sums(xs)
    right = _pair_sums(xs[::-1])  # right[k]: within-sum of the last k values
    whole = left[n]
    for t in range(min_size, n - min_size + 1):
        m, k = t, n - t
        w_left, w_right = left[t], right[k]
        cross = whole - w_left - w_right
        e = (2.0 * cross / (m * k) - w_left / (m * (m - 1) / 2)
             - w_right / (k * (k - 1) / 2))
        q[t] = m * k / (m + k) * e
    return q


def _interval_sums(xs: Sequence[float]) -> list[list[float]]:
    """``w[a][b] = sum_{a<=i<j<b} |x_i - x_j|`` for every interval (``O(n^2)``)."""
    n = len(xs)
    w = [[0.0] * (n + 1) for _ in range(n + 1)]
    for b in range(1, n):
        v = xs[b]
        acc = 0.0
        for a in range(b - 1, -1, -1):  # acc = sum_{a<=i<b} |x_b - x_i|
            acc += abs(v - xs[a])
            w[a][b + 1] = w[a][b] + acc
    return w


def _best_split(xs: Sequence[float], min_size: int,
                stop_at: float | None = None) -> tuple[int, float]:
    """The split ``t`` of ``xs`` and the largest ``Q(t, k)`` over right ends ``k``.

    ``stop_at``: return as soon as a split reaches it (a permutation that matches
    the observed statistic needs no further search).

    As Matteson & James: the left part is ``xs[:t]`` and the right part
    ``xs[t:k]`` for every ``k``, so a shift that later goes back (a regression
    fixed some runs later) is as visible as one that stays.
    """
    n = len(xs)
    if n < 2 * min_size:
        return 0, 0.0
    w = _interval_sums(xs)
    whole = w[0]
    best_t, best_q = 0, 0.0
    for t in range(min_size, n - min_size + 1):
        w_left = whole[t]
        within_left = w_left / (t * (t - 1) / 2) if t > 1 else 0.0
        row = w[t]
        q = max([
            t * m / (t + m) * (2.0 * (whole[t + m] - w_left - row[t + m]) / (t * m)
                               - within_left - row[t + m] * 2.0 / (m * (m - 1)))
            for m in range(max(min_size, 2), n - t + 1)] or [0.0])
        if q > best_q:
            best_t, best_q = t, q
            if stop_at is not None and q >= stop_at:
                break
    return best_t, best_q


#: permutations evaluated together (numpy) between checks of the stopping rule: a few
#: first (a segment without a change is usually settled by them), then larger batches
_FIRST_CHUNK = 8
_CHUNK = 64


def _significance(xs: list[Any], observed: float, alpha: float, permutations: int,
                  rng: random.Random, maxima: Callable[[list[list[Any]], float], list[float]],
                  batched: bool) -> float:
    """Permutation p-value of ``observed`` (stops once it cannot fall below ``alpha``).

    The permutations are successive shuffles of one list drawn from ``rng``;
    ``maxima(rows, threshold)`` gives the largest split statistic of each shuffled row
    (a row may stop early at ``threshold``).  ``batched``: rows are evaluated in
    batches (numpy, :func:`_best_q_batch`), else one by one.  Either way the p-value is
    the same and ``rng`` is left where the one-by-one search leaves it (a batch that
    passes the stopping point is replayed up to it), so both paths find the same change
    points.
    """
    limit = alpha * (permutations + 1) - 1  # more exceedances than this: not significant
    threshold = observed * (1 - 1e-12)
    exceed = 0
    done = 0
    shuffled = list(xs)
    while done < permutations:
        size = min((_FIRST_CHUNK if done == 0 else _CHUNK) if batched else 1,
                   permutations - done)
        state, start = rng.getstate(), list(shuffled)
        chunk = []
        for _ in range(size):
            rng.shuffle(shuffled)
            chunk.append(list(shuffled))
        for i, q in enumerate(maxima(chunk, threshold)):
            done += 1
            if q >= threshold:
                exceed += 1
                if exceed > limit:
                    if i + 1 < size:  # leave rng as the one-by-one search would
                        rng.setstate(state)
                        for _ in range(i + 1):
                            rng.shuffle(start)
                    return (1 + exceed) / (1 + done)
    return (1 + exceed) / (1 + permutations)


def _batch_evaluator() -> Any:
    """:func:`_best_q_batch` when numpy can be imported, else None."""
    try:
        import numpy  # noqa: F401  # optional: not a dependency of the plugin
    except ImportError:
        return None
    return _best_q_batch


@functools.lru_cache(maxsize=64)
def _split_grid(n: int, min_size: int) -> tuple[Any, Any]:
    """Every allowed ``(t, m)`` of a series of ``n`` as two numpy index arrays."""
    import numpy as np

    ts, ms = [], []
    for t in range(min_size, n - min_size + 1):
        for m in range(max(min_size, 2), n - t + 1):
            ts.append(t)
            ms.append(m)
    return np.asarray(ts, dtype=np.int64), np.asarray(ms, dtype=np.int64)


def _best_q_batch(rows: list[list[float]], min_size: int) -> list[float]:
    """``max Q(t, k)`` of :func:`_best_split` for many series at once (numpy).

    The interval sums ``w[a][b]`` of every series come from one 2-D suffix/prefix
    sum of the pairwise distance matrices; every allowed ``(t, m)`` is then one
    vector expression.
    """
    import numpy as np

    x = np.asarray(rows, dtype=float)
    p, n = x.shape
    if n < 2 * min_size:
        return [0.0] * p
    d = np.triu(np.abs(x[:, :, None] - x[:, None, :]), 1)  # d[i][j], i < j
    s = np.zeros((p, n + 1, n + 1))
    s[:, :n, 1:] = np.cumsum(np.cumsum(d[:, ::-1, :], axis=1)[:, ::-1, :], axis=2)
    t_arr, m_arr = _split_grid(n, min_size)
    if not len(t_arr):
        return [0.0] * p
    end = t_arr + m_arr
    w_left = s[:, 0, t_arr]  # w[0][t]
    w_right = s[:, t_arr, end]  # w[t][t + m]
    cross = s[:, 0, end] - w_left - w_right
    tf, mf = t_arr.astype(float), m_arr.astype(float)
    pairs_left = np.where(t_arr > 1, tf * (tf - 1) / 2, 1.0)
    within_left = np.where(t_arr > 1, w_left / pairs_left, 0.0)
    q = tf * mf / (tf + mf) * (2.0 * cross / (tf * mf) - within_left
                               - w_right * 2.0 / (mf * (mf - 1)))
    return [max(0.0, float(v)) for v in q.max(axis=1)]  # as _best_split: at least 0


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def e_divisive(series: Sequence[float], *, alpha: float = DEFAULT_ALPHA,
               permutations: int = DEFAULT_PERMUTATIONS,
               min_size: int = DEFAULT_MIN_SIZE, seed: int = 0) -> list[ChangePoint]:
    """Significant level shifts in ``series``, in index order.

    ``series`` is one metric run by run (oldest first); non-finite values are
    not allowed (drop them first).  Before/after are the medians of the
    neighbouring segments between change points.
    """
    xs = [float(v) for v in series]
    if any(not math.isfinite(v) for v in xs):
        raise ValueError("series has a non-finite value")
    batch = _batch_evaluator()

    def search(a: int, b: int) -> _Search | None:
        segment = xs[a:b]
        if max(segment) == min(segment):
            return None
        split, observed = _best_split(segment, min_size)
        if batch is not None:
            return _Search(segment, split, observed, lambda rows, _: batch(rows, min_size),
                           True)
        return _Search(segment, split, observed, lambda rows, stop: [
            _best_split(row, min_size, stop_at=stop)[1] for row in rows], False)

    return _segmentation(len(xs), search, lambda a, b: _median(xs[a:b]), alpha=alpha,
                         permutations=permutations, min_size=min_size, seed=seed)


#: A run's samples are reduced to at most this many of its own percentiles for the
#: quantile search (its cost grows with the samples of the window).
QUANTILE_POINTS = 64


def quantile_changes(runs: Sequence[Sequence[float]], q: float = 95.0, *,
                     alpha: float = DEFAULT_ALPHA, permutations: int = DEFAULT_PERMUTATIONS,
                     min_size: int = DEFAULT_MIN_SIZE, seed: int = 0) -> list[ChangePoint]:
    """Shifts of the ``q``-th percentile of runs of samples (``runs[i]``: run ``i``'s
    samples, oldest run first), in index order.

    A per-run p95 of a few dozen samples is mostly the noise of its largest one
    or two samples, so the series of per-run p95 hides a step that the samples
    show.  Here a split is judged on the samples of the runs on each side, as a
    quantile test does (the sign test; the rank-score test for a structural
    change in a quantile, Qu 2008): ``Q`` is the ``q``-th percentile of the
    pooled samples *before* the split; without a change about ``1 - q/100`` of
    the samples *after* it are above ``Q`` too, and where the percentile rose,
    more are.  The statistic is that difference of shares, weighted by the
    sample counts (``|share_after - share_before| * sqrt(n_before n_after / n)``),
    and the same with ``Q`` from the samples after the split (so a fall is seen
    as well as a rise); the larger of the two counts.  The best split's
    significance is a permutation test that permutes **whole runs**, so the
    samples of one run are never taken as independent of each other: a run that
    was slow as a whole counts once.  Splits are searched as in
    :func:`e_divisive` (binary segmentation, the same ``alpha``, permutations,
    stopping rule and seed).

    A run with more than :data:`QUANTILE_POINTS` samples takes part as that many
    of its own percentiles.  Before/after are the ``q``-th percentiles of the
    pooled samples of the neighbouring segments.  Every run needs at least one
    sample, all finite.
    """
    from .stats import percentile

    rows = [_reduced(sorted(float(v) for v in run)) for run in runs]
    if any(not row for row in rows):
        raise ValueError("a run has no samples")
    if any(not math.isfinite(v) for row in rows for v in (row[0], row[-1])):
        raise ValueError("a run has a non-finite sample")
    if not 0 < q < 100:
        raise ValueError("need 0 < q < 100")

    def search(a: int, b: int) -> _Search | None:
        segment = rows[a:b]
        if min(row[0] for row in segment) == max(row[-1] for row in segment):
            return None  # one value throughout
        split, observed = _best_quantile_split(segment, q, min_size)
        return _Search(segment, split, observed, lambda perms, stop: [
            _best_quantile_split(perm, q, min_size, stop)[1] for perm in perms], False)

    def level(a: int, b: int) -> float:
        return percentile(sorted(v for row in rows[a:b] for v in row), q)

    return _segmentation(len(rows), search, level, alpha=alpha, permutations=permutations,
                         min_size=min_size, seed=seed)


def _reduced(row: list[float]) -> list[float]:
    """A sorted run, or :data:`QUANTILE_POINTS` of its percentiles when it has more."""
    from .stats import percentile

    if len(row) <= QUANTILE_POINTS:
        return row
    return [percentile(row, (i + 0.5) * 100 / QUANTILE_POINTS) for i in range(QUANTILE_POINTS)]


def _best_quantile_split(rows: Sequence[list[float]], q: float, min_size: int,
                         stop_at: float | None = None) -> tuple[int, float]:
    """The split of ``rows`` (sorted runs) whose sides differ most in their shares above
    either side's ``q``-th percentile (weighted by the sample counts), and that
    statistic; returns at once when a split reaches ``stop_at``.

    Percentiles as :func:`~pytest_agentperf.stats.percentile` (type 7), written out
    here with the shares because this runs for every split of every permutation.
    """
    n = len(rows)
    if n < 2 * min_size:
        return 0, 0.0
    frac = q / 100.0
    below_of, not_above_of = bisect.bisect_left, bisect.bisect_right

    def pct(xs: list[float]) -> float:
        h = (len(xs) - 1) * frac
        lo = int(h)
        low = xs[lo]
        return low + (h - lo) * (xs[lo + 1] - low) if lo + 1 < len(xs) else low

    def above(xs: list[float], v: float) -> float:  # values equal to v count half
        not_above = not_above_of(xs, v)
        return len(xs) - not_above + (not_above - below_of(xs, v)) / 2

    prefix: list[list[float]] = [[]]
    for row in rows[:n - min_size]:
        prefix.append(sorted(prefix[-1] + row))  # merges two sorted runs: linear
    best_t, best = 0, 0.0
    right: list[float] = sorted(v for row in rows[n - min_size:] for v in row)
    for t in range(n - min_size, min_size - 1, -1):
        if t < n - min_size:
            right = sorted(right + rows[t])
        left = prefix[t]
        n_left, n_right = len(left), len(right)
        q_left, q_right = pct(left), pct(right)
        rise = above(right, q_left) / n_right - above(left, q_left) / n_left
        fall = above(left, q_right) / n_left - above(right, q_right) / n_right
        stat = max(abs(rise), abs(fall)) * math.sqrt(n_left * n_right / (n_left + n_right))
        if stat > best:
            best_t, best = t, stat
            if stop_at is not None and stat >= stop_at:
                break
    return best_t, best


@dataclass(frozen=True)
class _Search:
    """A segment ready for the permutation test: what is permuted (``items``), its best
    split and statistic, and how the statistic of permuted rows is computed."""

    items: list[Any]
    split: int
    observed: float
    maxima: Callable[[list[list[Any]], float], list[float]]
    batched: bool


def _segmentation(n: int, search: Callable[[int, int], _Search | None],
                  level_of: Callable[[int, int], float], *, alpha: float, permutations: int,
                  min_size: int, seed: int) -> list[ChangePoint]:
    """Binary segmentation of runs ``0..n-1``: ``search(a, b)`` prepares the segment
    ``[a, b)`` (None: nothing to find in it), ``level_of(a, b)`` is the level reported
    for a segment between change points."""
    if min_size < 1 or not 0 < alpha < 1 or permutations < 1:
        raise ValueError("need min_size >= 1, 0 < alpha < 1, permutations >= 1")
    rng = random.Random(seed)
    found: dict[int, tuple[float, float]] = {}
    pending = [(0, n)]
    while pending:
        a, b = pending.pop()
        if b - a < 2 * min_size:
            continue
        segment = search(a, b)
        if segment is None or segment.observed <= 0:
            continue
        p = _significance(segment.items, segment.observed, alpha, permutations, rng,
                          segment.maxima, segment.batched)
        if p > alpha:
            continue
        found[a + segment.split] = (p, segment.observed)
        pending += [(a, a + segment.split), (a + segment.split, b)]
    bounds = [0, *sorted(found), n]
    out = []
    for i in range(1, len(bounds) - 1):
        lo, at, hi = bounds[i - 1], bounds[i], bounds[i + 1]
        p, q = found[at]
        out.append(ChangePoint(at, level_of(lo, at), level_of(at, hi), p, q))
    return out
