"""pytest manners: the plugin stays out of the way of tests and conftests that don't use it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _support import normalise, read_report


def test_traceback_of_an_unmeasured_test_does_not_show_the_plugin(pt: pytest.Pytester) -> None:
    # a hook that raises outside the test function: pytest cannot cut the traceback at the
    # test, filters out pluggy's and pytest's frames and shows the rest, hidden ones excepted
    pt.makeconftest(
        """
        def pytest_pyfunc_call(pyfuncitem):
            raise RuntimeError("raised by a conftest hook")
        """
    )
    pt.makepyfile("def test_x():\n    pass\n")
    with_plugin = pt.runpytest()
    without = pt.runpytest("-p", "no:agentperf")
    with_plugin.assert_outcomes(failed=1)
    assert "raised by a conftest hook" in str(with_plugin.stdout)
    assert "pytest_agentperf" not in str(with_plugin.stdout)
    assert normalise(str(with_plugin.stdout)) == normalise(str(without.stdout))


def _readme_hook_example() -> str:
    """The README's conftest example for the plugin's hooks, as printed."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    (block,) = [b for b in blocks if "def pytest_agentperf_report" in b]
    return block


def test_readme_hook_example_works_on_and_off(pt: pytest.Pytester) -> None:
    pt.makeconftest(_readme_hook_example())
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(tokens=1000)
        def test_measured():
            pass

        def test_unmeasured():
            pass
        """
    )
    on = pt.runpytest("--perf-report=r.json")
    on.assert_outcomes(passed=2)
    report = read_report(pt.path / "r.json")
    assert "ci" in report
    (entry,) = report["tests"]
    assert entry["gpu"] == {"util": 0.93}
    assert entry["tokens"]["total"] == 150
    off = pt.runpytest("-p", "no:agentperf", "-p", "no:cacheprovider")
    assert "unknown hook" not in str(off.stdout) + str(off.stderr)
    off.assert_outcomes(passed=2)


def test_without_optionalhook_the_off_switch_would_fail(pt: pytest.Pytester) -> None:
    """Why the README says optionalhook=True: the check above can fail."""
    pt.makeconftest(_readme_hook_example().replace("@pytest.hookimpl(optionalhook=True)\n", ""))
    pt.makepyfile("def test_x():\n    pass\n")
    result = pt.runpytest("-p", "no:agentperf")
    assert result.ret != 0
    assert "unknown hook" in str(result.stdout) + str(result.stderr)
