"""Shared fixtures for the plugin's own tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pg_cluster import Cluster

# pytester's in-process sessions remove from sys.modules every module first imported during
# them.  The history baseline imports numpy (for the change-point search) inside such
# sessions, and numpy cannot be imported a second time into a process, so a later test on
# that worker importing numpy or scipy failed with "cannot load module more than once per
# process" -- depending on which tests an xdist worker ran first.  Imported here, it stays.
with contextlib.suppress(ImportError):  # optional: the change-point search runs without it
    import numpy  # noqa: F401

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
{extra}
"""


# Third-party pytest plugins that the dev/frameworks extras install only as passengers
# (langsmith comes with langchain; hypothesis and anyio are used by in-process inner sessions
# only).  A fresh interpreter pays for importing them: ~4 of ~5 CPU seconds of an empty
# session, once per subprocess session and once per xdist worker it starts.  The subprocess
# sessions started through pytester do not load them; a test that needs one passes
# ``-p NAME`` (a later ``-p`` unblocks it).  In-process sessions keep every plugin, and
# test_compat.py runs the plugin beside the ones users combine it with.
UNRELATED_PLUGINS_OFF = ("-p", "no:langsmith_plugin", "-p", "no:hypothesispytest",
                         "-p", "no:anyio")


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


@pytest.fixture(autouse=True)
def _inner_sessions_end_cleanly(request: pytest.FixtureRequest) -> Iterator[None]:
    """An in-process session whose unconfigure raised fails the test that ran it.

    ``runpytest`` swallows an exception escaping ``pytest.main`` (it prints it and sets
    ret 3).  When that exception comes from an unconfigure hook (an unraisable warning
    turned error by ``filterwarnings``), the inner session's later unconfigure hooks never
    run: its log-file handler on ``/dev/null`` stays open and its ResourceWarning later
    fails whichever unrelated test is running when it is collected.  Name the culprit.
    """
    if "pytester" not in request.fixturenames:
        yield
        return
    # The sessions pytester starts are not xdist workers, even when this test runs in one:
    # pytest-benchmark reads PYTEST_XDIST_WORKER and, on gw0, warns at unconfigure.
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    pytester: pytest.Pytester = request.getfixturevalue("pytester")
    inline_run = pytester.inline_run
    raised: list[BaseException] = []

    def guarded(*args: object, **kwargs: object) -> object:
        try:
            return inline_run(*args, **kwargs)  # type: ignore[arg-type]
        except Exception as exc:
            raised.append(exc)
            raise

    pytester.inline_run = guarded  # type: ignore[method-assign]
    run_subprocess = pytester.runpytest_subprocess

    def lean_subprocess(*args: object, **kwargs: object) -> pytest.RunResult:
        return run_subprocess(*UNRELATED_PLUGINS_OFF, *args, **kwargs)  # type: ignore[arg-type]

    pytester.runpytest_subprocess = lean_subprocess  # type: ignore[method-assign]
    yield
    if raised:
        pytest.fail(
            f"an in-process pytest session did not end cleanly: {raised[0]!r}", pytrace=False
        )
