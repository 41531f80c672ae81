"""Change points in a store's history, and the history baseline that uses them.

For each test and headline metric (p50, p95, mean, peak memory, tokens) the
run series of one machine group goes through
:func:`pytest_agentperf.changepoints.e_divisive`; p95 is searched on the runs'
stored samples instead (:func:`~pytest_agentperf.changepoints.quantile_changes`,
which permutes whole runs), because a per-run p95 of a few dozen samples is
mostly the noise of its largest one or two.  A change point is reported
with the run and commit where the new level began, the level before and
after, the relative change and its permutation p-value.

:class:`HistoryBaseline` gives each test the runs *since its last change
point* (at most :data:`~.common.DEFAULT_BASELINE_RUNS` of them), so an
accepted shift becomes the new normal instead of failing forever, and it
finds *drifts*: a metric whose level rose step by step beyond the tolerance
over the window, which no single comparison with the recent runs shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..changepoints import ChangePoint, e_divisive, quantile_changes
from .common import DEFAULT_BASELINE_RUNS, HistoryStore, TrendPoint, finite_samples

__all__ = ["DEFAULT_WINDOW", "METRICS", "HistoryBaseline", "TestChange", "latest_group",
           "metric_changes", "recent_changes", "test_changes"]

#: The metrics searched for change points: (name in TrendPoint, unit, label).
METRICS: tuple[tuple[str, str, str], ...] = (
    ("p50", "s", "latency.p50"), ("p95", "s", "latency.p95"), ("mean", "s", "latency.mean"),
    ("peak_mb", "MiB", "memory.peak_mb"), ("tokens", "tokens", "tokens.total"))
#: Fewest samples every run needs for p95 to be searched on the samples
#: (:func:`~pytest_agentperf.changepoints.quantile_changes`); below that a run's p95 is
#: nearly its largest sample, and the per-run figures are searched instead.
MIN_RUN_SAMPLES = 10
#: How many recent runs of a test are searched.
DEFAULT_WINDOW = 40
#: How many recent runs a history baseline searches for the test's last change point.
BASELINE_WINDOW = 30


@dataclass(frozen=True)
class TestChange:
    """A change point of one test's metric, located in the history."""

    nodeid: str
    metric: str  # e.g. "latency.p95"
    unit: str
    run_id: int  # the first run at the new level
    created: str
    git_commit: str | None
    before: float
    after: float
    change: float | None  # after / before - 1
    p_value: float
    runs_ago: int  # how many runs of this test came after run_id

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def latest_group(store: HistoryStore, nodeid: str | None = None) -> str | None:
    """The machine group of the newest run (that has ``nodeid``)."""
    if nodeid is None:
        rows = store._query(store._sql("SELECT machine_group FROM {runs} ORDER BY id DESC "
                                       "LIMIT 1"))
    else:
        rows = store._query(store._sql(
            "SELECT r.machine_group FROM {runs} r JOIN {tests} t ON t.run_id = r.id "
            "WHERE t.nodeid = ? ORDER BY r.id DESC LIMIT 1"), (nodeid,))
    return str(rows[0][0]) if rows and rows[0][0] is not None else None


def metric_changes(points: Sequence[TrendPoint], attr: str,
                   samples: Sequence[Sequence[float] | None] | None = None
                   ) -> list[tuple[int, ChangePoint]]:
    """Change points of one metric as (position in ``points``, change point).

    ``samples[i]`` are the latency samples of ``points[i]`` (None: not known).  When
    every run with a p95 has at least :data:`MIN_RUN_SAMPLES` samples, p95 is searched
    on them with :func:`~pytest_agentperf.changepoints.quantile_changes`; otherwise, and
    for every other metric, the per-run figures go through
    :func:`~pytest_agentperf.changepoints.e_divisive`.
    """
    where = [i for i, p in enumerate(points) if isinstance(getattr(p, attr), (int, float))]
    if (attr == "p95" and samples is not None and where
            and all(len(samples[i] or ()) >= MIN_RUN_SAMPLES for i in where)):
        return [(where[cp.index], cp)
                for cp in quantile_changes([samples[i] or () for i in where], 95.0)]
    values = [float(getattr(points[i], attr)) for i in where]
    return [(where[cp.index], cp) for cp in e_divisive(values)]


def _samples_of(store: HistoryStore, nodeid: str, points: Sequence[TrendPoint]
                ) -> list[list[float] | None]:
    found = store.samples(nodeid, [p.run_id for p in points if p.p95 is not None])
    return [found.get(p.run_id) for p in points]


def test_changes(store: HistoryStore, nodeid: str, group: str | None = None,
                 window: int = DEFAULT_WINDOW) -> tuple[list[TrendPoint], list[TestChange]]:
    """The test's complete runs in ``group`` (oldest first) and their change points."""
    points = store.trend(nodeid, limit=window, group=group, complete_only=True)
    samples = _samples_of(store, nodeid, points)
    changes = []
    for attr, unit, label in METRICS:
        for pos, cp in metric_changes(points, attr, samples):
            p = points[pos]
            changes.append(TestChange(nodeid, label, unit, p.run_id, p.created, p.git_commit,
                                      cp.before, cp.after, cp.change, cp.p_value,
                                      len(points) - 1 - pos))
    changes.sort(key=lambda c: (c.run_id, c.metric))
    return points, changes


def recent_changes(store: HistoryStore, group: str | None = None,
                   window: int = DEFAULT_WINDOW, recent: int = 10) -> list[TestChange]:
    """Change points of every test that began within its last ``recent`` runs, worst first
    (largest rise first; improvements last)."""
    out = []
    for nodeid in store.nodeids():
        g = group or latest_group(store, nodeid)
        out += [c for c in test_changes(store, nodeid, g, window)[1] if c.runs_ago < recent]
    return sorted(out, key=lambda c: -(c.change if c.change is not None else 0.0))


class HistoryBaseline:
    """Per-test baselines from a store: the runs since the test's last change point.

    ``tolerances`` maps a metric label's family (``latency``, ``memory``,
    ``tokens``) to the relative rise that counts as a drift.
    """

    def __init__(self, store: HistoryStore, group: str, *, runs: int = DEFAULT_BASELINE_RUNS,
                 window: int = BASELINE_WINDOW,
                 tolerances: Mapping[str, float] | None = None) -> None:
        self.store = store
        self.group = group
        self.runs = runs
        self.window = window
        self.tolerances = dict(tolerances or {"latency": 0.10, "memory": 0.10,
                                              "tokens": 0.05})

    def entry(self, nodeid: str, current: Mapping[str, Any] | None = None
              ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """``(pooled baseline entry or None, info)`` for one test.

        ``info`` has the run ids used, the change point they start after (if
        any), a note when fewer than ``runs`` comparable runs exist, and the
        drifts seen when ``current`` (this run's entry) is appended to the series.
        Change points are searched once, over the history and ``current``.
        """
        from ..merge import merge_entries
        from ..reportdata import finite_at

        points = self.store.trend(nodeid, limit=self.window, group=self.group,
                                  complete_only=True)
        info: dict[str, Any] = {"runs": [], "since_change": None, "drifts": []}
        if not points:
            return None, info
        series = list(points)
        samples = _samples_of(self.store, nodeid, points)
        if current is not None:
            series.append(TrendPoint(
                0, "now", None, current.get("outcome"), finite_at(current, "latency", "p50"),
                finite_at(current, "latency", "p95"), finite_at(current, "latency", "mean"),
                _int(finite_at(current, "latency", "count")),
                finite_at(current, "memory", "peak_mb"),
                _int(finite_at(current, "tokens", "total"))))
            latency = current.get("latency")
            samples.append(finite_samples(latency.get("samples")) or None
                           if isinstance(latency, Mapping) else None)
        found = {label: (unit, metric_changes(series, attr, samples))
                 for attr, unit, label in METRICS}
        starts = [(pos, label, cp) for label, (_, cps) in found.items() for pos, cp in cps
                  if pos < len(points)]
        start = 0
        if starts:
            pos, label, cp = max(starts, key=lambda s: (s[0], -s[2].p_value))
            start = pos
            p = points[pos]
            info["since_change"] = TestChange(
                nodeid, label, found[label][0], p.run_id, p.created, p.git_commit, cp.before,
                cp.after, cp.change, cp.p_value, len(points) - 1 - pos).as_dict()
        chosen = [p.run_id for p in points[start:]][-self.runs:]
        info["runs"] = chosen
        if len(chosen) < self.runs:
            info["note"] = (f"{len(chosen)} comparable run{'s' if len(chosen) != 1 else ''}"
                            + (" since the last change point" if starts else "")
                            + f" ({self.runs} wanted)")
        entries = [e for _, _, e in self.store.entries(chosen, nodeid)]
        if current is not None:
            info["drifts"] = self._drifts(nodeid, series, found)
        return (merge_entries(entries) if entries else None), info

    def _drifts(self, nodeid: str, series: list[TrendPoint],
                found: Mapping[str, tuple[str, list[tuple[int, ChangePoint]]]]
                ) -> list[dict[str, Any]]:
        """Metrics whose level rose beyond the tolerance through the latest upward change
        points of ``series`` (the history and this run)."""
        out = []
        for label, (unit, cps) in found.items():
            chain: list[tuple[int, ChangePoint]] = []
            for pos, cp in reversed(cps):  # the latest chain of upward steps
                if cp.after <= cp.before:
                    break
                chain.insert(0, (pos, cp))
            if not chain:
                continue
            first_pos, first = chain[0]
            before, after = first.before, chain[-1][1].after
            tolerance = self.tolerances.get(label.split(".")[0], 0.10)
            if before <= 0 or after / before - 1 <= tolerance:
                continue
            start = series[first_pos]
            out.append({"nodeid": nodeid, "metric": label, "unit": unit, "before": before,
                        "after": after, "change": after / before - 1,
                        "since_run": start.run_id or None, "since_commit": start.git_commit,
                        "runs": len(series) - first_pos, "change_points": len(chain),
                        "p_value": max(cp.p_value for _, cp in chain)})
        return out


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)
