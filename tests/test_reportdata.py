"""The report-dict readers every report consumer shares (pytest_agentperf/reportdata.py)."""

from __future__ import annotations

import math

from pytest_agentperf.reportdata import (
    as_dict,
    as_list,
    at,
    finite,
    finite_at,
    number,
    number_at,
    samples,
)


def test_a_number_is_finite_and_never_a_bool() -> None:
    assert number(3) == 3.0 and isinstance(number(3), float)
    assert number(0.25) == 0.25
    for bad in (None, True, False, "1", math.nan, math.inf, -math.inf, 10**400, [1], {}):
        assert number(bad) is None, bad
    assert finite(7) == 7 and isinstance(finite(7), int)
    assert finite(math.nan) is None and finite(True) is None


def test_paths_through_untrusted_nesting() -> None:
    test = {"latency": {"p95": 0.2, "count": 5, "bad": "x"}, "memory": None, "tokens": [1]}
    assert at(test, "latency", "p95") == 0.2
    assert at(test, "memory", "peak_mb") is None
    assert at(test, "tokens", "total") is None  # a list is not a mapping
    assert at(test) is test
    assert number_at(test, "latency", "bad") is None
    assert finite_at(test, "latency", "count") == 5
    assert isinstance(finite_at(test, "latency", "count"), int)


def test_samples_and_containers() -> None:
    assert samples([1, 0.5, None, "2", math.nan, True, 3]) == [1.0, 0.5, 3.0]
    assert samples({"a": 1}) == [] and samples(None) == []
    assert as_dict({"a": 1}) == {"a": 1} and as_dict([1]) == {}
    assert as_list([1]) == [1] and as_list({"a": 1}) == []
