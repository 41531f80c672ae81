"""Methods replaced on third-party classes, and put back: the one way the capture patches.

Each wrapper carries its original under a marker attribute, so :meth:`MethodPatches.restore`
puts an original back only where our wrapper is still the installed one (a later
instrumentation that wrapped ours keeps its wrapper), and a test can tell a patched method.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

__all__ = ["MethodPatches"]


class MethodPatches:
    """The methods one patch replaced, restored as a whole; true while any is installed."""

    __slots__ = ("_mark", "_originals")

    def __init__(self, mark: str) -> None:
        self._mark = mark
        self._originals: list[tuple[type, str, Any]] = []

    def __bool__(self) -> bool:
        return bool(self._originals)

    def patch(self, cls: type, name: str, make: Callable[[Any], Any]) -> bool:
        """Replace ``cls.<name>`` (defined on ``cls`` itself) by ``make(original)``; False
        when ``cls`` defines no such attribute."""
        original = cls.__dict__.get(name)
        if original is None:
            return False
        wrapper = make(original)
        functools.update_wrapper(wrapper, original)
        setattr(wrapper, self._mark, original)
        setattr(cls, name, wrapper)
        self._originals.append((cls, name, original))
        return True

    def restore(self) -> None:
        """Put the originals back, latest first, where our wrapper is still installed."""
        mark = self._mark
        for cls, name, original in reversed(self._originals):
            if getattr(cls.__dict__.get(name), mark, None) is original:
                setattr(cls, name, original)
        self._originals.clear()
