"""The plugin's fixtures: thin wiring from pytest to the library classes.

Each fixture asks for ``perf_record`` (which makes the test *measured*) and
registers a collector that pours its object's data into the record when the
call phase ends.
"""

from __future__ import annotations

import pytest

from .profiler import PerformanceProfiler
from .record import TestRecord
from .session import SESSION_KEY, ensure_record

__all__ = ["perf_record", "profiler"]


@pytest.fixture
def perf_record(request: pytest.FixtureRequest) -> TestRecord:
    """The current test's :class:`~pytest_agentperf.TestRecord`.

    Record what the plugin cannot see by itself: ``perf_record.add_tokens(
    prompt=..., completion=...)``, ``perf_record.add_latency(seconds)``,
    ``perf_record.sections["mine"] = {...}``.
    """
    return ensure_record(request.node)


def _collect_profiler(prof: PerformanceProfiler, record: TestRecord) -> None:
    if prof.operation_count == 0:
        return
    record.add_latency_samples(prof.all_durations(), "profiler")
    total, prompt, completion = prof.token_totals()
    record.add_tokens(total, prompt=prompt, completion=completion,
                      requests=prof.operation_count)
    for key, data in prof.operations().items():
        record.add_operation(key, data)


@pytest.fixture
def profiler(perf_record: TestRecord, pytestconfig: pytest.Config) -> PerformanceProfiler:
    """A fresh :class:`~pytest_agentperf.PerformanceProfiler` for this test.

    Every ``profiler.profile_operation(...)`` duration is a latency sample of
    the test, and ``tokens_used`` set inside one counts toward its tokens.
    """
    settings = pytestconfig.stash[SESSION_KEY]
    prof = PerformanceProfiler(cprofile=settings.cprofile)
    perf_record.add_collector(lambda record: _collect_profiler(prof, record))
    return prof
