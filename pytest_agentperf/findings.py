"""Findings: diagnostics that warn about a test without measuring a budget.

A :class:`Finding` is what the diagnostics modules (:mod:`.loopblock`,
:mod:`.checker`, :mod:`.leaks`) hand to the plugin layer: a ``kind`` (one
word, e.g. ``"blocking_call"`` or ``"n_plus_one"``), a one-line human
``message`` and JSON-serialisable ``details``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BLOCKING_CALL", "MEMORY_LEAK", "N_PLUS_ONE", "Finding"]

#: A single event-loop step held the loop longer than the threshold.
BLOCKING_CALL = "blocking_call"
#: The same operation was called many times in a tight cluster.
N_PLUS_ONE = "n_plus_one"
#: Memory still held after the test body returned and garbage was collected.
MEMORY_LEAK = "memory_leak"


@dataclass(frozen=True)
class Finding:
    """One diagnostic about a test: ``kind``, ``message`` and ``details``."""

    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: ``{"kind", "message", "details"}``."""
        return {"kind": self.kind, "message": self.message, "details": dict(self.details)}
