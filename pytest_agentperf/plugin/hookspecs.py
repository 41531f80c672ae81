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
