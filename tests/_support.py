"""Helpers for the plugin's own tests (imported as ``from _support import ...``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_report(path: Path) -> dict[str, Any]:
    """Load a report and validate it against the shipped schema."""
    import jsonschema

    from pytest_agentperf import load_schema

    data: dict[str, Any] = json.loads(path.read_text())
    jsonschema.validate(data, load_schema())
    return data


def by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["nodeid"].split("::")[-1]: t for t in report["tests"]}
