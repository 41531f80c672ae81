"""Stash keys for per-test state (no state lives in globals)."""

from __future__ import annotations

from typing import Any

import pytest

from .record import TestRecord

RECORD_KEY = pytest.StashKey[TestRecord]()
PHASES_KEY = pytest.StashKey[dict[str, Any]]()
