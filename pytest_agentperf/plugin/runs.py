"""Repeated runs of one test: ``@pytest.mark.perf_runs(n, warmup=0, max_time=None)``.

A repeated test goes through pytest's own run protocol once per run — setup,
call, teardown of its function-scoped fixtures — while wider-scoped fixtures
stay set up between runs (the teardown of a run that is not the last one tears
down the test's own node only).  Warm-up runs are executed and discarded.  The
runs' measurements are pooled into one report entry (:class:`RunState`); the
budget and the regression gate judge that entry once, after the last run.

Only the last run's reports are logged, so the terminal, JUnit XML, ``--lf``
and xdist see one test; a failing run stops the repetition and its reports
(naming the run) are the ones logged.  All runs of a test happen inside one
``pytest_runtest_protocol`` call, hence on one xdist worker.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from ..reportdata import number

if TYPE_CHECKING:
    from ..record import TestRecord

__all__ = ["MARKER", "RUN_KEY", "RunPlan", "RunState", "RunsPlugin", "parse_runs_option"]

MARKER = "perf_runs"
MARKER_HELP = (
    f"{MARKER}(n, warmup=0, max_time=None): run the test n times (each a full setup, call "
    "and teardown of its function-scoped fixtures) after `warmup` discarded runs, and judge "
    "its budget on the pooled samples; max_time (seconds) stops early after at least 2 "
    "measured runs"
)
#: at most this many per-run durations are listed in the report entry
MAX_LISTED_RUNS = 10_000


class RunsError(ValueError):
    """A malformed ``perf_runs`` marker or option; the message names it."""


@dataclass(frozen=True)
class RunPlan:
    runs: int
    warmup: int = 0
    max_time: float | None = None

    @property
    def total(self) -> int:
        return self.runs + self.warmup


def _whole(value: object, name: str, source: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RunsError(f"{source}: {name}={value!r} must be a whole number >= {minimum}")
    return value


def plan_from_marker(args: Sequence[object], kwargs: Mapping[str, object]) -> RunPlan:
    """Validate a ``perf_runs`` marker's arguments."""
    source = f"@pytest.mark.{MARKER}"
    kwargs = dict(kwargs)
    unknown = sorted(set(kwargs) - {"n", "warmup", "max_time"})
    if unknown:
        raise RunsError(f"{source}: unknown argument {unknown[0]}={kwargs[unknown[0]]!r}; "
                        "valid: n, warmup, max_time")
    if len(args) > 1:
        raise RunsError(f"{source}: takes one positional argument (n), got {tuple(args)!r}; "
                        "write perf_runs(30, warmup=2, max_time=10)")
    if args and "n" in kwargs:
        raise RunsError(f"{source}: n given twice ({args[0]!r} and n={kwargs['n']!r})")
    if not args and "n" not in kwargs:
        raise RunsError(f"{source}: missing the number of runs, e.g. perf_runs(30)")
    n = _whole(args[0] if args else kwargs["n"], "n", source, 1)
    warmup = _whole(kwargs.get("warmup", 0), "warmup", source, 0)
    max_time = kwargs.get("max_time")
    if max_time is not None:
        if isinstance(max_time, bool) or not isinstance(max_time, (int, float)) or not (
            math.isfinite(max_time) and max_time > 0
        ):
            raise RunsError(f"{source}: max_time={max_time!r} must be a number of seconds > 0 "
                            "(or None)")
        max_time = float(max_time)
    return RunPlan(n, warmup, max_time)


def parse_runs_option(text: str, source: str = "--perf-runs") -> int:
    """``--perf-runs`` / ini ``perf_runs``: a whole number >= 1."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise pytest.UsageError(f"{source}: {text!r} is not a whole number") from None
    if value < 1:
        raise pytest.UsageError(f"{source}: {text!r} must be >= 1")
    return value


class RunState:
    """The runs of one test so far, and their pooled report entry.

    Fed by the session at the end of each run's call phase
    (:meth:`end_call`); decides which run is the last one.
    """

    def __init__(self, plan: RunPlan, clock: Callable[[], float] = time.perf_counter) -> None:
        self.plan = plan
        self.clock = clock
        self.started = clock()
        self.index = -1
        #: this run is the last one: its teardown goes as far as the next test needs
        self.final = False
        self.stopped: str | None = None
        self.entries: list[dict[str, Any]] = []
        self.durations: list[float] = []
        self._latency: Any = None  # a TestRecord pooling the latency samples
        self.failed_run: int | None = None
        #: the test's (budget, scoped budgets), resolved once in its first run
        self.budget: tuple[dict[str, float] | None, dict[str, dict[str, float]]] | None = None

    def begin(self, index: int) -> None:
        self.index = index
        self.final = index >= self.plan.total - 1

    @property
    def warming_up(self) -> bool:
        return self.index < self.plan.warmup

    def describe_run(self, index: int | None = None) -> str:
        i = self.index if index is None else index
        if i < self.plan.warmup:
            return f"warm-up run {i + 1} of {self.plan.warmup}"
        return f"run {i - self.plan.warmup + 1} of {self.plan.runs}"

    def end_setup(self, rep: pytest.TestReport) -> None:
        if not rep.passed:
            self.final = True

    def end_call(self, record: TestRecord, rep: pytest.TestReport) -> dict[str, Any] | None:
        """Take one run's measurements (``record``: its ``TestRecord``); the pooled entry
        when this run is the last one."""
        if not rep.passed:
            self.final = True
            if rep.failed:
                self.failed_run = self.index
        if not self.warming_up:
            # the run's latency goes into the pool (_add), not into its own entry
            self._add(record, record.to_dict(latency=False))
            max_time = self.plan.max_time
            if (not self.final and max_time is not None and len(self.entries) >= 2
                    and self.clock() - self.started >= max_time):
                self.final = True
                self.stopped = f"max_time {max_time:g} s reached"
        if not self.final:
            return None
        return self.pooled(record)

    def _add(self, record: TestRecord, entry: dict[str, Any]) -> None:
        from ..record import TestRecord

        if self._latency is None:
            self._latency = TestRecord(record.nodeid)
        pool = self._latency
        if len(record.latency):
            for source in record.latency_sources or ["custom"]:
                if source not in pool.latency_sources:
                    pool.latency_sources.append(source)
            pool.latency.merge(record.latency)
        elif record.latency_unmeasured is not None:  # its LLM calls were replayed
            pool.latency_unmeasured = record.latency_unmeasured
        elif record.call_duration_s is not None:
            pool.add_latency(record.call_duration_s, "call")
        self.entries.append(entry)
        if record.call_duration_s is not None and len(self.durations) < MAX_LISTED_RUNS:
            self.durations.append(record.call_duration_s)

    def pooled(self, last: TestRecord) -> dict[str, Any]:
        """One entry for all measured runs (``last``: the last run's ``TestRecord``)."""
        from ..merge import merge_entries

        if not self.entries:  # stopped during warm-up: that run's own entry
            out = last.to_dict()
        else:
            out = merge_entries(self.entries, sessions=False)
            out.pop("merged", None)
            for key, value in self.entries[-1].items():  # sections: the last run's
                if key not in _POOLED:
                    out[key] = value
            for name, pick in _WORST.items():
                worst = _worst_section(self.entries, name, pick)
                if worst is not None:
                    out[name] = worst
            counts: dict[str, int] = {}
            for e in self.entries:
                for kind, n in (e.get("findings_count") or {}).items():
                    counts[kind] = max(counts.get(kind, 0), int(n))
            out["findings_count"] = counts
            out["findings"] = _distinct_findings(self.entries)
            out["duration_s"] = math.fsum(self.durations)
            cpu = [e.get("cpu_time_s") for e in self.entries]
            out["cpu_time_s"] = math.fsum(c for c in cpu if isinstance(c, (int, float)))
            if self._latency is not None:
                latency = self._latency.latency_summary()
                latency["exact"] = self._latency.latency.exact
                out["latency"] = latency
        out["runs"] = self.section()
        return out

    def section(self) -> dict[str, Any]:
        tokens = [int((e.get("tokens") or {}).get("total") or 0) for e in self.entries]
        calls = [int((e.get("llm") or {}).get("calls") or 0) for e in self.entries]
        n = len(self.entries)
        out: dict[str, Any] = {
            "runs": n,
            "planned": self.plan.runs,
            "warmup": self.plan.warmup,
            "max_time_s": self.plan.max_time,
            "stopped": self.stopped,
            "durations_s": list(self.durations),
            "tokens": {"mean": sum(tokens) / n if n else 0.0, "total": sum(tokens)},
            "llm_calls": {"mean": sum(calls) / n if n else 0.0, "total": sum(calls)},
        }
        if self.failed_run is not None:
            out["failed_run"] = self.describe_run(self.failed_run)
        return out


#: entry keys that merge_entries pools over the runs
_POOLED = frozenset({"latency", "outcome", "duration_s", "cpu_time_s", "memory", "tokens",
                     "operations", "violations", "findings", "nodeid", "budget"})




#: sections that hold budgeted figures: the worst run's section is kept
#: (section -> (key, "max" or "min")): an unknown value counts as the worst
_WORST: dict[str, tuple[str, str]] = {
    "load": ("error_rate", "max"),
    "loop_block": ("max_block_s", "max"),
    "leak": ("retained_mb", "max"),
    "llm": ("calls", "max"),
}


def _worst_section(entries: list[dict[str, Any]], name: str,
                   pick: tuple[str, str]) -> dict[str, Any] | None:
    key, direction = pick
    worst: dict[str, Any] | None = None
    worst_value = 0.0
    for e in entries:
        section = e.get(name)
        if not isinstance(section, dict):
            continue
        value = number(section.get(key))
        if value is None:
            return section  # unknown: never hidden behind a better run
        score = value if direction == "max" else -value
        if worst is None or score > worst_value:
            worst, worst_value = section, score
    return worst


def _distinct_findings(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each finding once, with the number of runs that produced it."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for e in entries:
        for finding in e.get("findings") or []:
            key = (str(finding.get("kind")), str(finding.get("message")))
            if key in out:
                out[key]["runs"] = out[key].get("runs", 1) + 1
            else:
                out[key] = dict(finding)
    return list(out.values())


RUN_KEY = pytest.StashKey[RunState]()
_ERROR_KEY = pytest.StashKey[str]()


class _TeardownTarget:
    """What a run's teardown tears down to, decided when the teardown starts.

    pytest tears down the set-up nodes that the *next* item does not share
    (``nextitem.listchain()``).  Between runs that is the test's own node only
    (its function-scoped fixtures); after the last run — known only once its
    call phase ended — it is the real next item's chain.
    """

    def __init__(self, item: pytest.Item, nextitem: pytest.Item | None, state: RunState):
        self.item, self.nextitem, self.state = item, nextitem, state

    def listchain(self) -> list[Any]:
        if self.state.final:
            return self.nextitem.listchain() if self.nextitem is not None else []
        return self.item.listchain()[:-1]


def _runtestprotocol() -> Callable[..., list[pytest.TestReport]]:
    # pytest has no public name for one setup/call/teardown of an item with
    # reports; this is the function pytest-rerunfailures re-runs tests with.
    from _pytest.runner import runtestprotocol

    return runtestprotocol


class RunsPlugin:
    """Runs each repeated test several times inside one ``pytest_runtest_protocol``."""

    def __init__(self, config: pytest.Config, default_runs: int) -> None:
        self.config = config
        self.default_runs = default_runs

    def plan(self, item: pytest.Item) -> RunPlan | None:
        """The item's runs (None: run it once, as pytest does)."""
        mark = item.get_closest_marker(MARKER)
        if mark is not None:
            plan = plan_from_marker(mark.args, mark.kwargs)
        elif self.default_runs > 1 and _measured(item):
            plan = RunPlan(self.default_runs)
        else:
            return None
        return plan if plan.total > 1 else None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item,
                                nextitem: pytest.Item | None) -> bool | None:
        __tracebackhide__ = True
        opt = self.config.option
        if getattr(opt, "setuponly", False) or getattr(opt, "setupplan", False):
            return None
        try:
            plan = self.plan(item)
        except RunsError as exc:
            item.stash[_ERROR_KEY] = str(exc)  # errors the test in its setup
            return None
        if plan is None:
            return None
        self._run(item, nextitem, plan)
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        error = item.stash.get(_ERROR_KEY, None)
        if error is not None:
            pytest.fail(error, pytrace=False)

    def _run(self, item: pytest.Item, nextitem: pytest.Item | None, plan: RunPlan) -> None:
        __tracebackhide__ = True
        from .session import PHASES_KEY, RECORD_KEY

        state = RunState(plan)
        item.stash[RUN_KEY] = state
        target: Any = _TeardownTarget(item, nextitem, state)
        protocol = _runtestprotocol()
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        reports: list[pytest.TestReport] = []
        broken_teardown: pytest.TestReport | None = None
        try:
            for index in range(plan.total):
                state.begin(index)
                if RECORD_KEY in item.stash:  # each run gets its own record
                    del item.stash[RECORD_KEY]
                if PHASES_KEY in item.stash:
                    del item.stash[PHASES_KEY]
                reports = protocol(item, log=False, nextitem=target)
                for rep in reports:
                    if rep.failed:
                        rep.sections.append(
                            (f"agentperf {MARKER}", f"{rep.when} failed in {state.describe_run()}"))
                if state.final:
                    break
                if reports[-1].failed and broken_teardown is None:
                    # the runs go on (the parents stay set up); the test errors at the end
                    broken_teardown = reports[-1]
        finally:
            del item.stash[RUN_KEY]
        if broken_teardown is not None and reports and not reports[-1].failed:
            broken_teardown.agentperf = getattr(reports[-1], "agentperf", None)  # type: ignore[attr-defined]
            reports[-1] = broken_teardown
        for rep in reports:
            item.ihook.pytest_runtest_logreport(report=rep)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Any:
        __tracebackhide__ = True
        rep: pytest.TestReport = yield
        state = item.stash.get(RUN_KEY, None)
        if state is not None and rep.when == "setup":
            state.end_setup(rep)
        return rep


def _measured(item: pytest.Item) -> bool:
    """Whether ``--perf-runs`` applies: a budgeted test or one using the plugin's fixtures."""
    from .session import MARKER as BUDGET_MARKER

    return item.get_closest_marker(BUDGET_MARKER) is not None or "perf_record" in getattr(
        item, "fixturenames", ())
