"""pytest-agentperf: performance budgets for LLM multi-agent test suites.

The library layer (profiler, statistics, measurement, report) works without
pytest running; the pytest plugin lives in :mod:`pytest_agentperf.plugin`.
"""

from .budgets import BUDGET_KEYS, BudgetError
from .profiler import PerformanceMetrics, PerformanceProfiler
from .record import TestRecord
from .report import SCHEMA_VERSION, ReportError, load_report, load_schema
from .stats import SampleSet, percentile, summarize

__version__ = "0.1.0"

__all__ = [
    "BUDGET_KEYS",
    "SCHEMA_VERSION",
    "BudgetError",
    "PerformanceMetrics",
    "PerformanceProfiler",
    "ReportError",
    "SampleSet",
    "TestRecord",
    "__version__",
    "load_report",
    "load_schema",
    "percentile",
    "summarize",
]
