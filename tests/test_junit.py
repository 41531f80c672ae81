"""--junitxml: each measured test carries its figures and violations as <properties>."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

SUITE = """
import pytest

@pytest.mark.perf_budget(p95=0.5, tokens=100)
def test_over(perf_record):
    for _ in range(5):
        perf_record.add_latency(0.9)
    perf_record.add_tokens(prompt=150, completion=50)

@pytest.mark.perf_budget(p95=5)
def test_ok(perf_record):
    perf_record.add_latency(0.25)

def test_plain():
    pass
"""


def _properties(path: str) -> dict[str, dict[str, str]]:
    root = ET.parse(path).getroot()
    out: dict[str, dict[str, str]] = {}
    for case in root.iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        out[case.get("name", "")] = props
    return out


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_properties_in_junit_xml(pt: pytest.Pytester, xdist: bool) -> None:
    pt.makepyfile(SUITE)
    args = ["--junitxml=j.xml", "-p", "no:cacheprovider"]
    result = pt.runpytest_subprocess(*args, "-n", "2") if xdist else pt.runpytest(*args)
    result.assert_outcomes(passed=2, failed=1)
    props = _properties(str(pt.path / "j.xml"))
    over = props["test_over"]
    assert over["agentperf.latency_p95_s"] == "0.9"
    assert over["agentperf.latency_samples"] == "5"
    assert over["agentperf.tokens"] == "200"
    assert over["agentperf.budget_violations"] == "2"
    assert "p95 900 ms > 500 ms" in over["agentperf.violations"]
    assert "tokens" in over["agentperf.violations"]
    assert "agentperf.peak_memory_mb" in over
    assert props["test_ok"]["agentperf.budget_violations"] == "0"
    assert "agentperf.violations" not in props["test_ok"]
    assert props["test_plain"] == {}  # a test that does not use the plugin gets nothing


def test_no_properties_without_junitxml(pt: pytest.Pytester) -> None:
    pt.makeconftest("""
        SEEN = []

        def pytest_runtest_logreport(report):
            SEEN.extend(report.user_properties)

        def pytest_sessionfinish(session):
            with open("seen.txt", "w") as f:
                f.write(repr(SEEN))
    """)
    pt.makepyfile(SUITE)
    pt.runpytest().assert_outcomes(passed=2, failed=1)
    assert (pt.path / "seen.txt").read_text() == "[]"
    pt.runpytest("--junitxml=j.xml").assert_outcomes(passed=2, failed=1)
    assert "agentperf.tokens" in (pt.path / "seen.txt").read_text()  # the check can fail
