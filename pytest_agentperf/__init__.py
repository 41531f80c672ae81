"""pytest-agentperf: performance budgets for LLM multi-agent test suites.

The library layer (profiler, optimisation classes, statistics, measurement,
report) works without pytest running; the pytest plugin lives in
:mod:`pytest_agentperf.plugin`.  Classes whose modules import heavy
dependencies (aiohttp, pympler, …) are loaded on first access, so importing the
plugin stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .budgets import BUDGET_KEYS, BudgetError
from .record import TestRecord
from .report import SCHEMA_VERSION, ReportError, load_report, load_schema
from .stats import SampleSet, percentile, summarize
from .toolkit.profiler import PerformanceMetrics, PerformanceProfiler

if TYPE_CHECKING:
    from .findings import Finding
    from .histogram import LatencyHistogram
    from .llm.limits import BudgetExceeded
    from .measurement.leaks import LeakChecker
    from .measurement.loopblock import LoopBlockDetector
    from .toolkit.batching import BatchProcessor, BatchResultError
    from .toolkit.cache import IntelligentCache
    from .toolkit.checker import OptimizationChecker
    from .toolkit.load import LoadTester
    from .toolkit.memory_optimizer import MemoryOptimizer
    from .toolkit.middleware import ASGIMiddleware, RequestRecorder, aiohttp_middleware
    from .toolkit.monitor import AsyncPerformanceMonitor
    from .toolkit.pool import ConnectionPool, PoolClosedError, PooledSession, PoolTimeoutError

__version__ = "0.1.0"

#: public name -> module that defines it, imported on first access
_LAZY: dict[str, str] = {
    "IntelligentCache": "toolkit.cache",
    "BatchProcessor": "toolkit.batching",
    "BatchResultError": "toolkit.batching",
    "ConnectionPool": "toolkit.pool",
    "PooledSession": "toolkit.pool",
    "PoolTimeoutError": "toolkit.pool",
    "PoolClosedError": "toolkit.pool",
    "LoadTester": "toolkit.load",
    "LatencyHistogram": "histogram",
    "RequestRecorder": "toolkit.middleware",
    "ASGIMiddleware": "toolkit.middleware",
    "aiohttp_middleware": "toolkit.middleware",
    "AsyncPerformanceMonitor": "toolkit.monitor",
    "MemoryOptimizer": "toolkit.memory_optimizer",
    "OptimizationChecker": "toolkit.checker",
    "LoopBlockDetector": "measurement.loopblock",
    "LeakChecker": "measurement.leaks",
    "Finding": "findings",
    "BudgetExceeded": "llm.limits",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_agentperf' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "BUDGET_KEYS",
    "SCHEMA_VERSION",
    "ASGIMiddleware",
    "AsyncPerformanceMonitor",
    "BatchProcessor",
    "BatchResultError",
    "BudgetError",
    "BudgetExceeded",
    "ConnectionPool",
    "Finding",
    "IntelligentCache",
    "LatencyHistogram",
    "LeakChecker",
    "LoadTester",
    "LoopBlockDetector",
    "MemoryOptimizer",
    "OptimizationChecker",
    "PerformanceMetrics",
    "PerformanceProfiler",
    "PoolClosedError",
    "PoolTimeoutError",
    "PooledSession",
    "ReportError",
    "RequestRecorder",
    "SampleSet",
    "TestRecord",
    "__version__",
    "aiohttp_middleware",
    "load_report",
    "load_schema",
    "percentile",
    "summarize",
]
