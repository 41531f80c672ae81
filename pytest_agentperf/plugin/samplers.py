"""Samples other plugins already produce, and their attempts.

* pytest-benchmark (and pytest-codspeed's walltime ``benchmark``): a measured
  test using the ``benchmark`` fixture is judged on the benchmark's rounds
  (per-iteration time of each round, from the fixture's ``stats`` after the
  call), not on the whole calibrated call.
* hypothesis: each example of a ``@given`` test is a sample (its
  ``execute:test`` time from hypothesis' observability callbacks); where that
  API is missing the ``hypothesis`` section says the sample is the whole run.
* pytest-rerunfailures: the entry keeps the last attempt's figures and says how
  many attempts ran and which budgets the earlier ones broke (``attempts``).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import pytest

from .session import RECORD_KEY, SESSION_KEY

__all__ = ["SamplersPlugin"]

#: at most this many examples of one hypothesis test are kept as samples
MAX_EXAMPLES = 100_000


def _benchmark_rounds(fixture: Any) -> tuple[list[float], int] | None:
    """The per-iteration time of each round, and the iterations per round."""
    meta = getattr(fixture, "stats", None)
    stats = getattr(meta, "stats", None)
    data = getattr(stats, "data", None)
    if not isinstance(data, list) or not data:
        return None
    values = [float(v) for v in data
              if isinstance(v, (int, float)) and math.isfinite(v) and v >= 0]
    iterations = getattr(meta, "iterations", 1)
    return values, int(iterations) if isinstance(iterations, int) else 1


def _hypothesis_observability() -> Any:
    try:
        from hypothesis.internal import observability
    except ImportError:
        return None
    if not hasattr(observability, "add_observability_callback"):
        return None
    return observability


class _Examples:
    """Collects the duration of each hypothesis example of one test."""

    def __init__(self) -> None:
        self.durations: list[float] = []

    def __call__(self, observation: Any) -> None:
        if getattr(observation, "type", None) != "test_case":
            return
        timing = getattr(observation, "timing", None) or {}
        value = timing.get("execute:test")
        if not isinstance(value, (int, float)) or len(self.durations) >= MAX_EXAMPLES:
            return
        if math.isfinite(value) and value >= 0:
            self.durations.append(float(value))


class SamplersPlugin:
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        __tracebackhide__ = True  # a test's failure is not the plugin's frame
        if RECORD_KEY not in item.stash or not _is_hypothesis_test(item):
            return (yield)
        observability = _hypothesis_observability()
        examples = _Examples()
        if observability is not None:
            observability.add_observability_callback(examples)
        try:
            return (yield)
        finally:
            if observability is not None:
                observability.remove_observability_callback(examples)
            item.stash[_EXAMPLES_KEY] = examples

    def pytest_agentperf_test_record(self, item: pytest.Item, record: Any) -> None:
        examples = item.stash.get(_EXAMPLES_KEY, None)
        if examples is not None:
            del item.stash[_EXAMPLES_KEY]
            _add_examples(record, examples)
        funcargs = getattr(item, "funcargs", None) or {}
        fixture = funcargs.get("benchmark")
        if fixture is None:
            return
        found = _benchmark_rounds(fixture)
        if found is None:
            record.sections["benchmark"] = {
                "rounds": 0, "note": "the benchmark recorded no rounds (disabled?): the "
                "latency sample is the whole call"}
            return
        rounds, iterations = found
        section: dict[str, Any] = {"rounds": len(rounds), "iterations": iterations}
        if len(record.latency):
            section["note"] = "the test records its own samples; the rounds are not added"
        else:
            for value in rounds:
                record.add_latency(value, "benchmark")
        record.sections["benchmark"] = section

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = getattr(report, "agentperf", None)
        attempt = getattr(report, "rerun", None)
        if entry is None or report.when != "teardown" or not attempt:
            return
        session = self._session(report)
        previous = session.entries.get(report.nodeid) if session is not None else None
        if not isinstance(previous, dict):
            return
        earlier = list((previous.get("attempts") or {}).get("earlier") or [])
        earlier.append({
            "attempt": len(earlier) + 1,
            "outcome": previous.get("outcome"),
            "violations": [v.get("metric") for v in previous.get("violations") or []
                           if isinstance(v, dict)],
        })
        entry["attempts"] = {"count": int(attempt) + 1, "earlier": earlier}

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def _session(self, report: pytest.TestReport) -> Any:
        session = self.config.stash.get(SESSION_KEY, None)
        if session is None or session.is_worker:
            return None
        return session


def _add_examples(record: Any, examples: _Examples) -> None:
    section: dict[str, Any] = {"examples": len(examples.durations)}
    if examples.durations and not len(record.latency):
        for value in examples.durations:
            record.add_latency(value, "hypothesis")
        section["sample"] = "each example"
    elif examples.durations:
        section["sample"] = "the test's own samples"
    else:
        section["sample"] = "whole run"
        section["note"] = ("hypothesis reported no per-example durations: the test's one "
                           "latency sample is the whole @given run")
    record.sections["hypothesis"] = section


_EXAMPLES_KEY = pytest.StashKey[_Examples]()


def _is_hypothesis_test(item: pytest.Item) -> bool:
    function = getattr(item, "obj", None)
    return bool(getattr(function, "is_hypothesis_test", False))
