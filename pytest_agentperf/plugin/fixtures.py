"""The plugin's fixtures: thin wiring from pytest to the library classes.

Each fixture asks for ``perf_record`` (which makes the test *measured*) and
registers a collector that pours its object's data into the record when the
call phase ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from ..record import TestRecord
from ..toolkit.profiler import PerformanceProfiler
from .session import SESSION_KEY, ensure_record

if TYPE_CHECKING:
    from ..toolkit.batching import BatchProcessor
    from ..toolkit.cache import IntelligentCache
    from ..toolkit.load import LoadTester
    from ..toolkit.monitor import AsyncPerformanceMonitor
    from ..toolkit.pool import ConnectionPool

__all__ = [
    "agent_cache", "async_monitor", "batch_processor", "connection_pool", "load_tester",
    "perf_record", "profiler",
]


@pytest.fixture
def perf_record(request: pytest.FixtureRequest) -> TestRecord:
    """The current test's :class:`~pytest_agentperf.TestRecord`.

    Record what the plugin cannot see by itself: ``perf_record.add_tokens(
    prompt=..., completion=...)``, ``perf_record.add_latency(seconds)``,
    ``perf_record.sections["mine"] = {...}``.
    """
    return ensure_record(request.node)


def _repeating_driver(node: pytest.Item) -> str | None:
    """The plugin whose loop calls the test body many times (pytest-benchmark, hypothesis)."""
    if "benchmark" in getattr(node, "fixturenames", ()):
        return "pytest-benchmark"
    func = getattr(node, "obj", None)
    if getattr(func, "is_hypothesis_test", False):
        return "hypothesis"
    return None


def _collect_profiler(
    prof: PerformanceProfiler, record: TestRecord, driver: str | None = None
) -> None:
    if prof.operation_count == 0:
        return
    record.add_latency_samples(prof.all_durations(), "profiler")
    total, prompt, completion = prof.token_totals()
    record.add_tokens(total, prompt=prompt, completion=completion,
                      requests=prof.operation_count)
    for key, data in prof.operations().items():
        record.add_operation(key, data)
    from ..toolkit.checker import OptimizationChecker

    if driver is not None:
        # the body runs in a loop: every profiled call repeats in a tight cluster by
        # construction, which is the harness, not an N+1 in the code under test
        record.sections["n_plus_one_check"] = {
            "checked": False,
            "reason": f"the test body is repeated by {driver}; N+1 is not judged",
        }
        return
    for finding in OptimizationChecker.find_n_plus_one(
        prof.timeline(), call_counts=prof.call_counts()
    ):
        record.add_finding(finding.kind, finding.message, **finding.details)


@pytest.fixture
def profiler(
    perf_record: TestRecord, pytestconfig: pytest.Config, request: pytest.FixtureRequest
) -> PerformanceProfiler:
    """A fresh :class:`~pytest_agentperf.PerformanceProfiler` for this test.

    Every ``profiler.profile_operation(...)`` duration is a latency sample of
    the test, and ``tokens_used`` set inside one counts toward its tokens.
    """
    settings = pytestconfig.stash[SESSION_KEY]
    prof = PerformanceProfiler(cprofile=settings.cprofile)
    driver = _repeating_driver(request.node)
    perf_record.add_collector(lambda record: _collect_profiler(prof, record, driver))
    return prof


def _section(record: TestRecord, name: str, source: Any) -> None:
    """Register ``source.report_section()`` as the record's ``name`` section."""
    record.add_collector(lambda r: r.sections.__setitem__(name, source.report_section()))


@pytest.fixture
def agent_cache(perf_record: TestRecord) -> Iterator[IntelligentCache]:
    """An :class:`~pytest_agentperf.IntelligentCache` (guide defaults); stats in ``cache``.

    Named ``agent_cache`` so that pytest's own ``cache`` fixture keeps working.
    """
    from ..toolkit.cache import IntelligentCache

    cache = IntelligentCache()
    _section(perf_record, "cache", cache)
    yield cache
    cache.close()


async def _batch_processor(perf_record: TestRecord) -> AsyncIterator[BatchProcessor[Any, Any]]:
    from ..toolkit.batching import BatchProcessor

    processor: BatchProcessor[Any, Any] = BatchProcessor()
    _section(perf_record, "batch", processor)
    yield processor
    await processor.aclose()


async def _connection_pool(perf_record: TestRecord) -> AsyncIterator[ConnectionPool]:
    from ..toolkit.pool import ConnectionPool

    pool = ConnectionPool()
    await pool.initialize()
    _section(perf_record, "pool", pool)
    yield pool
    await pool.close()


#: the async fixtures' bodies; :mod:`.async_fixtures` registers them for the async plugin
#: that drives the test (pytest-asyncio or anyio)
ASYNC_FIXTURES = {"batch_processor": _batch_processor, "connection_pool": _connection_pool}


@pytest.fixture
def batch_processor(request: pytest.FixtureRequest) -> BatchProcessor[Any, Any]:
    """A ready :class:`~pytest_agentperf.BatchProcessor` (guide defaults), closed at teardown.

    Made and closed in the test's event loop, by pytest-asyncio or anyio's plugin
    (whichever runs the test). Its statistics go to the ``batch`` report section.
    Other settings: construct ``BatchProcessor(batch_size=..., max_wait_time=...)`` in
    the test, or override this fixture.
    """
    from .async_fixtures import resolve

    value: BatchProcessor[Any, Any] = resolve(request, "batch_processor")
    return value


@pytest.fixture
def connection_pool(request: pytest.FixtureRequest) -> ConnectionPool:
    """An initialised :class:`~pytest_agentperf.ConnectionPool` (guide defaults), closed at
    teardown in the test's event loop (pytest-asyncio or anyio); real TCP created/reused
    counts in the ``pool`` report section."""
    from .async_fixtures import resolve

    value: ConnectionPool = resolve(request, "connection_pool")
    return value


def _collect_load(tester: LoadTester, record: TestRecord) -> None:
    section = tester.report_section()
    runs = [r for r in section.get("runs", []) if r]
    if not runs:
        return
    total = sum(r["total_requests"] for r in runs)
    failed = sum(r["failed_requests"] for r in runs)
    unfinished = sum(r.get("unfinished", 0) for r in runs)
    finished = [r["throughput_rps"] for r in runs
                if not r.get("interrupted") and r["total_requests"]]
    section["total_requests"] = total
    # unfinished requests are failures; with no completed request there is no
    # figure at all, and an error_rate/throughput budget fails as unverifiable
    section["error_rate"] = (failed + unfinished) / (total + unfinished) if total else None
    section["throughput_rps"] = min(finished) if finished else None
    record.sections["load"] = section
    record.add_latency_samples(tester.latency_samples(), "load")


class _LiveProgress:
    """Prints load-test progress on the terminal, for runs longer than ~2 s.

    Quiet under ``-q`` and in xdist workers (no terminal); suspends output capture
    only for the line it writes.
    """

    MIN_ELAPSED = 2.0

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def __call__(self, snap: dict[str, Any]) -> None:
        if snap.get("elapsed_s", 0.0) < self.MIN_ELAPSED or self.config.option.verbose < 0:
            return
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        if tr is None or capman is None:
            return
        p95 = snap.get("p95_s")
        text = (f"load {snap.get('model', '')}: {snap.get('elapsed_s', 0.0):.0f}s "
                f"{snap.get('requests', 0)} requests, {snap.get('rps', 0.0):.0f} req/s, "
                f"{snap.get('errors', 0)} errors, p95 "
                f"{'-' if p95 is None else f'{p95 * 1000:.1f}ms'}")
        if snap.get("final"):
            text += " (done)"
        with capman.global_and_fixture_disabled():
            tr.write_line(text)


@pytest.fixture
def load_tester(perf_record: TestRecord, pytestconfig: pytest.Config) -> LoadTester:
    """A :class:`~pytest_agentperf.LoadTester`; its requests are the test's latency samples.

    ``run_load_test`` is the guide's closed model, ``run_rate_test`` the open model.
    Budget keys ``error_rate`` and ``throughput`` apply to its runs; the ``load`` report
    section holds every run with its per-second timeline.
    """
    from ..toolkit.load import LoadTester

    tester = LoadTester(progress=_LiveProgress(pytestconfig), progress_interval=1.0)
    perf_record.add_collector(lambda record: _collect_load(tester, record))
    return tester


@pytest.fixture
def async_monitor(perf_record: TestRecord) -> AsyncPerformanceMonitor:
    """An :class:`~pytest_agentperf.AsyncPerformanceMonitor`; its concurrency report goes to
    the ``async_monitor`` report section."""
    from ..toolkit.monitor import AsyncPerformanceMonitor

    monitor = AsyncPerformanceMonitor()
    _section(perf_record, "async_monitor", monitor)
    return monitor
