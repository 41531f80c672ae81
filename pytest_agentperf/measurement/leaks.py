"""Leak measurement: memory still held after a body ran and garbage was collected.

:class:`LeakChecker` answers "how much memory allocated by this code is still
alive afterwards?" — not how high memory peaked.  ``start()`` starts
:mod:`tracemalloc` if it is not already tracing (if it is, collects garbage
first), then snapshots; ``stop()`` collects garbage again, snapshots and diffs: the retained MiB are
the net size of blocks allocated in between that are still alive, and the
diff grouped by line gives the top retained allocation sites.  A transient
allocation that was freed before ``stop()`` leaves nothing behind.

With ``types=True`` the live objects whose allocation tracemalloc traced —
those the body allocated and left alive — are also grouped by type (one walk
of every object, so slower; sizes are
shallow ``sys.getsizeof``).  When tracemalloc was already tracing before
``start()``, old and new objects cannot be told apart that way and
``top_types`` is None (a pympler summary diff was tried: under tracing it takes
minutes on a large heap, and is wrong on Python 3.11+, where walking objects
materialises their ``__dict__``s).

tracemalloc only runs between ``start()`` and ``stop()`` (unless something
else started it, in which case it is left running), so code that does not
ask for leak checking pays nothing.  Allocations made by pre-existing objects
between the two points (caches warming up, first imports) count as retained:
that is what the test body left behind.
"""

from __future__ import annotations

import gc
import linecache
import os
import sys
import tracemalloc
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

from ..findings import MEMORY_LEAK, Finding

__all__ = ["LeakChecker", "LeakResult", "RetainedSite", "RetainedType"]

_MIB = 1024 * 1024


@dataclass(frozen=True)
class RetainedSite:
    """An allocation site (``file:line``) and what it still holds."""

    site: str
    size_mb: float
    count: int
    source: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site, "size_mb": self.size_mb, "count": self.count,
            "source": self.source,
        }


@dataclass(frozen=True)
class RetainedType:
    """Live objects of one type allocated between start and stop."""

    type: str
    size_mb: float
    count: int

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "size_mb": self.size_mb, "count": self.count}


@dataclass
class LeakResult:
    """What :meth:`LeakChecker.stop` measured."""

    retained_mb: float
    top_sites: list[RetainedSite] = field(default_factory=list)
    top_types: list[RetainedType] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "retained_mb": self.retained_mb,
            "top_sites": [s.as_dict() for s in self.top_sites],
            "top_types": None if self.top_types is None else [t.as_dict() for t in self.top_types],
        }

    def describe(self) -> str:
        """Multi-line text for a failure message: retained MiB, sites, types."""
        lines = [f"{self.retained_mb:.2f} MiB still held after the test body and gc.collect()"]
        if self.top_sites:
            lines.append("  top retained allocation sites:")
            for s in self.top_sites:
                src = f"  {s.source}" if s.source else ""
                lines.append(f"    {s.size_mb:9.3f} MiB {s.count:8d} blocks  {s.site}{src}")
        if self.top_types:
            lines.append("  top retained types:")
            for t in self.top_types:
                lines.append(f"    {t.size_mb:9.3f} MiB {t.count:8d} objects  {t.type}")
        return "\n".join(lines)


class LeakChecker:
    """Measure memory retained between :meth:`start` and :meth:`stop`.

    ``LeakChecker(top=10, frames=1, types=False)``: ``top`` sites (and types)
    to report, ``frames`` of traceback tracemalloc keeps per block (only when
    this checker starts tracing), ``types`` to add the retained types.
    """

    def __init__(self, *, top: int = 10, frames: int = 1, types: bool = False) -> None:
        if top < 1 or frames < 1:
            raise ValueError("top and frames must be >= 1")
        self.top = top
        self.frames = frames
        self.types = types
        self._started_tracing = False
        self._before: tracemalloc.Snapshot | None = None
        self._running = False
        self.result: LeakResult | None = None

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        """Start tracemalloc if needed (else collect garbage), take the first snapshot."""
        if self._running:
            raise RuntimeError("LeakChecker already started")
        self.result = None
        if not tracemalloc.is_tracing():
            # Nothing allocated before this point is traced, so garbage
            # already pending cannot blur the diff: no collection needed.
            tracemalloc.start(self.frames)
            self._started_tracing = True
        else:
            gc.collect()  # pending garbage freed later would look like negative retention
        self._before = tracemalloc.take_snapshot()
        self._running = True

    def stop(self, *, types_over_mb: float | None = None) -> LeakResult:
        """Collect garbage, snapshot, diff; stop tracemalloc if ``start`` started it.

        With ``types=True`` the retained-types walk (the slow part) runs only
        when more than ``types_over_mb`` MiB are retained (None: always) — pass
        the budget to pay for it only when the failure message needs it.
        """
        if not self._running or self._before is None:
            raise RuntimeError("LeakChecker.stop() without start()")
        self._running = False
        before, self._before = self._before, None
        top_types = None
        try:
            gc.collect()
            after = tracemalloc.take_snapshot()
            retained, sites = self._diff(before, after)
            del before, after
            if (
                self.types
                and self._started_tracing
                and (types_over_mb is None or retained / _MIB > types_over_mb)
            ):
                top_types = _traced_types(self.top)
        finally:
            if self._started_tracing:
                tracemalloc.stop()
                self._started_tracing = False
        # Source lines are read after tracing: linecache's own allocations
        # must not show up as retained types.
        sites = [replace(site, source=_source(site.site)) for site in sites]
        self.result = LeakResult(retained_mb=retained / _MIB, top_sites=sites, top_types=top_types)
        return self.result

    def _diff(
        self, before: tracemalloc.Snapshot, after: tracemalloc.Snapshot
    ) -> tuple[int, list[RetainedSite]]:
        filters = [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, os.path.abspath(__file__)),
        ]
        stats = after.filter_traces(filters).compare_to(before.filter_traces(filters), "lineno")
        retained = sum(s.size_diff for s in stats)
        grown = sorted((s for s in stats if s.size_diff > 0), key=lambda s: s.size_diff,
                       reverse=True)[: self.top]
        sites = []
        for s in grown:
            frame = s.traceback[0]
            sites.append(
                RetainedSite(
                    site=f"{frame.filename}:{frame.lineno}",
                    size_mb=s.size_diff / _MIB,
                    count=s.count_diff,
                )
            )
        return retained, sites

    def finding(self, budget_mb: float) -> Finding | None:
        """A ``memory_leak`` finding when the last result exceeds ``budget_mb``."""
        result = self.result
        if result is None or result.retained_mb <= budget_mb:
            return None
        where = result.top_sites[0].site if result.top_sites else "unknown site"
        return Finding(
            kind=MEMORY_LEAK,
            message=(
                f"{result.retained_mb:.2f} MiB retained after the test "
                f"(budget {budget_mb:g} MiB), most at {where}"
            ),
            details=result.as_dict(),
        )

    def report_section(self) -> dict[str, Any]:
        """``{"retained_mb", "top_sites": [...], "top_types": [...] | None}``
        of the last run (``retained_mb`` None before any ``stop()``)."""
        if self.result is None:
            return {"retained_mb": None, "top_sites": [], "top_types": None}
        return self.result.as_dict()


def _source(site: str) -> str:
    filename, _, lineno = site.rpartition(":")
    return linecache.getline(filename, int(lineno)).strip()


def _traced_types(top: int) -> list[RetainedType]:
    """Live objects allocated since tracing started (their allocation is
    traced), grouped by type: exactly the objects the body left behind.

    Walks the gc-tracked objects and their direct referents (which reach the
    untracked ones: str, bytes, bytearray, numbers), as pympler's muppy does,
    but only remembers the traced ones.
    """
    get_traceback = tracemalloc.get_object_traceback
    get_referents = gc.get_referents
    objects = gc.get_objects()  # our own objects below are made after this list
    counts: dict[type, int] = {}
    sizes: dict[type, int] = {}
    seen: set[int] = set()
    ours = (objects, counts, sizes, seen)
    skip_files = {tracemalloc.__file__, os.path.abspath(__file__), __file__}
    try:
        for obj in objects:
            if isinstance(obj, ModuleType):
                # Never ask a module object for its referents: C modules'
                # traverse functions may visit freed objects (CPython 3.12's
                # _asyncio, gh-122695: a segfault or an endless gc.collect()).
                # Its __dict__ is a gc-tracked object of its own and is walked.
                continue
            # The object itself, then what it refers to (reaches the untracked
            # str/bytes/bytearray objects); duplicates are dropped by ``seen``.
            refs = get_referents(obj)
            refs.append(obj)
            for candidate in refs:
                traceback = get_traceback(candidate)
                if traceback is None or id(candidate) in seen:
                    continue
                if traceback[0].filename in skip_files or any(candidate is o for o in ours):
                    continue  # the checker's own objects (snapshots, tallies)
                seen.add(id(candidate))
                kind = type(candidate)
                counts[kind] = counts.get(kind, 0) + 1
                sizes[kind] = sizes.get(kind, 0) + sys.getsizeof(candidate)
    finally:
        del objects, ours, skip_files
    ranked = sorted(sizes, key=sizes.__getitem__, reverse=True)[:top]
    return [
        RetainedType(type=_type_name(t), size_mb=sizes[t] / _MIB, count=counts[t]) for t in ranked
    ]


def _type_name(t: type) -> str:
    module = getattr(t, "__module__", "builtins")
    name = getattr(t, "__qualname__", t.__name__)
    return name if module == "builtins" else f"{module}.{name}"
