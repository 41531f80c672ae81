"""Statistics: percentiles, bounded sample sets and summaries.

Everything that turns measured numbers into figures lives here, so there is one
definition of "p95" in the whole project.

Percentiles use linear interpolation between closest ranks (Hyndman & Fan
type 7, the default of NumPy and of R's ``quantile``): for sorted samples
``x[0..n-1]`` the q-th percentile is ``x[h] + (h - floor(h)) * (x[ceil(h)] - x[floor(h)])``
with ``h = (n - 1) * q / 100``.  It is defined for every ``n >= 1`` (one sample is
every percentile), never leaves ``[min, max]`` and does not, unlike
``statistics.quantiles(..., n=20)`` with its default "exclusive" method, need
more than twenty samples to give a p95 that is not simply the maximum.

A :class:`SampleSet` keeps samples exactly up to ``max_exact`` values, then folds
them into an HDR histogram (3 significant digits, so any percentile is within
0.1 % of the exact one) so that memory stays bounded however many samples a test
records.  It also keeps a small uniform reservoir of raw values for the
regression statistics.

The significance tests of the regression gate live here too: the Mann-Whitney
U test (:func:`mann_whitney_u`, exact for small samples, normal approximation
with tie correction otherwise) and the rank test that permutes whole rounds
(:func:`round_permutation_test`) for samples that come from several pytest
processes.
"""

from __future__ import annotations

import itertools
import math
import random
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .histogram import (
    HDR_HIGHEST_NS,
    HDR_LOWEST_NS,
    NS_PER_S,
    FastHdr,
    clamp_ns,
    new_hdr,
    percentile,
)

if TYPE_CHECKING:
    from .histogram import LatencyHistogram

__all__ = [
    "Alternative",
    "MannWhitneyResult",
    "RoundPermutationResult",
    "SampleSet",
    "best_possible_p",
    "mann_whitney_u",
    "percentile",
    "percentiles",
    "round_permutation_count",
    "round_permutation_test",
    "summarize",
]

Alternative = Literal["greater", "less", "two-sided"]

# HDR histograms record integers: latencies are kept in nanoseconds, in the one layout
# that histogram.py owns (1 ns .. 1 h, 3 significant digits).
_NS = NS_PER_S


def percentiles(values: Iterable[float], qs: Iterable[float]) -> list[float]:
    """Percentiles ``qs`` of unsorted ``values`` (sorted once)."""
    ordered = sorted(values)
    return [percentile(ordered, q) for q in qs]


def summarize(values: Iterable[float]) -> dict[str, Any]:
    """Latency summary of raw values: count, min, mean, p50, p90, p95, p99, max.

    An empty input gives ``{"count": 0}`` and nulls for the rest.
    """
    ordered = sorted(values)
    return _summary_from_sorted(ordered)


def _summary_from_sorted(ordered: Sequence[float]) -> dict[str, Any]:
    n = len(ordered)
    if n == 0:
        return {
            "count": 0, "min": None, "mean": None, "p50": None, "p90": None,
            "p95": None, "p99": None, "max": None,
        }
    return {
        "count": n,
        "min": float(ordered[0]),
        "mean": math.fsum(ordered) / n,
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99),
        "max": float(ordered[-1]),
    }


class SampleSet:
    """Bounded-memory collection of non-negative samples (seconds).

    Exact while ``len <= max_exact``; past that an HDR histogram holds the
    distribution (relative error <= 0.1 %) and ``exact`` becomes ``False``.
    ``reservoir`` is a uniform random sample of at most ``reservoir_size`` raw
    values, kept in either mode, for significance tests on a saved report.
    Not thread-safe: callers that record from several threads hold a lock.
    """

    __slots__ = (
        "_count", "_fast", "_hdr", "_max", "_max_exact", "_min", "_next", "_reservoir",
        "_reservoir_size", "_rng", "_sum", "_values", "_w",
    )

    def __init__(self, max_exact: int = 100_000, reservoir_size: int = 1000) -> None:
        if max_exact < 1 or reservoir_size < 0:
            raise ValueError("max_exact must be >= 1 and reservoir_size >= 0")
        self._max_exact = max_exact
        self._reservoir_size = reservoir_size
        self._values: array[float] | None = array("d")
        self._hdr: Any = None
        self._count = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf
        self._reservoir: list[float] = []
        self._rng: random.Random | None = None  # created when the reservoir fills
        self._w = 0.0  # Algorithm L state: current weight and the next index to keep
        self._next = 0
        self._fast: Any = None  # FastHdr recorder into self._hdr

    # -- recording -----------------------------------------------------------
    def add(self, value: float) -> None:
        """Record one sample."""
        self._count += 1
        self._sum += value
        if value < self._min:
            self._min = value
        if value > self._max:
            self._max = value
        values = self._values
        if values is not None:
            values.append(value)
            if len(values) > self._max_exact:
                self._to_histogram()
        else:
            self._fast.record(_to_ns(value))
        if len(self._reservoir) < self._reservoir_size:
            self._reservoir.append(value)
            if len(self._reservoir) == self._reservoir_size:
                self._reset_skip()
        elif self._count == self._next:
            self._replace(value)

    def extend(self, values: Iterable[float]) -> None:
        """Record many samples: the same result as ``add`` for each, in batch."""
        batch = values if isinstance(values, list) else list(values)
        if not batch:
            return
        start = self._count
        n = len(batch)
        self._count = start + n
        self._sum += sum(batch)
        lo, hi = min(batch), max(batch)
        if lo < self._min:
            self._min = lo
        if hi > self._max:
            self._max = hi
        if self._values is not None:
            self._values.extend(batch)
            if len(self._values) > self._max_exact:
                self._to_histogram()
        else:
            self._fast.record_many(_ns_list(batch))
        self._reservoir_batch(batch, start)

    def extend_ns(self, batch: list[int]) -> None:
        """``extend`` with durations in integer nanoseconds, ``[ns / 1e9 for ns in batch]``.

        In histogram mode the integers are recorded as they are, without a round trip
        through seconds.
        """
        if not batch:
            return
        if self._values is not None:
            self.extend([v / _NS for v in batch])
            return
        start = self._count
        self._count = start + len(batch)
        self._sum += sum(batch) / _NS
        lo, hi = min(batch), max(batch)
        if lo / _NS < self._min:
            self._min = lo / _NS
        if hi / _NS > self._max:
            self._max = hi / _NS
        if lo < HDR_LOWEST_NS or hi > HDR_HIGHEST_NS:
            self._fast.record_many([clamp_ns(v) for v in batch])
        else:
            self._fast.record_many(batch)
        self._reservoir_batch(batch, start, _NS)

    def _reservoir_batch(self, batch: Sequence[float], start: int, unit: float = 1.0) -> None:
        # Algorithm L over a batch: exactly the steps ``add`` takes one value at a time
        # (``_count`` is the 1-based index of the value being offered while it runs).
        # The values kept are ``batch[i] / unit``.
        end = self._count
        size = self._reservoir_size
        res = self._reservoir
        i = 0
        if len(res) < size:
            i = min(size - len(res), len(batch))
            res.extend([v / unit for v in batch[:i]] if unit != 1.0 else batch[:i])
            if len(res) == size:
                self._count = start + i
                self._reset_skip()
        elif size == 0:
            return
        if len(res) == size:
            while self._next <= end:
                self._count = self._next
                self._replace(batch[self._next - start - 1] / unit)
        self._count = end

    def merge(self, other: SampleSet) -> None:
        """Fold ``other`` into this set (order-independent for summaries)."""
        if other._count == 0:
            return
        if other._values is not None and self._values is not None and (
            len(self._values) + len(other._values) <= self._max_exact
        ):
            self._values.extend(other._values)
        else:
            if self._values is not None:
                self._to_histogram()
            if other._values is not None:
                self._fast.record_many(_ns_list(other._values))
            else:
                self._synced().add(other._synced())
        self._count += other._count
        self._sum += other._sum
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)
        for v in other._reservoir:
            self._sample(v)
        if len(self._reservoir) == self._reservoir_size and self._reservoir_size:
            self._reset_skip()

    # Reservoir: Li's Algorithm L — a uniform sample of ``reservoir_size`` values
    # that draws random numbers only for the values it keeps (O(k log(n/k))),
    # so the steady-state cost of ``add`` is one comparison.
    def _reset_skip(self) -> None:
        if self._rng is None:
            self._rng = random.Random(0x5EED)
        self._w = math.exp(math.log(self._uniform()) / self._reservoir_size)
        self._advance()

    def _advance(self) -> None:
        skip = math.floor(math.log(self._uniform()) / math.log(1.0 - self._w))
        self._next = self._count + skip + 1

    def _uniform(self) -> float:
        assert self._rng is not None
        return self._rng.random() or 5e-324  # (0, 1)

    def _replace(self, value: float) -> None:
        assert self._rng is not None
        self._reservoir[self._rng.randrange(self._reservoir_size)] = value
        self._w *= math.exp(math.log(self._uniform()) / self._reservoir_size)
        self._advance()

    def _sample(self, value: float) -> None:
        """Offer a value that is already counted (merging): Algorithm R step."""
        size = self._reservoir_size
        if size == 0:
            return
        if len(self._reservoir) < size:
            self._reservoir.append(value)
            return
        if self._rng is None:
            self._rng = random.Random(0x5EED)
        j = self._rng.randrange(max(self._count, size))
        if j < size:
            self._reservoir[j] = value

    @classmethod
    def from_histogram(cls, hist: LatencyHistogram, max_exact: int = 1024,
                       reservoir_size: int = 1000) -> SampleSet:
        """The values of a :class:`~pytest_agentperf.histogram.LatencyHistogram` (seconds).

        Exact while the histogram is.  Otherwise the set is built from the histogram's
        counts, O(buckets) whatever the count: the same HDR layout (0.1 % resolution,
        percentiles clamped into the exact min/max), the exact count, sum, min and max,
        and a uniform reservoir drawn from the recorded values (each its bucket's value).
        A histogram of at most ``max_exact`` values with no raw values (a decoded one)
        gives its bucket values as exact samples.
        """
        out = cls(max_exact=max_exact, reservoir_size=reservoir_size)
        values = hist.exact_values_ns()
        if values is not None:
            out.extend([v / NS_PER_S for v in values])
            return out
        count = len(hist)
        if count == 0:
            return out
        lo, hi = hist.min_ns, hist.max_ns
        buckets = [(min(max(int(item.value_iterated_to), lo), hi) / NS_PER_S,
                    int(item.count_added_in_this_iter_step))
                   for item in hist.hdr.get_recorded_iterator()]
        if count <= max_exact:
            out.extend([value for value, n in buckets for _ in range(n)])
            return out
        out._values = None
        out._hdr = new_hdr()
        out._fast = FastHdr(out._hdr)
        out._hdr.add(hist.hdr)
        out._count = count
        out._sum = hist.total_s
        out._min = lo / NS_PER_S
        out._max = hi / NS_PER_S
        if reservoir_size:
            # the values at ``reservoir_size`` ranks drawn without replacement: a uniform
            # sample of the recorded values, as replaying them through ``add`` would keep
            out._rng = random.Random(0x5EED)
            ranks = sorted(out._rng.sample(range(count), min(reservoir_size, count)))
            reservoir = out._reservoir
            i, below = 0, 0
            for value, n in buckets:
                below += n
                while i < len(ranks) and ranks[i] < below:
                    reservoir.append(value)
                    i += 1
            if len(reservoir) == reservoir_size:
                out._reset_skip()
        return out

    def _to_histogram(self) -> None:
        self._hdr = new_hdr()
        self._fast = FastHdr(self._hdr)
        assert self._values is not None
        self._fast.record_many(_ns_list(self._values))
        self._values = None

    def _synced(self) -> Any:
        """The HDR histogram with every recorded value counted (read it only through here)."""
        self._fast.sync()
        return self._hdr

    # -- reading -------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    @property
    def exact(self) -> bool:
        """True while every sample is kept and percentiles are exact."""
        return self._values is not None

    @property
    def total(self) -> float:
        return self._sum

    @property
    def reservoir(self) -> list[float]:
        """A uniform random sample (at most ``reservoir_size``) of the values."""
        return list(self._reservoir)

    def percentile(self, q: float) -> float:
        if self._count == 0:
            raise ValueError("percentile of no samples")
        if self._values is not None:
            return percentile(sorted(self._values), q)
        return self._hdr_percentile(q)

    def _hdr_percentile(self, q: float) -> float:
        # Clamp into the exact extremes: HDR buckets round up.
        value = float(self._synced().get_value_at_percentile(q)) / _NS
        return min(max(value, self._min), self._max)

    def summary(self) -> dict[str, Any]:
        """count, min, mean, p50, p90, p95, p99, max and ``exact``."""
        if self._values is not None:
            out = _summary_from_sorted(sorted(self._values))
        elif self._count == 0:
            out = _summary_from_sorted(())
        else:
            out = {
                "count": self._count,
                "min": self._min,
                "mean": self._sum / self._count,
                "p50": self._hdr_percentile(50),
                "p90": self._hdr_percentile(90),
                "p95": self._hdr_percentile(95),
                "p99": self._hdr_percentile(99),
                "max": self._max,
            }
        out["exact"] = self.exact
        return out



def _to_ns(seconds: float) -> int:
    return clamp_ns(int(seconds * _NS))


def _ns_list(values: Iterable[float]) -> list[int]:
    """``[_to_ns(v) for v in values]``, clamping only when a value needs it."""
    ns = [int(v * _NS) for v in values]
    if ns and (min(ns) < HDR_LOWEST_NS or max(ns) > HDR_HIGHEST_NS):
        return [clamp_ns(v) for v in ns]
    return ns


# -- significance tests --------------------------------------------------------------
#: Exact Mann-Whitney distribution up to this size (the smaller sample, no ties).
_EXACT_MAX_N = 8

@dataclass(frozen=True)
class MannWhitneyResult:
    """``u`` is the statistic of the *first* sample (x); ``p_value`` per ``alternative``."""

    u: float
    p_value: float
    alternative: Alternative
    method: Literal["exact", "normal"]
    n_x: int
    n_y: int


def _ranks(values: Sequence[float]) -> tuple[list[float], float]:
    """Mid-ranks (1-based) of ``values`` and the tie term ``sum(t^3 - t)``."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    tie_term = 0.0
    i = 0
    n = len(values)
    while i < n:
        j = i
        while j + 1 < n and values[order[j + 1]] == values[order[i]]:
            j += 1
        mid = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[order[k]] = mid
        t = j - i + 1
        if t > 1:
            tie_term += t * t * t - t
        i = j + 1
    return ranks, tie_term


def _exact_cdf_counts(n1: int, n2: int) -> list[int]:
    """Number of arrangements giving U = 0..n1*n2 (Gaussian binomial coefficients)."""
    size = n1 * n2 + 1
    poly = [0] * size
    poly[0] = 1
    # prod_{i=1..n1} (1 - q^(n2+i)) / (1 - q^i), each factor a polynomial.
    for i in range(1, n1 + 1):
        step = n2 + i
        for k in range(size - 1, step - 1, -1):  # multiply by (1 - q^step)
            poly[k] -= poly[k - step]
        for k in range(i, size):  # divide by (1 - q^i)
            poly[k] += poly[k - i]
    return poly


def mann_whitney_u(
    x: Sequence[float], y: Sequence[float], alternative: Alternative = "two-sided"
) -> MannWhitneyResult:
    """Mann-Whitney U test of ``x`` against ``y``.

    ``alternative="greater"`` tests whether ``x`` tends to be larger than ``y``.
    Exact distribution when a sample has at most 8 values and there are no ties;
    otherwise the normal approximation with tie correction and continuity
    correction (the same choices as ``scipy.stats.mannwhitneyu`` with
    ``method="auto"``).  Raises ``ValueError`` on an empty sample.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("Mann-Whitney U needs at least one value in each sample")
    combined = [float(v) for v in x] + [float(v) for v in y]
    ranks, tie_term = _ranks(combined)
    r1 = math.fsum(ranks[:n1])
    u1 = r1 - n1 * (n1 + 1) / 2.0
    if tie_term == 0 and min(n1, n2) <= _EXACT_MAX_N:
        counts = _exact_cdf_counts(min(n1, n2), max(n1, n2))  # symmetric in n1, n2
        total = sum(counts)
        k = round(u1)
        p_greater = sum(counts[k:]) / total
        p_less = sum(counts[: k + 1]) / total
        method: Literal["exact", "normal"] = "exact"
    else:
        n = n1 + n2
        mu = n1 * n2 / 2.0
        var = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
        if var <= 0:  # every value equal
            return MannWhitneyResult(u1, 1.0, alternative, "normal", n1, n2)
        sigma = math.sqrt(var)
        p_greater = 0.5 * math.erfc(((u1 - mu - 0.5) / sigma) / math.sqrt(2.0))
        p_less = 0.5 * math.erfc((-(u1 - mu + 0.5) / sigma) / math.sqrt(2.0))
        method = "normal"
    if alternative == "greater":
        p = p_greater
    elif alternative == "less":
        p = p_less
    else:
        p = min(1.0, 2.0 * min(p_greater, p_less))
    return MannWhitneyResult(u1, min(1.0, max(0.0, p)), alternative, method, n1, n2)


def best_possible_p(n1: int, n2: int) -> float:
    """Smallest one-sided p-value a perfect separation can give (exact)."""
    return 1.0 / math.comb(n1 + n2, n1)


@dataclass(frozen=True)
class RoundPermutationResult:
    """A rank test that keeps each round's (session's) samples together.

    ``auc`` is P(x > y) + P(x = y) / 2 over all pairs of samples (0.5: no
    difference); ``p_value`` per ``alternative``; ``method`` ``"exact"`` (every
    split of the rounds) or ``"monte-carlo"`` (random splits, seeded);
    ``rounds_x``/``rounds_y`` the number of rounds on each side.
    """

    auc: float
    p_value: float
    alternative: Alternative
    method: Literal["exact", "monte-carlo"]
    rounds_x: int
    rounds_y: int
    permutations: int


def _clusters(values: Sequence[float], groups: Sequence[int] | None) -> list[list[int]]:
    """Indices of ``values`` per group (one group when ``groups`` is None)."""
    if groups is None:
        return [list(range(len(values)))]
    if len(groups) != len(values):
        raise ValueError(f"{len(groups)} group labels for {len(values)} values")
    by: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        by.setdefault(int(g), []).append(i)
    return list(by.values())


def round_permutation_count(rounds_x: int, rounds_y: int) -> int:
    """Distinct splits of ``rounds_x + rounds_y`` rounds into the two sides."""
    return math.comb(rounds_x + rounds_y, rounds_x)


def round_permutation_test(
    x: Sequence[float], x_groups: Sequence[int] | None,
    y: Sequence[float], y_groups: Sequence[int] | None,
    alternative: Alternative = "two-sided", *, max_exact: int = 20_000,
    resamples: int = 4_999, seed: int = 0,
) -> RoundPermutationResult:
    """Rank-sum test of ``x`` against ``y`` whose samples come in rounds.

    Samples measured in one pytest process (one round of ``ab``, one session of
    a history baseline) share that process's noise — its CPU placement, its
    neighbours on the machine — so they are not independent, and a
    Mann-Whitney test that treats them as such is too confident.  Here whole
    rounds are permuted between the two sides: the statistic is the
    Mann-Whitney AUC of the pooled samples (ranks computed once), and the
    p-value is the share of splits of the rounds that give an AUC at least as
    extreme as the observed one.  Under "no change" the rounds are
    exchangeable, so the test keeps its level however large the
    round-to-round noise is.  Every split is enumerated while there are at
    most ``max_exact`` of them; otherwise ``resamples`` random splits (seeded,
    so reproducible), stopped early once 20 splits were at least as extreme
    (Besag & Clifford's sequential p-value: clearly not significant).  The
    smallest possible p-value is ``1 / round_permutation_count(kx, ky)``.
    """
    cx, cy = _clusters(x, x_groups), _clusters(y, y_groups)
    if not x or not y:
        raise ValueError("the round permutation test needs at least one value in each sample")
    combined = [float(v) for v in x] + [float(v) for v in y]
    ranks, _ = _ranks(combined)
    n_x = len(x)
    sums = [math.fsum(ranks[i] for i in c) for c in cx]
    sums += [math.fsum(ranks[n_x + i] for i in c) for c in cy]
    sizes = [len(c) for c in cx] + [len(c) for c in cy]
    total = len(combined)
    k, kx = len(sizes), len(cx)

    def auc(chosen: Iterable[int]) -> float:
        r = n = 0.0
        for i in chosen:
            r += sums[i]
            n += sizes[i]
        if n == 0 or n == total:
            return 0.5
        return (r - n * (n + 1) / 2.0) / (n * (total - n))

    observed = auc(range(kx))
    eps = 1e-12
    if alternative == "greater":
        def extreme(a: float) -> bool:
            return a >= observed - eps
    elif alternative == "less":
        def extreme(a: float) -> bool:
            return a <= observed + eps
    else:
        def extreme(a: float) -> bool:
            return abs(a - 0.5) >= abs(observed - 0.5) - eps
    splits = round_permutation_count(kx, k - kx)
    if splits <= max_exact:
        hits = sum(1 for chosen in itertools.combinations(range(k), kx) if extreme(auc(chosen)))
        return RoundPermutationResult(observed, hits / splits, alternative, "exact", kx,
                                      k - kx, splits)
    rng = random.Random(seed)
    population = range(k)
    hits = drawn = 0
    while drawn < resamples:
        drawn += 1
        if extreme(auc(rng.sample(population, kx))):
            hits += 1
            if hits >= 20:  # Besag-Clifford: p = hits / drawn, far above any alpha
                return RoundPermutationResult(observed, hits / drawn, alternative,
                                              "monte-carlo", kx, k - kx, drawn)
    return RoundPermutationResult(observed, (hits + 1) / (drawn + 1), alternative,
                                  "monte-carlo", kx, k - kx, drawn)
