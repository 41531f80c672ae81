"""Calls answered from a recorded cassette (vcrpy, pytest-recording) are tagged ``replayed``.

vcrpy answers a request from its cassette through ``Cassette.play_response(request)`` -- the
public method every one of its HTTP stubs (httpx, requests, aiohttp, ...) calls, in the
thread or task that sends the request -- and records a live one with ``Cassette.append``.
Wrapping ``play_response`` therefore says, for the SDK call in flight in that context,
that its response came from the cassette.  pytest-recording plays through vcrpy, so its
cassettes are seen the same way.  Nothing here imports vcrpy: the class is patched only once
``vcr.cassette`` has been imported (pytest-recording imports it when it loads).

A replayed call counts for calls, tokens and cost exactly as recorded, but its latency and
time to first token are the cassette's, not the model's: :class:`~.summary.LLMStats` keeps
them out of the latency samples.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .patches import MethodPatches

if TYPE_CHECKING:
    from .capture import LLMCapture

__all__ = ["ReplayPatch"]

_MARK = "__agentperf_replay_original__"


class ReplayPatch:
    """The patch of ``vcr.cassette.Cassette.play_response`` for one capture."""

    def __init__(self, capture: LLMCapture) -> None:
        self._capture = capture
        self._patches = MethodPatches(_MARK)

    @property
    def installed(self) -> bool:
        return bool(self._patches)

    def install(self) -> bool:
        """Patch vcrpy if it is imported; True when patched (now or before)."""
        if self._patches:
            return True
        module = sys.modules.get("vcr.cassette")
        cls = getattr(module, "Cassette", None) if module is not None else None
        if not isinstance(cls, type):
            return False
        capture = self._capture

        def make(original: Any) -> Any:
            def play_response(cassette: Any, request: Any) -> Any:
                response = original(cassette, request)
                capture.note_replayed()
                return response

            return play_response

        return self._patches.patch(cls, "play_response", make)

    def uninstall(self) -> None:
        """Restore the original (only where our wrapper is still the installed one)."""
        self._patches.restore()
