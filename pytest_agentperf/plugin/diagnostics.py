"""Per-test diagnostics around the call phase: event-loop blocking and leaks (plugin layer).

* Event-loop blocking is watched in measured ``async def`` tests (and in any
  test with a ``loop_block`` budget): a step that holds the loop longer than the
  threshold (the budget, else :data:`~pytest_agentperf.measurement.loopblock.DEFAULT_THRESHOLD_S`)
  becomes a ``blocking_call`` finding naming the culprit; the ``loop_block``
  section holds every block.
* Leak checking (tracemalloc, slow) runs only in tests with a ``leak_mb`` budget.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import pytest

from ..record import TestRecord

if TYPE_CHECKING:
    from ..measurement.leaks import LeakChecker
    from ..measurement.loopblock import LoopBlockDetector

__all__ = ["CallDiagnostics"]


class CallDiagnostics:
    """Started before a measured test's call, stopped after it."""

    __slots__ = ("_blocks", "_leak", "_leak_budget")

    def __init__(self, item: pytest.Item, record: TestRecord) -> None:
        budget = record.budget or {}
        self._blocks: LoopBlockDetector | None = None
        self._leak: LeakChecker | None = None
        self._leak_budget = budget.get("leak_mb")
        func = getattr(item, "obj", None)
        if "loop_block" in budget or inspect.iscoroutinefunction(func):
            from ..measurement.loopblock import DEFAULT_THRESHOLD_S, LoopBlockDetector

            threshold = min(budget.get("loop_block", DEFAULT_THRESHOLD_S), DEFAULT_THRESHOLD_S)
            self._blocks = LoopBlockDetector(threshold_s=threshold)
        if self._leak_budget is not None:
            from ..measurement.leaks import LeakChecker

            self._leak = LeakChecker(top=5, types=True)

    def start(self) -> None:
        if self._blocks is not None:
            self._blocks.start()  # watches the loops stepping in this thread
        if self._leak is not None:
            self._leak.start()

    def stop(self, record: TestRecord | None, call_failed: bool) -> None:
        if record is None:  # not measured after all: just stop watching
            if self._leak is not None:
                self._leak.stop(types_over_mb=self._leak_budget)
            if self._blocks is not None:
                self._blocks.stop()
            return
        if self._leak is not None:
            result = self._leak.stop(types_over_mb=self._leak_budget)
            if call_failed:
                # the traceback keeps the test's locals alive: not a leak verdict
                record.sections["leak"] = {"retained_mb": None,
                                           "note": "not judged: the test failed"}
            else:
                record.sections["leak"] = self._leak.report_section()
                finding = self._leak.finding(self._leak_budget or 0.0)
                if finding is not None:
                    record.add_finding(finding.kind, finding.message, **finding.details)
                    record.violation_details["leak_mb"] = result.describe()
        if self._blocks is not None:
            from ..measurement.loopblock import format_block

            self._blocks.stop()
            record.sections["loop_block"] = self._blocks.report_section()
            for finding in self._blocks.findings():
                record.add_finding(finding.kind, finding.message, **finding.details)
            worst = self._blocks.worst()
            if worst is not None:
                record.violation_details["loop_block"] = format_block(worst)
