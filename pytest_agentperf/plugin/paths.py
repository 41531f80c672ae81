"""File paths given to the plugin's options, checked before the session starts.

``--perf-report`` and ``--perf-history`` take an optional value, so in
``pytest --perf-report tests/t.py::test_x`` argparse hands the test path to the
option. Such values, and paths that name a directory, are usage errors naming the
option instead of a file written where nobody looks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = ["option_path"]

_SEPARATORS = tuple(s for s in (os.sep, os.altsep) if s)


def option_path(value: str, base: Path, option: str) -> Path:
    """``value`` as a file path (relative to ``base``), or a :class:`pytest.UsageError`."""
    text = value.strip()
    if "::" in text or text.endswith(".py") or ".py" + os.sep in text:
        raise pytest.UsageError(
            f"{option}: {value!r} looks like a test path, not a file for the option. "
            f"Write {option}=PATH, or put {option} after the test paths."
        )
    if not text or text.endswith(_SEPARATORS):
        raise pytest.UsageError(
            f"{option}: {value!r} names a directory; give a file path (e.g. "
            f"{text or '.' + os.sep}{'perf-report.json' if 'report' in option else 'file'})"
        )
    path = Path(text)
    if not path.is_absolute():
        path = base / path
    if path.is_dir():
        raise pytest.UsageError(
            f"{option}: {value!r} is a directory (a test directory taken as the option's "
            f"value?); write {option}=PATH with a file name, or put {option} after the test paths."
        )
    return path
