"""The package's two layers: only ``plugin/`` knows pytest.

The guide's classes (``toolkit/``), the measurement, statistics, reports and the
CLI must work without pytest, so that users can call them from their own code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest_agentperf

PACKAGE = Path(pytest_agentperf.__file__).parent
PYTEST_AWARE = PACKAGE / "plugin"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_nothing_outside_plugin_imports_pytest() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if PYTEST_AWARE in path.parents:
            continue
        bad = {m for m in _imported_modules(path)
               if m.split(".")[0] in {"pytest", "_pytest", "pytest_asyncio", "pluggy"}}
        if bad:
            offenders.append(f"{path.relative_to(PACKAGE)}: {sorted(bad)}")
    assert offenders == []


def test_nothing_below_the_plugin_imports_it() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if PYTEST_AWARE in path.parents:
            continue
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if "plugin" in module.split(".") or any(a.name == "plugin" for a in node.names):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


def test_the_layout_checks_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import pytest\nfrom _pytest.nodes import Item\n")
    assert {"pytest", "_pytest.nodes"} <= _imported_modules(bad)


def test_stats_builds_on_histogram_never_the_reverse() -> None:
    """One HDR layout (histogram.py); the sample set in stats.py imports it."""
    def relative_imports(name: str) -> set[str]:
        tree = ast.parse((PACKAGE / name).read_text(encoding="utf-8"))
        return {node.module or "" for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.level == 1}

    assert "stats" not in relative_imports("histogram.py")
    assert "histogram" in relative_imports("stats.py")
    assert "HdrHistogram(" not in (PACKAGE / "stats.py").read_text(encoding="utf-8")
