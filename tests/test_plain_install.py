"""Installing pytest-agentperf must not change a suite that does not use it.

These tests run pytest in a separate virtualenv where the package is installed
*without extras* (so without pytest-asyncio): ``.ci/run`` builds it as
``.venv-plain`` (override with ``AGENTPERF_PLAIN_PYTHON``). On a dev machine
without it they skip; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _support import normalise

ROOT = Path(__file__).resolve().parent.parent


def _plain_python() -> Path:
    env = os.environ.get("AGENTPERF_PLAIN_PYTHON")
    python = Path(env) if env else ROOT / ".venv-plain" / "bin" / "python"
    if not python.exists():
        message = (f"no plain install at {python}: python3 -m venv .venv-plain && "
                   ".venv-plain/bin/pip install .")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


@pytest.fixture(scope="module")
def plain_python() -> Path:
    return _plain_python()


def _run(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GITHUB_"))}
    return subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", "--color=no", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


PLAIN_SUITE = '''
import warnings
import pytest

def helper():
    assert {"a": 1} == {"a": 2}

def test_ok():
    assert 1

def test_fails():
    helper()

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass

@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    assert n

def test_warns():
    with pytest.warns(UserWarning):
        warnings.warn("expected", UserWarning)
'''


@pytest.fixture
def plain_suite(tmp_path: Path) -> Path:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\naddopts = --strict-markers\nfilterwarnings =\n    error\n")
    (tmp_path / "test_plain.py").write_text(PLAIN_SUITE)
    return tmp_path


def test_the_plain_install_has_no_async_plugin(plain_python: Path) -> None:
    out = subprocess.run(
        [str(plain_python), "-c", "import importlib.util as u, pytest_agentperf; "
         "print(u.find_spec('pytest_asyncio') is None)"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize("args", [(), ("-v", "-rA"), ("--tb=short",), ("-q", "--tb=long")],
                         ids=["default", "verbose", "short", "quiet-long"])
def test_unused_plugin_leaves_output_unchanged(
    plain_python: Path, plain_suite: Path, args: tuple[str, ...]
) -> None:
    with_plugin = _run(plain_python, plain_suite, *args)
    without = _run(plain_python, plain_suite, "-p", "no:agentperf", *args)
    assert without.returncode == 1, without.stdout + without.stderr  # one test fails
    assert "plugins: agentperf" in with_plugin.stdout or "-q" in args
    assert with_plugin.returncode == without.returncode
    assert normalise(with_plugin.stdout) == normalise(without.stdout)
    assert with_plugin.stderr == without.stderr == ""
    assert "INTERNALERROR" not in with_plugin.stdout
    assert "Warning" not in with_plugin.stdout


def test_plugin_works_in_the_plain_install(plain_python: Path, tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings =\n    error\n")
    (tmp_path / "test_measured.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.perf_budget(p95=0.5)\n"
        "def test_fast(perf_record):\n    perf_record.add_latency(0.1)\n\n"
        "@pytest.mark.perf_budget(p95=0.5)\n"
        "def test_slow(perf_record):\n    perf_record.add_latency(0.9)\n\n"
        "def test_pool(connection_pool):\n    pass\n"
    )
    result = _run(plain_python, tmp_path, "--perf-report=r.json", "-rA")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "1 failed, 1 passed, 1 error" in out, out
    assert "perf budget exceeded: p95" in out
    assert "needs an async test plugin" in out
    assert "INTERNALERROR" not in out and "Traceback" not in out
    assert (tmp_path / "r.json").is_file()


def test_the_plain_install_ships_the_page_assets(plain_python: Path, tmp_path: Path) -> None:
    """The HTML page's CSS and JS are package data: present in a non-editable install."""
    (tmp_path / "test_one.py").write_text(
        "def test_one(perf_record):\n    perf_record.add_latency(0.01)\n")
    result = _run(plain_python, tmp_path, "--perf-html=r.html")
    assert result.returncode == 0, result.stdout + result.stderr
    page = (tmp_path / "r.html").read_text("utf-8")
    out = subprocess.run(
        [str(plain_python), "-c", "import pytest_agentperf.html as h, sys; "
         "print(h.__file__); sys.stdout.write(h.asset('report.css'))"],
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60,
    )
    where, css = out.stdout.split("\n", 1)
    # the installed copy, not this checkout (the venv itself may live inside the checkout)
    installed = Path(where)
    assert "site-packages" in installed.parts
    assert ROOT / "pytest_agentperf" not in installed.parents
    assert "#tests>thead th" in css and f"<style>{css}</style>" in page
    assert 'getElementById("tests")' in page


def test_normalise_keeps_real_differences() -> None:
    """The comparison above could fail: normalising keeps everything but noise."""
    a = "plugins: agentperf-0.1.0\nx at 0x7f12 in 0.01s\n"
    assert normalise(a) == normalise("x at 0x9a in 0.20s\n")
    assert normalise(a) != normalise("x at 0x9a in 0.20s\nwarning\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
