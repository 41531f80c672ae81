"""Option values that are really test paths, or directories, are usage errors."""

from __future__ import annotations

import pytest


@pytest.fixture
def suite(pt: pytest.Pytester) -> pytest.Pytester:
    pt.makepyfile(test_t="def test_x():\n    pass\n")
    pt.mkdir("out")
    return pt


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--perf-report", "test_t.py::test_x"),
         "--perf-report: 'test_t.py::test_x' looks like a test path*"),
        (("--perf-report", "test_t.py"), "--perf-report: 'test_t.py' looks like a test path*"),
        (("--perf-history", "test_t.py"), "--perf-history: 'test_t.py' looks like a test path*"),
        (("--perf-history", "test_t.py::test_x"), "--perf-history: *looks like a test path*"),
        (("--perf-report=new/",), "--perf-report: 'new/' names a directory; give a file path*"),
        (("--perf-history=db/",), "--perf-history: 'db/' names a directory*"),
        (("--perf-html=h/",), "--perf-html: 'h/' names a directory*"),
        (("--perf-report", "out"), "--perf-report: 'out' is a directory*"),
    ],
)
def test_usage_error(suite: pytest.Pytester, args: tuple[str, ...], message: str) -> None:
    result = suite.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}"])
    assert not (suite.path / "new").exists() and not (suite.path / "db").exists()
    assert "Traceback" not in str(result.stderr)


def test_ini_value_naming_a_directory(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n"
                  "perf_report = reports/\n")
    result = suite.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*perf_report ini option: 'reports/' names a directory*"])


def test_a_value_after_the_test_paths_still_works(suite: pytest.Pytester) -> None:
    result = suite.runpytest("test_t.py::test_x", "--perf-report", "--perf-history")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    assert (suite.path / "perf-report.json").is_file()
    result = suite.runpytest("--perf-report=out/r.json", "test_t.py")
    assert result.ret == pytest.ExitCode.OK
    assert (suite.path / "out" / "r.json").is_file()
