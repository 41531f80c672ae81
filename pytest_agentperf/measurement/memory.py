"""Measurement primitives: monotonic timing, CPU time and peak memory.

Peak memory ("how much did this block add at its worst?") is measured by one of
three methods, chosen per session:

``hwm`` (default on Linux)
    The kernel's resident-set high-water mark.  At the start the peak is reset
    by writing ``5`` to ``/proc/self/clear_refs`` and the current RSS is read;
    at the end ``VmHWM`` from ``/proc/self/status`` is the peak.  The kernel
    keeps it, so nothing runs while the test runs: zero overhead, and a
    transient allocation freed before the end is still seen.  Measures the
    whole process (all threads, C extensions included).
``sample``
    Where ``clear_refs`` is not available (other systems, locked-down
    containers): a daemon thread polls the RSS every millisecond.  Transients
    shorter than the poll interval can be missed; the report says ``sample``.
``tracemalloc``
    Python-level allocations only, exact, but tracing slows allocation-heavy
    code several-fold.  Opt-in (``--perf-memory=tracemalloc``).
``off``
    No memory measurement.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "MemoryMethod", "MemoryProbe", "MemoryResult", "ProcFiles", "best_memory_method", "rss_bytes",
]

MemoryMethod = Literal["hwm", "sample", "tracemalloc", "off"]
MiB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class MemoryResult:
    method: str
    start_mb: float
    end_mb: float
    peak_mb: float  # peak added above start, >= 0

    def as_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "peak_mb": round(self.peak_mb, 3),
            "start_mb": round(self.start_mb, 3),
            "end_mb": round(self.end_mb, 3),
            "growth_mb": round(self.end_mb - self.start_mb, 3),
        }


def rss_bytes() -> int:
    """Current resident set size of this process, in bytes."""
    if sys.platform.startswith("linux"):
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    import psutil

    return int(psutil.Process().memory_info().rss)


def _read_hwm_bytes() -> int:
    with open("/proc/self/status", "rb") as f:
        text = f.read()
    start = text.find(b"VmHWM:")
    if start < 0:
        raise OSError("VmHWM not found in /proc/self/status")
    return int(text[start + 6 : text.index(b"kB", start)]) * 1024


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class ProcFiles:
    """``/proc/self`` files opened once and read with ``pread``: no ``open()`` per test.

    Linux only; raises ``OSError`` where the files are missing or read-only.
    """

    def __init__(self) -> None:
        self._statm = os.open("/proc/self/statm", os.O_RDONLY)
        self._status = os.open("/proc/self/status", os.O_RDONLY)
        try:
            self._clear_refs = os.open("/proc/self/clear_refs", os.O_WRONLY)
        except OSError:
            self.close()
            raise
        self.reset_peak()
        self.peak_bytes()

    def rss_bytes(self) -> int:
        return int(os.pread(self._statm, 256, 0).split()[1]) * _PAGE

    def peak_bytes(self) -> int:
        text = os.pread(self._status, 16384, 0)
        start = text.find(b"VmHWM:")
        if start < 0:
            raise OSError("VmHWM not found in /proc/self/status")
        return int(text[start + 6 : text.index(b"kB", start)]) * 1024

    def reset_peak(self) -> None:
        os.write(self._clear_refs, b"5")

    def close(self) -> None:
        for name in ("_statm", "_status", "_clear_refs"):
            fd = getattr(self, name, None)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)


def best_memory_method() -> MemoryMethod:
    """``hwm`` where the kernel lets us reset the peak, else ``sample``."""
    if sys.platform.startswith("linux"):
        try:
            _reset_hwm()
            _read_hwm_bytes()
            return "hwm"
        except OSError:
            pass
    return "sample"


class _Sampler(threading.Thread):
    def __init__(self, interval: float) -> None:
        super().__init__(name="agentperf-rss-sampler", daemon=True)
        self.interval = interval
        self.peak = rss_bytes()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            rss = rss_bytes()
            if rss > self.peak:
                self.peak = rss

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, rss_bytes())


class MemoryProbe:
    """Measure the peak memory added by a block: ``start()`` then ``stop()``.

    For ``hwm``, pass the session's :class:`ProcFiles` to avoid opening the
    ``/proc`` files on every probe.
    """

    def __init__(
        self, method: MemoryMethod, sample_interval: float = 0.001,
        proc: ProcFiles | None = None,
    ) -> None:
        self.method: MemoryMethod = method
        self._interval = sample_interval
        self._proc = proc
        self._start = 0
        self._sampler: _Sampler | None = None
        self._started_tracing = False

    def start(self) -> None:
        method = self.method
        if method == "hwm":
            if self._proc is not None:
                self._proc.reset_peak()
                self._start = self._proc.rss_bytes()
            else:
                _reset_hwm()
                self._start = rss_bytes()
        elif method == "sample":
            self._start = rss_bytes()
            self._sampler = _Sampler(self._interval)
            self._sampler.start()
        elif method == "tracemalloc":
            import tracemalloc

            if not tracemalloc.is_tracing():
                tracemalloc.start()
                self._started_tracing = True
            tracemalloc.reset_peak()
            self._start = tracemalloc.get_traced_memory()[0]

    def stop(self) -> MemoryResult | None:
        method = self.method
        if method == "off":
            return None
        if method == "hwm":
            if self._proc is not None:
                peak = self._proc.peak_bytes()
                end = self._proc.rss_bytes()
            else:
                peak = _read_hwm_bytes()
                end = rss_bytes()
        elif method == "sample":
            assert self._sampler is not None
            peak = self._sampler.stop()
            self._sampler = None
            end = rss_bytes()
        else:
            import tracemalloc

            end, peak = tracemalloc.get_traced_memory()
            if self._started_tracing:
                tracemalloc.stop()
                self._started_tracing = False
        peak = max(peak, end)
        return MemoryResult(method, self._start / MiB, end / MiB, max(0, peak - self._start) / MiB)


def cpu_time_ns() -> int:
    """CPU time (user + system) of the whole process, ns."""
    return time.process_time_ns()
