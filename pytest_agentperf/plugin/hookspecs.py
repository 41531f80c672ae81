"""Hook specifications other plugins implement to extend pytest-agentperf.

Registered through ``pytest_addhooks``; implement them in a ``conftest.py`` or
a plugin like any pytest hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..record import TestRecord


def pytest_agentperf_test_record(item: pytest.Item, record: TestRecord) -> None:
    """Add data to a measured test's record.

    Called in the process that ran the test (an xdist worker under ``-n``), at
    the end of its call phase, after the plugin's fixtures poured their data in
    and before the budget is checked.  Use ``record.sections["name"] = {...}``
    (JSON-serialisable) for your own report section, or ``record.add_tokens``,
    ``record.add_latency`` and ``record.add_finding`` to feed the budget.
    """


def pytest_agentperf_report(config: pytest.Config, report: dict[str, Any]) -> None:
    """See or change the final report before it is written.

    Called once, in the process that writes the report (the xdist controller
    under ``-n``), with the complete report dict; modify it in place.  Keep it
    valid against the shipped schema.
    """


def pytest_agentperf_check_entry(item: pytest.Item, entry: dict[str, Any]) -> list[str]:
    """Judge a measured test's entry beyond its budget; return failure messages.

    Called in the process that ran the test, after the budget check, with the entry the
    report will hold (``entry["violations"]`` is set).  Each implementation returns the
    messages that fail the test (``[]``: no objection) and may add its findings to
    ``entry`` in place (the regression gate adds ``entry["baseline"]``).  A test that
    passed fails with the messages; a test that failed anyway shows them as a section.
    """
    return []


@pytest.hookspec(firstresult=True)
def pytest_agentperf_trends(
    config: pytest.Config, nodeids: list[str]
) -> dict[str, list[dict[str, Any]]] | None:
    """Trend lines for the HTML report: per node id, the recent runs' figures.

    Called once in the process that writes the report, when ``--perf-html`` is set; the
    first non-``None`` answer wins (the regression gate answers from ``--perf-history``).
    """
    return None
