"""A typed, mergeable latency histogram (HDR, nanoseconds) shared by load tests and middleware.

:class:`LatencyHistogram` records durations in integer nanoseconds into an
HdrHistogram in the project's one layout, :func:`new_hdr` (1 ns .. 1 h, 3 significant
digits, so every percentile is within 0.1 % of the exact value; ``stats.SampleSet``
builds on it: ``stats`` imports this module, never the reverse), and keeps exact count,
sum, min and max beside it.

Percentiles follow the project's single definition (:func:`percentile`, defined here,
linear interpolation, type 7) while at most ``exact_limit`` values have been
recorded: those are kept raw.  Past that only the histogram remains (memory is
constant whatever the count) and a percentile is the HDR value at that rank,
clamped into the exact ``[min, max]`` — exactly what ``SampleSet`` does.

Histograms merge (:meth:`LatencyHistogram.merge`) and travel between processes
as HdrHistogram's own compressed base64 "histoblob" (:meth:`encode`,
:meth:`decode`), so load runs of several workers can be added up.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "HDR_DIGITS", "HDR_HIGHEST_NS", "HDR_LOWEST_NS", "FastHdr", "LatencyHistogram", "clamp_ns",
    "new_hdr", "percentile",
]

NS_PER_S = 1_000_000_000
#: Layout of every latency histogram in the project (``stats.SampleSet`` builds on it).
HDR_LOWEST_NS = 1
HDR_HIGHEST_NS = 3600 * NS_PER_S
HDR_DIGITS = 3

#: Percentiles (0..100) that :meth:`LatencyHistogram.summary` reports.
SUMMARY_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0..100) of already **sorted** values.

    Linear interpolation between closest ranks (type 7).  Raises ``ValueError``
    for an empty sequence or ``q`` outside 0..100.
    """
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q!r}")
    if n == 1:
        return float(sorted_values[0])
    h = (n - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    low = float(sorted_values[lo])
    return low + (h - lo) * (float(sorted_values[hi]) - low)



def new_hdr(lowest_ns: int = HDR_LOWEST_NS, digits: int = HDR_DIGITS) -> Any:
    """A fresh ``hdrh`` histogram of nanoseconds up to one hour."""
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(lowest_ns, HDR_HIGHEST_NS, digits)


class FastHdr:
    """Fast recording into an ``hdrh`` histogram (its ``record_value`` is ~1.5 us of Python).

    Computes the counts index inline (the same arithmetic as ``hdrh``) and keeps
    count, min and max aside; :meth:`sync` writes them into the histogram, and
    must be called before the histogram is read, added, encoded or reset.
    Values must already lie in the histogram's range (see :func:`clamp_ns`).
    """

    __slots__ = ("_counts", "_half", "_mask", "_shcm", "_shift", "_um", "hdr", "hi", "lo", "n")

    def __init__(self, hdr: Any) -> None:
        self.hdr = hdr
        self._counts = hdr.counts
        self._mask = hdr.sub_bucket_mask
        self._um = hdr.unit_magnitude
        self._shcm = hdr.sub_bucket_half_count_magnitude
        self._shift = self._um + self._shcm + 1
        self._half = hdr.sub_bucket_half_count
        self.n = 0
        self.lo = 0
        self.hi = 0

    def record(self, v: int) -> None:
        b = (v | self._mask).bit_length() - self._shift
        self._counts[((b + 1) << self._shcm) + (v >> (b + self._um)) - self._half] += 1
        if self.n == 0 or v < self.lo:
            self.lo = v
        if v > self.hi:
            self.hi = v
        self.n += 1

    def record_many(self, values: list[int]) -> None:
        """Record many values (already in range) at once: ``record`` without a call per value."""
        if not values:
            return
        counts, mask, shift, shcm, um, half = (
            self._counts, self._mask, self._shift, self._shcm, self._um, self._half)
        for v in values:
            b = (v | mask).bit_length() - shift
            counts[((b + 1) << shcm) + (v >> (b + um)) - half] += 1
        lo, hi = min(values), max(values)
        if self.n == 0 or lo < self.lo:
            self.lo = lo
        if hi > self.hi:
            self.hi = hi
        self.n += len(values)

    def sync(self) -> Any:
        """Fold the values recorded here into the histogram's totals; returns it."""
        if self.n:
            hdr = self.hdr
            hdr.total_count += self.n
            hdr.min_value = min(hdr.min_value, self.lo)
            hdr.max_value = max(hdr.max_value, self.hi)
            self.n = self.lo = self.hi = 0
        return self.hdr


def clamp_ns(ns: int) -> int:
    """Clamp a duration into the recordable range of the histograms."""
    if ns < HDR_LOWEST_NS:
        return HDR_LOWEST_NS
    if ns > HDR_HIGHEST_NS:
        return HDR_HIGHEST_NS
    return ns


class LatencyHistogram:
    """Bounded-memory, mergeable distribution of durations (recorded in ns, read in s).

    Not thread-safe: callers recording from several threads hold a lock.
    """

    __slots__ = ("_count", "_exact", "_exact_limit", "_fast", "_hdr", "_max", "_min", "_sum")

    def __init__(self, exact_limit: int = 1024) -> None:
        if exact_limit < 0:
            raise ValueError("exact_limit must be >= 0")
        self._exact_limit = exact_limit
        self._exact: array[int] | None = array("q")
        self._hdr: Any = new_hdr()
        self._fast = FastHdr(self._hdr)
        self._count = 0
        self._sum = 0
        self._min = 0
        self._max = 0

    # -- recording -----------------------------------------------------------
    def record_ns(self, ns: int) -> None:
        """Record one duration in nanoseconds (clamped into 1 ns .. 1 h)."""
        ns = clamp_ns(ns)
        if self._count == 0 or ns < self._min:
            self._min = ns
        if ns > self._max:
            self._max = ns
        self._count += 1
        self._sum += ns
        self._fast.record(ns)
        exact = self._exact
        if exact is not None:
            if len(exact) < self._exact_limit:
                exact.append(ns)
            else:
                self._exact = None

    def record_many_ns(self, values: Sequence[int]) -> None:
        """Record many durations in nanoseconds, already within 1 ns .. 1 h
        (:func:`clamp_ns`): the same as ``record_ns`` for each, in one batch."""
        if not values:
            return
        batch = values if isinstance(values, list) else list(values)
        lo, hi = min(batch), max(batch)
        if self._count == 0 or lo < self._min:
            self._min = lo
        if hi > self._max:
            self._max = hi
        self._count += len(batch)
        self._sum += sum(batch)
        self._fast.record_many(batch)
        exact = self._exact
        if exact is not None:
            if len(exact) + len(batch) <= self._exact_limit:
                exact.extend(batch)
            else:
                self._exact = None

    def record(self, seconds: float) -> None:
        """Record one duration in seconds."""
        self.record_ns(int(seconds * NS_PER_S))

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other`` into this histogram (order-independent)."""
        if other._count == 0:
            return
        self._fast.sync()
        self._hdr.add(other._fast.sync())
        if self._count == 0:
            self._min, self._max = other._min, other._max
        else:
            self._min = min(self._min, other._min)
            self._max = max(self._max, other._max)
        self._count += other._count
        self._sum += other._sum
        if (
            self._exact is not None
            and other._exact is not None
            and len(self._exact) + len(other._exact) <= self._exact_limit
        ):
            self._exact.extend(other._exact)
        else:
            self._exact = None

    def reset(self) -> None:
        """Forget every recorded value."""
        self._fast.sync()
        self._hdr.reset()
        self._exact = array("q")
        self._count = self._sum = self._min = self._max = 0

    # -- transport -----------------------------------------------------------
    def encode(self) -> str:
        """HdrHistogram's compressed base64 histoblob (V2) of the distribution."""
        blob = self._fast.sync().encode()
        return blob.decode("ascii") if isinstance(blob, bytes) else str(blob)

    @classmethod
    def decode(cls, blob: str | bytes) -> LatencyHistogram:
        """Rebuild a histogram from :meth:`encode` output (or any ns histoblob).

        Count, min, max and mean come from the histogram itself, so they carry
        its 0.1 % resolution; the raw values of a small histogram do not travel.
        """
        from hdrh.histogram import HdrHistogram

        decoded = HdrHistogram.decode(blob)
        out = cls(exact_limit=0)
        out._exact = None
        count = int(decoded.get_total_count())
        if count:
            out._fast.sync()
            out._hdr.add(decoded)
            out._count = count
            out._min = int(decoded.get_min_value())
            out._max = int(decoded.get_max_value())
            out._sum = round(decoded.get_mean_value() * count)
        return out

    @classmethod
    def merged(cls, histograms: Iterable[LatencyHistogram]) -> LatencyHistogram:
        """A new histogram holding the sum of ``histograms``."""
        out = cls()
        for h in histograms:
            out.merge(h)
        return out

    # -- reading -------------------------------------------------------------
    @property
    def hdr(self) -> Any:
        """The underlying ``hdrh.histogram.HdrHistogram`` (values in ns). Do not mutate."""
        return self._fast.sync()

    @property
    def exact(self) -> bool:
        """True while every value is kept and percentiles are exact."""
        return self._exact is not None

    def exact_values_ns(self) -> Sequence[int] | None:
        """The recorded values (ns) while they are all kept, else ``None``. Do not mutate."""
        return self._exact

    @property
    def min_ns(self) -> int:
        """The exact smallest recorded value (ns); 0 when empty."""
        return self._min

    @property
    def max_ns(self) -> int:
        """The exact largest recorded value (ns); 0 when empty."""
        return self._max

    def __len__(self) -> int:
        return self._count

    @property
    def total_s(self) -> float:
        return self._sum / NS_PER_S

    @property
    def min_s(self) -> float | None:
        return self._min / NS_PER_S if self._count else None

    @property
    def max_s(self) -> float | None:
        return self._max / NS_PER_S if self._count else None

    @property
    def mean_s(self) -> float | None:
        return self._sum / self._count / NS_PER_S if self._count else None

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100) in seconds; ``ValueError`` when empty."""
        return self.percentiles((q,))[0]

    def percentiles(self, qs: Iterable[float]) -> list[float]:
        """Several percentiles in seconds, in the order of ``qs``."""
        qs = list(qs)
        if self._count == 0:
            raise ValueError("percentile of no samples")
        for q in qs:
            if not 0.0 <= q <= 100.0:
                raise ValueError(f"percentile must be within 0..100, got {q!r}")
        if self._exact is not None:
            ordered = sorted(self._exact)
            return [percentile(ordered, q) / NS_PER_S for q in qs]
        values = self._fast.sync().get_percentile_to_value_dict(qs)
        return [min(max(int(values[q]), self._min), self._max) / NS_PER_S for q in qs]

    def summary(self) -> dict[str, Any]:
        """count, min, mean, p50, p90, p95, p99, p999, max (seconds) and ``exact``."""
        keys = ("p50", "p90", "p95", "p99", "p999")
        if self._count == 0:
            out: dict[str, Any] = {"count": 0, "min": None, "mean": None}
            out.update(dict.fromkeys(keys))
            out["max"] = None
        else:
            out = {"count": self._count, "min": self.min_s, "mean": self.mean_s}
            out.update(zip(keys, self.percentiles(SUMMARY_PERCENTILES), strict=True))
            out["max"] = self.max_s
        out["exact"] = self.exact
        return out
