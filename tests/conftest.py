"""Shared fixtures for the plugin's own tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pg_cluster import Cluster

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


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL server on 127.0.0.1 for this test process (see pg_cluster.py)."""
    from pg_cluster import cluster

    with cluster() as c:
        yield c


@pytest.fixture
def pg_url(pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database's URL (no password in it: PGPASSWORD is set for the test)."""
    import secrets

    monkeypatch.setenv("PGPASSWORD", pg_cluster.password)
    return pg_cluster.create_db("t_" + secrets.token_hex(6))


@pytest.fixture(autouse=True)
def _no_github_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytester runs in-process: keep a real GitHub job summary out of them."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
