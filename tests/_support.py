"""Helpers for the plugin's own tests (imported as ``from _support import ...``)."""

from __future__ import annotations

import json
import re
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


def normalise(text: str) -> str:
    """Drop what legitimately differs between two pytest runs: plugin list, times, addresses."""
    text = re.sub(r"^plugins: .*\n", "", text, flags=re.M)
    text = re.sub(r"in \d+\.\d+s", "in Ts", text)
    return re.sub(r"0x[0-9a-f]+", "0xADDR", text)
