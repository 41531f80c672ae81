"""pytest-agentperf installed beside the performance and reporting plugins people already use.

Runs in ``.venv-compat`` (``.ci/run`` installs the package there with ``.ci/compat.txt``:
pytest-perf, pytest-benchmark, pytest-codspeed, pytest-memray, pytest-html, pytest-xdist,
pytest-timeout, pytest-asyncio, anyio; override with ``AGENTPERF_COMPAT_PYTHON``). Skips on a
dev machine without it, fails under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from _support import read_report

ROOT = Path(__file__).resolve().parent.parent
OTHERS = ("pytest-perf", "pytest-benchmark", "pytest-codspeed", "pytest-memray", "pytest-html",
          "pytest-xdist", "pytest-timeout")


@pytest.fixture(scope="module")
def compat_python() -> Path:
    env = os.environ.get("AGENTPERF_COMPAT_PYTHON")
    python = Path(env) if env else ROOT / ".venv-compat" / "bin" / "python"
    if not python.exists():
        message = (f"no compat environment at {python}: python3 -m venv .venv-compat && "
                   ".venv-compat/bin/pip install -e . -r .ci/compat.txt")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


@pytest.fixture(scope="module")
def names(compat_python: Path) -> dict[str, dict[str, list[str]]]:
    out = subprocess.run([str(compat_python), str(ROOT / "tests/scripts/option_names.py")],
                         capture_output=True, text=True, timeout=120, check=True)
    data: dict[str, dict[str, list[str]]] = json.loads(out.stdout)
    return data


def test_every_other_plugin_is_installed(names: dict[str, Any]) -> None:
    assert set(OTHERS) <= set(names), sorted(names)


@pytest.mark.parametrize("kind", ["options", "dests", "ini"])
def test_no_name_is_shared_with_another_plugin(names: dict[str, Any], kind: str) -> None:
    ours = set(names["pytest-agentperf"][kind])
    assert ours
    for plugin, theirs in names.items():
        if plugin != "pytest-agentperf":
            assert not ours & set(theirs[kind]), f"{kind} shared with {plugin}"


def test_the_check_sees_a_clash(names: dict[str, Any]) -> None:
    """pytest-perf really has the spelling we gave up: the check above can fail."""
    assert "--perf-baseline" in names["pytest-perf"]["options"]
    assert "perf_baseline" in names["pytest-perf"]["dests"]


SUITE = """
import asyncio, pytest

@pytest.mark.perf_budget(p95=1.0)
def test_budget(perf_record, profiler):
    with profiler.profile_operation("agent", "step"):
        pass
    perf_record.add_latency(0.01)

def test_benchmark(benchmark):
    assert benchmark(sum, [1, 2, 3]) == 6

@pytest.mark.asyncio
@pytest.mark.perf_budget(p95=1.0)
async def test_async(batch_processor):
    assert await batch_processor.process(2, lambda xs: [x * 3 for x in xs]) == 6

@pytest.mark.timeout(60)
def test_plain():
    assert True
"""


@pytest.mark.parametrize(
    "args",
    [("-n", "2"), ("--memray",), ("--benchmark-disable",)],
    ids=["xdist", "memray", "benchmark-disabled"],
)
def test_a_session_with_all_of_them(compat_python: Path, tmp_path: Path,
                                    args: tuple[str, ...]) -> None:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\naddopts = --strict-markers\nasyncio_mode = strict\n"
        "asyncio_default_fixture_loop_scope = function\nfilterwarnings =\n    error\n"
        "    ignore::DeprecationWarning\n    ignore::pytest.PytestUnraisableExceptionWarning\n"
    )
    (tmp_path / "test_all.py").write_text(SUITE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GITHUB_"))}
    result = subprocess.run(
        [str(compat_python), "-m", "pytest", "-p", "no:cacheprovider", "--timeout=120",
         "--html=h.html", "--perf-report=r.json", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "4 passed" in out, out
    for plugin in ("agentperf", "benchmark", "codspeed", "memray", "html", "xdist", "timeout",
                   "perf"):
        assert f"{plugin}-" in out.split("plugins:", 1)[1].splitlines()[0] or "-n" in args
    report = read_report(tmp_path / "r.json")
    assert report["complete"]
    ids = {t["nodeid"].split("::")[-1] for t in report["tests"]}
    assert {"test_budget", "test_async"} <= ids
    assert (tmp_path / "h.html").is_file()
