"""OptimizationChecker: N+1 call patterns and synchronous I/O names.

The guide's :class:`OptimizationChecker` with its N+1 detector fixed.  The
guide groups operations by type, sorts each group's timestamps and splits them
into clusters wherever two consecutive calls are ``max_gap_s`` (100 ms) or more
apart; a cluster of more than five calls of a type seen more than ten times is
an N+1 pattern.  It only examined a cluster when the *next* one started, so the
last cluster — and therefore a single tight loop, the commonest case — was
never reported.  Here every cluster is examined.

:meth:`OptimizationChecker.find_n_plus_one` is the structured form the plugin
applies to each test's profiler operations: one :class:`~.findings.Finding`
of kind ``n_plus_one`` per operation, naming the operation and its cluster
sizes.  Operations of different types interleaved in one loop are each
examined on their own (``db:get`` called per item is N+1 even if a
``cache:get`` sits between the calls); a call repeated a few times, or
spread out in time, is not flagged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from ..findings import N_PLUS_ONE, Finding

__all__ = [
    "DEFAULT_MAX_GAP_S",
    "DEFAULT_MIN_CALLS",
    "DEFAULT_MIN_CLUSTER_SIZE",
    "OptimizationChecker",
]

#: Two calls less than this apart belong to one cluster (the guide's 100 ms).
DEFAULT_MAX_GAP_S = 0.1
#: A cluster of at least this many calls is suspicious (the guide's "> 5").
DEFAULT_MIN_CLUSTER_SIZE = 6
#: Only operations called at least this often are examined (the guide's "> 10").
DEFAULT_MIN_CALLS = 11

_SYNC_IO_PATTERNS = ("time.sleep", "requests.get", "open(", "file.read", "file.write")

Operation: TypeAlias = Mapping[str, Any] | tuple[str, float]


def _normalise(operations: Iterable[Operation]) -> dict[str, list[float]]:
    groups: dict[str, list[float]] = {}
    for op in operations:
        if isinstance(op, tuple):
            key, ts = op
        else:
            key, ts = op["type"], op["timestamp"]
        groups.setdefault(str(key), []).append(float(ts))
    return groups


_MAX_SIZES = 50


def _sizes(sizes: list[int]) -> str:
    shown = ", ".join(map(str, sizes[:10]))
    return shown if len(sizes) <= 10 else f"{shown}, ... ({len(sizes)} in all)"


def _clusters(timestamps: list[float], max_gap_s: float) -> list[list[float]]:
    ordered = sorted(timestamps)
    clusters: list[list[float]] = []
    current = [ordered[0]]
    for ts in ordered[1:]:
        if ts - current[-1] < max_gap_s:
            current.append(ts)
        else:
            clusters.append(current)
            current = [ts]
    clusters.append(current)  # the guide forgot this one
    return clusters


class OptimizationChecker:
    """Check for common optimisation opportunities (the guide's API)."""

    @staticmethod
    def find_n_plus_one(
        operations: Iterable[Operation],
        *,
        max_gap_s: float = DEFAULT_MAX_GAP_S,
        min_cluster_size: int = DEFAULT_MIN_CLUSTER_SIZE,
        min_calls: int = DEFAULT_MIN_CALLS,
        call_counts: Mapping[str, int] | None = None,
    ) -> list[Finding]:
        """N+1 findings for ``operations``.

        Each operation is ``{"type": key, "timestamp": seconds}`` (the guide's
        shape; the plugin passes ``"agent:operation"`` and the monotonic start
        time) or a ``(key, seconds)`` tuple.  An operation called at least
        ``min_calls`` times with at least one cluster of ``min_cluster_size``
        calls, each less than ``max_gap_s`` after the previous one, gives a
        finding whose details are ``operation, calls, clusters, cluster_sizes,
        avg_cluster_size, max_gap_s``.  Findings come in first-seen order.

        ``call_counts`` (``{key: calls}``): the exact number of calls of each
        operation when ``operations`` holds only the most recent ones (the
        profiler keeps 10,000): ``calls`` is then exact and ``calls_examined``
        says how many the clusters were found among.
        """
        if max_gap_s <= 0 or min_cluster_size < 2 or min_calls < 1:
            raise ValueError("need max_gap_s > 0, min_cluster_size >= 2 and min_calls >= 1")
        findings: list[Finding] = []
        for key, timestamps in _normalise(operations).items():
            examined = len(timestamps)
            calls = max(examined, int((call_counts or {}).get(key, examined)))
            if calls < min_calls:
                continue
            sizes = [
                len(c) for c in _clusters(timestamps, max_gap_s) if len(c) >= min_cluster_size
            ]
            if not sizes:
                continue
            avg = sum(sizes) / len(sizes)
            plural = "cluster" if len(sizes) == 1 else "clusters"
            findings.append(
                Finding(
                    kind=N_PLUS_ONE,
                    message=(
                        f"Potential N+1 pattern: {key} called {calls} times, "
                        f"{len(sizes)} tight {plural} of sizes "
                        f"{_sizes(sizes)} (calls < {max_gap_s * 1000:g} ms apart"
                        + (f"; clusters among the last {examined} calls kept)"
                           if examined < calls else ")")
                    ),
                    details={
                        "operation": key,
                        "calls": calls,
                        "calls_examined": examined,
                        "clusters": len(sizes),
                        "cluster_sizes": sizes[:_MAX_SIZES],
                        "avg_cluster_size": avg,
                        "max_gap_s": max_gap_s,
                    },
                )
            )
        return findings

    @staticmethod
    def check_n_plus_one_queries(operations: list[dict[str, Any]]) -> list[str]:
        """Detect N+1 query patterns (the guide's API and message format)."""
        return [
            f"Potential N+1 query pattern detected for {f.details['operation']}: "
            f"{f.details['clusters']} clusters with avg size {f.details['avg_cluster_size']:.1f}"
            for f in OptimizationChecker.find_n_plus_one(operations)
        ]

    @staticmethod
    def check_synchronous_io(code_metrics: dict[str, Any]) -> list[str]:
        """Check for synchronous I/O names in ``code_metrics["function_calls"]``.

        ``function_calls`` is a list of called names (``"time.sleep"`` and
        ``"time.sleep("`` both match) or a source string searched for them.
        """
        calls = code_metrics.get("function_calls", [])
        if isinstance(calls, str):
            def present(pattern: str) -> bool:
                return pattern in calls
        else:
            names = {str(c).strip().rstrip("(").rstrip() for c in calls}

            def present(pattern: str) -> bool:
                return pattern.rstrip("(") in names

        return [
            f"Synchronous I/O detected: {pattern}. Consider using async alternative."
            for pattern in _SYNC_IO_PATTERNS
            if present(pattern)
        ]
