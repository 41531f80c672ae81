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
from .profiler import PerformanceMetrics, PerformanceProfiler
from .record import TestRecord
from .report import SCHEMA_VERSION, ReportError, load_report, load_schema
from .stats import SampleSet, percentile, summarize

if TYPE_CHECKING:
    from .batching import BatchProcessor, BatchResultError
    from .cache import IntelligentCache
    from .checker import OptimizationChecker
    from .findings import Finding
    from .histogram import LatencyHistogram
    from .leaks import LeakChecker
    from .load import LoadTester
    from .loopblock import LoopBlockDetector
    from .memory import MemoryOptimizer
    from .middleware import ASGIMiddleware, RequestRecorder, aiohttp_middleware
    from .monitor import AsyncPerformanceMonitor
    from .pool import ConnectionPool, PoolClosedError, PooledSession, PoolTimeoutError

__version__ = "0.1.0"

#: public name -> module that defines it, imported on first access
_LAZY: dict[str, str] = {
    "IntelligentCache": "cache",
    "BatchProcessor": "batching",
    "BatchResultError": "batching",
    "ConnectionPool": "pool",
    "PooledSession": "pool",
    "PoolTimeoutError": "pool",
    "PoolClosedError": "pool",
    "LoadTester": "load",
    "LatencyHistogram": "histogram",
    "RequestRecorder": "middleware",
    "ASGIMiddleware": "middleware",
    "aiohttp_middleware": "middleware",
    "AsyncPerformanceMonitor": "monitor",
    "MemoryOptimizer": "memory",
    "OptimizationChecker": "checker",
    "LoopBlockDetector": "loopblock",
    "LeakChecker": "leaks",
    "Finding": "findings",
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
