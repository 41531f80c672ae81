"""Shared fixtures for the plugin's own tests."""

from __future__ import annotations

import pytest

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
{extra}
"""


@pytest.fixture
def pt(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester with an ini file that keeps pytest-asyncio quiet."""
    pytester.makeini(INI.format(extra=""))
    return pytester


@pytest.fixture(autouse=True)
def _no_github_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytester runs in-process: keep a real GitHub job summary out of them."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
