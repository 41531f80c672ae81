"""Agent scopes opened by one framework event and closed by another (a span's start and end)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable
from contextlib import AbstractContextManager

from .calls import agent_scope

__all__ = ["OpenScopes"]


class OpenScopes:
    """:func:`agent_scope` blocks keyed by the framework's run or span id.

    :meth:`open` enters the scope in the caller's context (the framework calls its hooks in
    the agent's own task or thread, so the LLM calls the agent makes see the name);
    :meth:`close` leaves it.  Bounded: past ``limit`` open scopes (ends that never came) new
    ones are entered but not tracked.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._open: dict[Hashable, AbstractContextManager[None]] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def open(self, key: Hashable, agent: str) -> None:
        scope = agent_scope(agent)
        scope.__enter__()
        with self._lock:
            if len(self._open) < self._limit:
                self._open[key] = scope

    def close(self, key: Hashable) -> None:
        with self._lock:
            scope = self._open.pop(key, None)
        if scope is not None:
            # ended in another context than it started: that context is gone, nothing to undo
            with contextlib.suppress(ValueError):
                scope.__exit__(None, None, None)

    def __len__(self) -> int:
        return len(self._open)
