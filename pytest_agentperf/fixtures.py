"""The plugin's fixtures: thin wiring from pytest to the library classes.

Each fixture asks for ``perf_record`` (which makes the test *measured*) and
registers a collector that pours its object's data into the record when the
call phase ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from .profiler import PerformanceProfiler
from .record import TestRecord
from .session import SESSION_KEY, ensure_record

if TYPE_CHECKING:
    from .batching import BatchProcessor
    from .cache import IntelligentCache
    from .pool import ConnectionPool

__all__ = ["agent_cache", "batch_processor", "connection_pool", "perf_record", "profiler"]


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


def _section(record: TestRecord, name: str, source: Any) -> None:
    """Register ``source.report_section()`` as the record's ``name`` section."""
    record.add_collector(lambda r: r.sections.__setitem__(name, source.report_section()))


@pytest.fixture
def agent_cache(perf_record: TestRecord) -> Iterator[IntelligentCache]:
    """An :class:`~pytest_agentperf.IntelligentCache` (guide defaults); stats in ``cache``.

    Named ``agent_cache`` so that pytest's own ``cache`` fixture keeps working.
    """
    from .cache import IntelligentCache

    cache = IntelligentCache()
    _section(perf_record, "cache", cache)
    yield cache
    cache.close()


@pytest_asyncio.fixture
async def batch_processor(perf_record: TestRecord) -> AsyncIterator[BatchProcessor[Any, Any]]:
    """A ready :class:`~pytest_agentperf.BatchProcessor` (guide defaults), closed at teardown.

    Its statistics go to the ``batch`` report section.  Other settings: construct
    ``BatchProcessor(batch_size=..., max_wait_time=...)`` in the test, or override
    this fixture.
    """
    from .batching import BatchProcessor

    processor: BatchProcessor[Any, Any] = BatchProcessor()
    _section(perf_record, "batch", processor)
    yield processor
    await processor.aclose()


@pytest_asyncio.fixture
async def connection_pool(perf_record: TestRecord) -> AsyncIterator[ConnectionPool]:
    """An initialised :class:`~pytest_agentperf.ConnectionPool` (guide defaults), closed at
    teardown; real TCP created/reused counts in the ``pool`` report section."""
    from .pool import ConnectionPool

    pool = ConnectionPool()
    await pool.initialize()
    _section(perf_record, "pool", pool)
    yield pool
    await pool.close()
