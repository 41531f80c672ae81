"""pytest manners: the plugin stays out of the way of tests and conftests that don't use it."""

from __future__ import annotations

import pytest

from _support import normalise


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
