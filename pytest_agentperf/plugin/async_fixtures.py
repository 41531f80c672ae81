"""The async fixtures under whichever async plugin runs the test.

pytest-agentperf does not depend on an async plugin: ``batch_processor`` and
``connection_pool`` are plain fixtures that hand over to an async fixture of the
plugin driving the test — anyio's (the test requests ``anyio_backend``) or
pytest-asyncio's (installed and active). Each variant is registered only when
its plugin is active, so installing pytest-agentperf changes nothing for a suite
that uses neither.
"""

from __future__ import annotations

import types
from typing import Any

import pytest

from .fixtures import ASYNC_FIXTURES

__all__ = ["register", "resolve"]

_PREFIX = "_agentperf_"


def _name(fixture: str, flavour: str) -> str:
    return f"{_PREFIX}{fixture}_{flavour}"


def _holder(flavour: str, make: Any) -> types.ModuleType:
    """A module holding the ``flavour`` variant of every async fixture (pytest scans it)."""
    module = types.ModuleType(f"{__name__}.{flavour}")
    for name, body in ASYNC_FIXTURES.items():
        setattr(module, _name(name, flavour), make(body, name=_name(name, flavour)))
    return module


def register(config: pytest.Config) -> None:
    """Register the async variants for the async plugins that are active.

    anyio's plugin runs plain ``async def`` fixtures for tests that request
    ``anyio_backend``; pytest-asyncio (strict mode) needs ``pytest_asyncio.fixture``.
    """
    pm = config.pluginmanager
    if pm.hasplugin("anyio"):
        pm.register(_holder("anyio", pytest.fixture), "agentperf-anyio-fixtures")
    if pm.hasplugin("asyncio"):
        import pytest_asyncio

        pm.register(_holder("asyncio", pytest_asyncio.fixture), "agentperf-asyncio-fixtures")


def resolve(request: pytest.FixtureRequest, fixture: str) -> Any:
    """The value of ``fixture``'s async variant for the plugin running this test."""
    pm = request.config.pluginmanager
    if "anyio_backend" in request.fixturenames and pm.hasplugin("anyio"):
        return request.getfixturevalue(_name(fixture, "anyio"))
    if pm.hasplugin("asyncio"):
        return request.getfixturevalue(_name(fixture, "asyncio"))
    pytest.fail(
        f"the {fixture} fixture is made in the test's event loop and needs an async test "
        "plugin: mark the test @pytest.mark.anyio (anyio's plugin) or install pytest-asyncio "
        "(pip install 'pytest-agentperf[asyncio]') and mark it @pytest.mark.asyncio",
        pytrace=False,
    )
