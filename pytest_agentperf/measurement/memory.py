"""Measurement primitives: monotonic timing, CPU time and peak memory.

Peak memory ("how much did this block add at its worst?") is measured by one of
these methods, chosen per session:

``faults`` (default on Linux with glibc)
    Memory the block made resident, counted by the kernel as page faults
    (``getrusage``: every page a process touches for the first time is a
    fault), with the allocator's free memory handed back to the kernel first
    (glibc ``malloc_trim(0)``), so an allocation that reuses memory an earlier
    test freed faults again and is seen.  Nothing runs while the block runs
    and no process-wide counter is reset: ``ru_maxrss`` and ``VmHWM`` keep
    meaning what the process's monitoring expects.  The figure is exact when
    the block raised the process's RSS high-water mark, otherwise an upper
    bound (memory freed and touched again within the block counts twice, never
    more than the process's own peak).  Costs one ``malloc_trim`` per test
    (see ``bench/bench_memory.py``).  Not chosen where transparent huge pages
    are ``always`` on (one fault may then map 2 MiB).
``hwm`` (opt-in, Linux)
    The kernel's resident-set high-water mark, reset at the start by writing
    ``5`` to ``/proc/self/clear_refs``.  That reset is process-wide: after it,
    ``ru_maxrss`` and ``/usr/bin/time``'s maximum RSS report the peak since the
    last test, not the process's.  It also misses allocations that reuse memory
    the allocator kept resident.  Kept for comparison; never the default.
``sample``
    Elsewhere: a daemon thread polls the RSS every millisecond.  Transients
    shorter than the poll interval (or run without releasing the GIL) can be
    missed; the report says ``sample``.
``tracemalloc``
    Python-level allocations only, exact, but tracing slows allocation-heavy
    code several-fold.  Opt-in (``--perf-memory=tracemalloc``).  A block that
    stops tracemalloc itself reads *unknown*, not 0.
``off``
    No memory measurement.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Glibc", "MemoryMethod", "MemoryProbe", "MemoryResult", "ProcFiles", "best_memory_method",
    "hwm_available", "rss_bytes",
]

MemoryMethod = Literal["faults", "hwm", "sample", "tracemalloc", "off"]
MiB = 1024 * 1024
if sys.platform != "win32":
    from resource import RUSAGE_SELF as _RUSAGE_SELF
    from resource import getrusage as _getrusage
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class MemoryResult:
    method: str
    start_mb: float
    end_mb: float
    #: peak added above start, >= 0; None: unknown (the measurement was lost)
    peak_mb: float | None
    #: why the peak is unknown, or how it was bounded
    note: str | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "method": self.method,
            "peak_mb": None if self.peak_mb is None else round(self.peak_mb, 3),
            "start_mb": round(self.start_mb, 3),
            "end_mb": round(self.end_mb, 3),
            "growth_mb": round(self.end_mb - self.start_mb, 3),
        }
        if self.note:
            out["note"] = self.note
        return out


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

    ``clear_refs``: also open ``/proc/self/clear_refs`` for writing and reset the peak
    (the ``hwm`` method); the ``faults`` method only reads.  A process forked from the
    one that opened them (a test run in a forked child) opens its own on its first read.
    Linux only; raises ``OSError`` where the files are missing or read-only.
    """

    def __init__(self, clear_refs: bool = True) -> None:
        self._with_clear_refs = clear_refs
        self._pid = -1
        self._statm: int | None = None
        self._status: int | None = None
        self._clear_refs: int | None = None
        self._open()
        if clear_refs:
            self.reset_peak()
        self.peak_bytes()

    def _open(self) -> None:
        self.close()
        try:
            self._statm = os.open("/proc/self/statm", os.O_RDONLY)
            self._status = os.open("/proc/self/status", os.O_RDONLY)
            if self._with_clear_refs:
                self._clear_refs = os.open("/proc/self/clear_refs", os.O_WRONLY)
        except OSError:
            self.close()
            raise
        self._pid = os.getpid()

    def rss_bytes(self) -> int:
        if self._pid != os.getpid() or self._statm is None:
            self._open()
        assert self._statm is not None
        return int(os.pread(self._statm, 256, 0).split()[1]) * _PAGE

    def peak_bytes(self) -> int:
        if self._pid != os.getpid() or self._status is None:
            self._open()
        assert self._status is not None
        text = os.pread(self._status, 16384, 0)
        start = text.find(b"VmHWM:")
        if start < 0:
            raise OSError("VmHWM not found in /proc/self/status")
        return int(text[start + 6 : text.index(b"kB", start)]) * 1024

    def reset_peak(self) -> None:
        if self._pid != os.getpid() or self._clear_refs is None:
            self._open()
        if self._clear_refs is None:
            raise OSError("/proc/self/clear_refs was not opened (ProcFiles(clear_refs=False))")
        os.write(self._clear_refs, b"5")

    def close(self) -> None:
        for name in ("_statm", "_status", "_clear_refs"):
            fd = getattr(self, name, None)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)


def hwm_available() -> bool:
    """Whether the process may reset its peak RSS (``/proc/self/clear_refs``).

    Only checks that the file is writable: it does not reset anything.
    """
    return sys.platform.startswith("linux") and os.access("/proc/self/clear_refs", os.W_OK)


def _thp_always() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[always]" in f.read()
    except OSError:
        return False


class Glibc:
    """glibc's allocator controls, through ctypes (``None`` from :meth:`load` elsewhere)."""

    _instance: Glibc | None = None

    def __init__(self, lib: Any) -> None:
        self._trim = lib.malloc_trim
        self._trim.argtypes = [ctypes.c_size_t]
        self._trim.restype = ctypes.c_int

    @classmethod
    def load(cls) -> Glibc | None:
        if cls._instance is None:
            if not sys.platform.startswith("linux"):
                return None
            try:
                lib = ctypes.CDLL(None)
                lib.gnu_get_libc_version  # noqa: B018 - glibc, not musl
                lib.malloc_trim  # noqa: B018
            except (OSError, AttributeError):
                return None
            cls._instance = cls(lib)
        return cls._instance

    def trim(self) -> None:
        """Give the allocator's free memory back to the kernel."""
        self._trim(0)


def best_memory_method() -> MemoryMethod:
    """``faults`` on Linux with glibc (unless THP is ``always``), else ``sample``."""
    if sys.platform.startswith("linux") and Glibc.load() is not None and not _thp_always():
        return "faults"
    return "sample"


def _faulted_pages() -> int:
    usage = _getrusage(_RUSAGE_SELF)
    return int(usage.ru_minflt + usage.ru_majflt)


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

    For ``hwm`` and ``faults``, pass the session's :class:`ProcFiles` to avoid opening
    the ``/proc`` files on every probe (``ProcFiles(clear_refs=False)`` for ``faults``).
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
        self._faults = 0
        self._hwm = 0

    def start(self) -> None:
        method = self.method
        if method == "faults":
            glibc = Glibc.load()
            if glibc is not None:
                glibc.trim()
            proc = self._proc
            if proc is not None:
                self._hwm = proc.peak_bytes()
                self._start = proc.rss_bytes()
            else:
                self._hwm = _read_hwm_bytes()
                self._start = rss_bytes()
            self._faults = _faulted_pages()
        elif method == "hwm":
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
        if method == "faults":
            touched = (_faulted_pages() - self._faults) * _PAGE
            proc = self._proc
            if proc is not None:
                end = proc.rss_bytes()
                hwm = proc.peak_bytes()
            else:
                end = rss_bytes()
                hwm = _read_hwm_bytes()
            if hwm > self._hwm:  # the block set the process's peak: exact
                added = hwm - self._start
            else:  # at most what it touched, at most the process's peak
                added = max(end - self._start, min(touched, hwm - self._start))
            return MemoryResult(method, self._start / MiB, end / MiB, max(0, added) / MiB)
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

            if not tracemalloc.is_tracing():  # the block stopped it: unknown, not 0
                self._started_tracing = False
                return MemoryResult(method, self._start / MiB, 0.0, None,
                                    "tracemalloc was stopped during the test")
            end, peak = tracemalloc.get_traced_memory()
            if self._started_tracing:
                tracemalloc.stop()
                self._started_tracing = False
        peak = max(peak, end)
        return MemoryResult(method, self._start / MiB, end / MiB, max(0, peak - self._start) / MiB)
