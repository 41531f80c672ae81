"""The CLI's exit codes on any JSON input: 0 ok, 1 regression (compare), 2 input error.

An input error is one line on stderr naming the file (and the field, where the
schema knows it), never a traceback. A property-based test feeds every command
arbitrary JSON and valid reports with one part replaced by arbitrary JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_agentperf.cli import main
from pytest_agentperf.record import TestRecord
from pytest_agentperf.report import build_report


def _valid_report() -> dict[str, Any]:
    entries = []
    for i in range(3):
        record = TestRecord(f"t.py::test_{i}", {"p95": 1.0})
        for k in range(6):
            record.add_latency(0.01 * (k + 1) * (i + 1))
        record.add_tokens(100, prompt=60, completion=40, requests=2)
        record.add_operation("agent:step", {"count": 2, "total_s": 0.02, "mean_s": 0.01,
                                            "p50_s": 0.01, "p95_s": 0.01, "max_s": 0.01,
                                            "tokens": 50, "samples": [0.01, 0.01]})
        entry = record.to_dict()
        entry["outcome"] = "passed"
        entries.append(entry)
    env = {"python": "3.11.7", "platform": "Linux", "machine": "x86_64", "cpu_count": 2,
           "pytest": "9", "agentperf": "0.1.0", "git_commit": None}
    return build_report(tests=entries, env=env, complete=True)


VALID = _valid_report()

#: text with what breaks naive readers: lone surrogates, control characters, long strings
TEXT = st.one_of(st.text(max_size=20), st.sampled_from(["\ud800", "a\udfff", "\x00", "é" * 50]))
NUMBERS = st.one_of(
    st.integers(), st.integers(min_value=10**300, max_value=10**320),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e308, -0.0, 2**64]),
)
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, sub in value.items():
            out += _paths(sub, (*prefix, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            out += _paths(sub, (*prefix, i))
    return out


PATHS = _paths(VALID)


@st.composite
def mutated_reports(draw: st.DrawFn) -> Any:
    """A valid report with one value (anywhere) replaced by arbitrary JSON, or deleted."""
    data = json.loads(json.dumps(VALID))
    path = draw(st.sampled_from(PATHS[1:]))
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(JSON)
    return data


INPUTS = st.one_of(JSON, mutated_reports(), mutated_reports())


def _write(path: Path, value: Any) -> None:
    # ensure_ascii keeps lone surrogates as \ud800 escapes, as another tool might write them
    path.write_text(json.dumps(value, ensure_ascii=True), "utf-8")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _check_error(code: int, err: str, ok: set[int]) -> None:
    assert code in ok | {2}, (code, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("pytest-agentperf"), err
    assert "Traceback" not in err


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bad=INPUTS, which=st.sampled_from(["compare-new", "compare-base", "merge", "html"]))
def test_any_json_gives_exit_0_1_or_2_never_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: Any, which: str
) -> None:
    good, broken = tmp_path / "good.json", tmp_path / "broken.json"
    _write(good, VALID)
    _write(broken, bad)
    if which == "compare-new":
        code, _, err = _run(["compare", str(good), str(broken)], capsys)
        _check_error(code, err, {0, 1})
    elif which == "compare-base":
        code, _, err = _run(["compare", str(broken), str(good)], capsys)
        _check_error(code, err, {0, 1})
    elif which == "merge":
        code, _, err = _run(["merge", str(good), str(broken), "-o", str(tmp_path / "m.json")],
                            capsys)
        _check_error(code, err, {0})
    else:
        code, _, err = _run(["html", str(broken), "-o", str(tmp_path / "r.html")], capsys)
        _check_error(code, err, {0})
    if code == 2:
        assert "broken.json" in err


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"schema_version": 1, "tests": "x"}', "no 'tests' list"),
        (json.dumps(VALID).replace('"cpu_count": 2', '"cpu_count": ' + "9" * 5000),
         "not valid JSON"),
        ("[" * 100000, "not valid JSON"),
        ('{"schema_version": 1, "tests": []', "not valid JSON"),
    ],
    ids=["tests-type", "huge-int-digits", "deep", "truncated"],
)
def test_unreadable_input_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         text: str, field: str) -> None:
    good, broken = tmp_path / "good.json", tmp_path / "broken.json"
    _write(good, VALID)
    broken.write_text(text, "utf-8")
    code, out, err = _run(["compare", str(good), str(broken)], capsys)
    assert code == 2, out + err
    assert "broken.json" in err and field in err, err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"latency": {"count": "3"}}, "tests[0].latency: missing field 'min'"),
        ({"outcome": 3}, "tests[0].outcome: 3 is not one of"),
        ({"nodeid": "\ud800"}, "tests[0].nodeid: text contains a lone surrogate"),
        ({"duration_s": 10**400}, "tests[0].duration_s: number too large (401 digits)"),
    ],
    ids=["missing", "enum", "surrogate", "huge-int"],
)
def test_a_command_that_cannot_use_a_report_names_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    change: dict[str, Any], field: str,
) -> None:
    """When a command still fails on odd data, the message names the field the schema
    finds wrong (the commands are tolerant, so the failure is simulated here)."""
    import pytest_agentperf.cli as cli

    def broken_compare(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("min")

    monkeypatch.setattr(cli, "compare_reports", broken_compare)
    good, broken = tmp_path / "good.json", tmp_path / "broken.json"
    _write(good, VALID)
    broken.write_text(json.dumps({**VALID, "tests": [{**VALID["tests"][0], **change}]})
                      .replace("\\\\ud800", "\\ud800"), "utf-8")
    code, out, err = _run(["compare", str(good), str(broken)], capsys)
    assert code == 2, out + err
    assert f"report file {broken}: {field}" in err, err
    assert len(err.strip().splitlines()) == 1


def test_valid_reports_still_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.json"
    _write(good, VALID)
    code, out, _ = _run(["compare", str(good), str(good)], capsys)
    assert code == 0, out
