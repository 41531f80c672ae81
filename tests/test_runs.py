"""Repeated runs (``perf_runs``, ``--perf-runs``) through real pytest sessions.

Logic is checked with figures fed deterministically (``perf_record.add_latency``,
counters in files), never with timing.
"""

from __future__ import annotations

import json

import pytest

from _support import by_id, read_report


def need(module: str) -> None:
    """Skip without ``module`` on a dev machine; under CI (``CI=true``) fail instead."""
    import importlib.util
    import os

    if importlib.util.find_spec(module) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is not installed (pip install -e '.[dev]')")
        pytest.skip(f"{module} is not installed")

FIXTURES = """
import pathlib, pytest

LOG = pathlib.Path(__file__).parent / "log.txt"

def log(word):
    with LOG.open("a") as f:
        f.write(word + "\\n")

@pytest.fixture(scope="module")
def mod():
    log("mod-up")
    yield
    log("mod-down")

@pytest.fixture
def fn():
    log("fn-up")
    yield sum(1 for w in LOG.read_text().split() if w == "fn-up")
    log("fn-down")
"""


def _log(pt: pytest.Pytester) -> list[str]:
    return (pt.path / "log.txt").read_text().split()


def test_each_run_sets_up_function_fixtures_and_shares_wider_ones(pt: pytest.Pytester) -> None:
    pt.makepyfile(test_a=FIXTURES + """
@pytest.mark.perf_runs(5, warmup=2)
@pytest.mark.perf_budget(p95=100)
def test_rep(mod, fn, perf_record):
    log(f"call-{fn}")
    perf_record.add_latency(fn / 100)

def test_after(mod):
    log("after")
""")
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(passed=2)
    words = _log(pt)
    assert words[0] == "mod-up" and words.count("mod-up") == 1  # module fixture shared
    assert words[1:22] == [w for i in range(1, 8) for w in ("fn-up", f"call-{i}", "fn-down")]
    assert words[22:] == ["after", "mod-down"]
    entry = by_id(read_report(pt.path / "r.json"))["test_rep"]
    assert entry["runs"]["runs"] == 5 and entry["runs"]["warmup"] == 2
    assert len(entry["runs"]["durations_s"]) == 5
    # warm-up runs (1, 2) are discarded: the samples are runs 3..7
    assert sorted(entry["latency"]["samples"]) == pytest.approx([0.03, 0.04, 0.05, 0.06, 0.07])
    assert entry["latency"]["count"] == 5
    assert len(by_id(read_report(pt.path / "r.json"))) == 1  # one entry per test


def test_plain_test_has_one_sample_per_run(pt: pytest.Pytester) -> None:
    pt.makepyfile(test_a="""
import pytest

@pytest.mark.perf_runs(8)
def test_plain():
    pass
""")
    pt.runpytest("--perf-report=r.json").assert_outcomes(passed=1)
    entry = by_id(read_report(pt.path / "r.json"))["test_plain"]
    assert entry["latency"]["count"] == 8 and entry["latency"]["source"] == "call"
    assert sorted(entry["latency"]["samples"]) == sorted(entry["runs"]["durations_s"])
    assert entry["duration_s"] == pytest.approx(sum(entry["runs"]["durations_s"]))


def test_budget_judges_the_pooled_samples(pt: pytest.Pytester) -> None:
    pt.makepyfile(test_a=FIXTURES + """
@pytest.mark.perf_runs(20)
@pytest.mark.perf_budget(p95=0.15, p50=0.2)
def test_tail(fn, perf_record):
    perf_record.add_latency(0.2 if fn >= 19 else 0.1)   # two slow runs in twenty
""")
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(failed=1)
    # p95 of eighteen 0.1 s and two 0.2 s: one run alone would pass or fail at random
    result.stdout.fnmatch_lines(["*perf budget exceeded: p95 200 ms > 150 ms (n=20)*"])
    entry = by_id(read_report(pt.path / "r.json"))["test_tail"]
    assert [v["metric"] for v in entry["violations"]] == ["p95"]


def test_tokens_are_judged_per_run(pt: pytest.Pytester) -> None:
    pt.makepyfile(test_a=FIXTURES + """
@pytest.mark.perf_runs(4)
@pytest.mark.perf_budget(tokens=240)
def test_tokens(fn, perf_record):
    perf_record.add_tokens(prompt=100 * fn, completion=0)   # 100, 200, 300, 400
""")
    result = pt.runpytest("--perf-report=r.json")
    result.assert_outcomes(failed=1)  # the mean per run, 250, is above 240
    result.stdout.fnmatch_lines(["*perf budget exceeded: tokens 250 tokens > 240 tokens*"])
    entry = by_id(read_report(pt.path / "r.json"))["test_tokens"]
    assert entry["runs"]["tokens"] == {"mean": 250.0, "total": 1000}
    assert entry["tokens"]["total"] == 250
    assert entry["memory"] is None or len(entry["memory"]["values"]) == 4


def test_failing_run_fails_once_with_its_index(pt: pytest.Pytester) -> None:
    pt.makepyfile(test_a=FIXTURES + """
@pytest.mark.perf_runs(5, warmup=1)
def test_third(fn):
    assert fn != 4, "broke"

def test_next(mod):
    pass
""")
    result = pt.runpytest("--perf-report=r.json", "-p", "no:randomly")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*AssertionError: broke*", "*call failed in run 3 of 5*"])
    assert _log(pt).count("fn-up") == 4  # stopped at the failing run
    entry = by_id(read_report(pt.path / "r.json"))["test_third"]
    assert entry["outcome"] == "failed" and entry["runs"]["failed_run"] == "run 3 of 5"
    assert entry["runs"]["runs"] == 3


def test_failing_warmup_run_is_named(pt: pytest.Pytester) -> None:
    pt.makepyfile(test_a="""
import pytest

@pytest.mark.perf_runs(3, warmup=2)
def test_warm():
    raise RuntimeError("cold")
""")
    result = pt.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*call failed in warm-up run 1 of 2*"])


def test_setup_and_teardown_errors_error_the_test_once(pt: pytest.Pytester) -> None:
    pt.makepyfile(test_a=FIXTURES + """
@pytest.fixture
def bad_setup(fn):
    if fn == 3:
        raise RuntimeError("setup broke")

@pytest.fixture
def bad_teardown(fn):
    yield
    if fn == 2:
        raise RuntimeError("teardown broke")

@pytest.mark.perf_runs(4)
def test_setup(bad_setup):
    pass
""", test_b=FIXTURES + """
@pytest.fixture
def bad_teardown(fn):
    yield
    if fn == 2:
        raise RuntimeError("teardown broke")

@pytest.mark.perf_runs(4)
def test_teardown(bad_teardown):
    pass

def test_after(mod):
    pass
""")
    result = pt.runpytest("test_a.py", "--perf-report=r.json")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*RuntimeError: setup broke*", "*setup failed in run 3 of 4*"])
    (pt.path / "log.txt").unlink()
    result = pt.runpytest("test_b.py")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*RuntimeError: teardown broke*",
                                 "*teardown failed in run 2 of 4*"])
    words = _log(pt)
    assert words.count("fn-up") == 4 and words[-1] == "mod-down"


@pytest.mark.parametrize(("body", "outcome"), [
    ("pytest.skip('not today')", {"skipped": 1}),
    ("pytest.xfail('known')", {"xfailed": 1}),
])
def test_skips_and_xfails_as_without_runs(pt: pytest.Pytester, body: str,
                                          outcome: dict[str, int]) -> None:
    pt.makepyfile(test_a=FIXTURES + f"""
@pytest.mark.perf_runs(4)
def test_it(fn):
    {body}
""")
    pt.runpytest().assert_outcomes(**outcome)
    assert _log(pt).count("fn-up") == 1


def test_xfail_marker_and_skip_marker(pt: pytest.Pytester) -> None:
    pt.makepyfile(test_a=FIXTURES + """
@pytest.mark.perf_runs(3)
@pytest.mark.xfail(reason="known", strict=True)
def test_xfails(fn):
    assert False

@pytest.mark.perf_runs(3)
@pytest.mark.xfail(reason="known")
def test_xpasses(fn):
    pass

@pytest.mark.perf_runs(3)
@pytest.mark.skip(reason="off")
def test_skipped(fn):
    pass
""")
    pt.runpytest("--perf-report=r.json").assert_outcomes(xfailed=1, xpassed=1, skipped=1)
    assert _log(pt).count("fn-up") == 1 + 3  # xfail stops at the first run; xpass runs all
    assert by_id(read_report(pt.path / "r.json"))["test_xpasses"]["runs"]["runs"] == 3


def test_max_time_stops_after_two_measured_runs(pt: pytest.Pytester) -> None:
    # each run sleeps longer than max_time: exactly the minimum of two runs happen,
    # whatever the machine's speed; a generous max_time lets all runs happen
    pt.makepyfile(test_a="""
import time, pytest

@pytest.mark.perf_runs(50, warmup=1, max_time=0.001)
def test_short():
    time.sleep(0.002)

@pytest.mark.perf_runs(5, max_time=3600)
def test_long():
    pass
""")
    pt.runpytest("--perf-report=r.json").assert_outcomes(passed=2)
    tests = by_id(read_report(pt.path / "r.json"))
    assert tests["test_short"]["runs"]["runs"] == 2
    assert tests["test_short"]["runs"]["stopped"] == "max_time 0.001 s reached"
    assert tests["test_long"]["runs"]["runs"] == 5 and tests["test_long"]["runs"]["stopped"] is None


@pytest.mark.parametrize(("marker", "message"), [
    ("perf_runs(0)", "@pytest.mark.perf_runs: n=0 must be a whole number >= 1"),
    ("perf_runs('3')", "@pytest.mark.perf_runs: n='3' must be a whole number >= 1"),
    ("perf_runs(2.5)", "@pytest.mark.perf_runs: n=2.5 must be a whole number >= 1"),
    ("perf_runs(True)", "@pytest.mark.perf_runs: n=True must be a whole number >= 1"),
    ("perf_runs()", "@pytest.mark.perf_runs: missing the number of runs, e.g. perf_runs(30)"),
    ("perf_runs(3, 2)", "@pytest.mark.perf_runs: takes one positional argument (n)*"),
    ("perf_runs(3, n=4)", "@pytest.mark.perf_runs: n given twice (3 and n=4)"),
    ("perf_runs(3, warmup=-1)", "@pytest.mark.perf_runs: warmup=-1 must be a whole number >= 0"),
    ("perf_runs(3, max_time=0)", "@pytest.mark.perf_runs: max_time=0 must be a number of*"),
    ("perf_runs(3, max_time=float('nan'))", "@pytest.mark.perf_runs: max_time=nan must be*"),
    ("perf_runs(3, rounds=2)", "@pytest.mark.perf_runs: unknown argument rounds=2; valid: n,*"),
])
def test_invalid_marker_errors_the_test_before_its_body(
    pt: pytest.Pytester, marker: str, message: str
) -> None:
    pt.makepyfile(test_a=f"""
import pytest

@pytest.mark.{marker}
def test_bad():
    raise AssertionError("the body must not run")

def test_fine():
    pass
""")
    result = pt.runpytest()
    result.assert_outcomes(errors=1, passed=1)
    result.stdout.fnmatch_lines([f"*{message}"])
    assert "the body must not run" not in result.stdout.str()


RUNS_SUITE = FIXTURES + """
@pytest.mark.perf_budget(p95=100)
def test_budgeted(fn):
    pass

def test_fixture(perf_record, fn):
    pass

def test_unmeasured(fn):
    pass

@pytest.mark.perf_runs(2)
def test_marked(fn):
    pass
"""


def test_option_and_ini_apply_to_measured_tests_and_the_marker_wins(
    pt: pytest.Pytester,
) -> None:
    pt.makepyfile(test_a=RUNS_SUITE)
    pt.runpytest("--perf-runs=3", "--perf-report=r.json").assert_outcomes(passed=4)
    tests = by_id(read_report(pt.path / "r.json"))
    assert {k: v["runs"]["runs"] for k, v in tests.items()} == {
        "test_budgeted": 3, "test_fixture": 3, "test_marked": 2}
    assert _log(pt).count("fn-up") == 3 + 3 + 1 + 2  # the unmeasured test ran once
    pt.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nperf_runs = 4\n")
    pt.runpytest("--perf-report=r.json").assert_outcomes(passed=4)
    assert by_id(read_report(pt.path / "r.json"))["test_budgeted"]["runs"]["runs"] == 4
    pt.runpytest("--perf-report=r.json", "--perf-runs=1").assert_outcomes(passed=4)
    tests = by_id(read_report(pt.path / "r.json"))
    assert "runs" not in tests["test_budgeted"] and tests["test_marked"]["runs"]["runs"] == 2


@pytest.mark.parametrize(("args", "ini", "message"), [
    (["--perf-runs=0"], "", "*--perf-runs: '0' must be >= 1*"),
    (["--perf-runs=many"], "", "*--perf-runs: 'many' is not a whole number*"),
    ([], "perf_runs = -2", "*perf_runs ini option: '-2' must be >= 1*"),
])
def test_bad_option_is_a_usage_error(pt: pytest.Pytester, args: list[str], ini: str,
                                     message: str) -> None:
    pt.makeini(f"[pytest]\nasyncio_default_fixture_loop_scope = function\n{ini}\n")
    pt.makepyfile(test_a="def test_a(): pass\n")
    result = pt.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def _baseline(path: object, samples: list[float]) -> None:
    from pytest_agentperf.stats import summarize

    latency = summarize(samples)
    latency.update(samples=samples, source="call", exact=True)
    entry = {"nodeid": "test_a.py::test_plain", "outcome": "passed", "duration_s": 1.0,
             "budget": None, "latency": latency, "memory": None,
             "tokens": {"total": 0, "prompt": 0, "completion": 0, "per_request": 0},
             "violations": [], "operations": {}}
    report = {"schema_version": 1, "complete": True, "environment": {}, "tests": [entry]}
    with open(str(path), "w") as f:
        json.dump(report, f)


@pytest.mark.parametrize(("base_sample", "verdict"), [(1e-9, "regression"),
                                                      (10.0, "improvement")])
def test_the_gate_decides_on_a_plain_repeated_test(
    pt: pytest.Pytester, base_sample: float, verdict: str
) -> None:
    # a baseline whose 30 call durations are all far from anything a trivial test can
    # take: with 30 runs the gate decides; with one run it cannot
    _baseline(pt.path / "base.json", [base_sample * (1 + i / 1000) for i in range(30)])
    pt.makepyfile(test_a="def test_plain(perf_record):\n    pass\n")
    pt.runpytest("--perf-compare=base.json", "--perf-compare-warn",
                 "--perf-report=one.json").assert_outcomes(passed=1)
    one = by_id(read_report(pt.path / "one.json"))["test_plain"]
    assert one["baseline"]["verdict"] == "inconclusive"
    pt.runpytest("--perf-compare=base.json", "--perf-compare-warn", "--perf-runs=30",
                 "--perf-report=many.json").assert_outcomes(passed=1)
    many = by_id(read_report(pt.path / "many.json"))["test_plain"]
    assert many["baseline"]["verdict"] == verdict
    assert many["latency"]["count"] == 30


def test_async_test_and_fixture_per_run(pt: pytest.Pytester) -> None:
    pt.makepyfile(test_a=FIXTURES + """
import asyncio, pytest_asyncio

@pytest_asyncio.fixture
async def conn():
    log("conn-up")
    yield asyncio.get_running_loop()
    log("conn-down")

@pytest.mark.asyncio
@pytest.mark.perf_runs(3)
async def test_async(conn, perf_record):
    assert asyncio.get_running_loop() is conn
    await asyncio.sleep(0)
    perf_record.add_latency(0.5)
""")
    pt.runpytest("--perf-report=r.json").assert_outcomes(passed=1)
    assert _log(pt) == ["conn-up", "conn-down"] * 3
    assert by_id(read_report(pt.path / "r.json"))["test_async"]["latency"]["count"] == 3


XDIST_SUITE = """
import os, pathlib, pytest

def _mark(name):
    with (pathlib.Path(__file__).parent / f"{name}.txt").open("a") as f:
        f.write(os.environ.get("PYTEST_XDIST_WORKER", "-") + "\\n")

@pytest.mark.perf_runs(6)
def test_one():
    _mark("one")

@pytest.mark.perf_runs(6)
def test_two():
    _mark("two")

@pytest.mark.parametrize("i", range(6))
@pytest.mark.perf_budget(p95=100)
def test_many(i):
    pass
"""


def test_xdist_runs_all_runs_of_a_test_on_one_worker(pt: pytest.Pytester) -> None:
    pt.makepyfile(test_a=XDIST_SUITE)
    result = pt.runpytest_subprocess("-n", "2", "--perf-runs=3", "--perf-report=r.json")
    result.assert_outcomes(passed=8)
    for name in ("one", "two"):
        workers = (pt.path / f"{name}.txt").read_text().split()
        assert len(workers) == 6 and len(set(workers)) == 1 and workers[0].startswith("gw")
    tests = read_report(pt.path / "r.json")["tests"]
    assert len(tests) == 8
    runs = {t["nodeid"].split("::")[-1]: t["runs"]["runs"] for t in tests}
    assert runs["test_one"] == 6 and runs["test_many[0]"] == 3


def test_last_failed_reruns_only_the_failed_repeated_test(
    pt: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pt.makepyfile(test_a=FIXTURES + """
import os

@pytest.mark.perf_runs(3)
def test_flips(fn):
    assert not (os.environ.get("BREAK") and fn == 2)

@pytest.mark.perf_runs(3)
def test_other():
    log("other")
""")
    monkeypatch.setenv("BREAK", "1")
    pt.runpytest("-p", "cacheprovider").assert_outcomes(failed=1, passed=1)
    monkeypatch.delenv("BREAK")
    (pt.path / "log.txt").unlink()
    result = pt.runpytest("-p", "cacheprovider", "--lf")
    result.assert_outcomes(passed=1)
    assert _log(pt) == ["fn-up", "fn-down"] * 3  # test_other did not run


def test_beside_pytest_repeat(pt: pytest.Pytester) -> None:
    need("pytest_repeat")
    pt.makepyfile(test_a=FIXTURES + """
@pytest.mark.perf_runs(3)
def test_it(fn):
    pass
""")
    pt.runpytest("--count=2", "--perf-report=r.json").assert_outcomes(passed=2)
    tests = read_report(pt.path / "r.json")["tests"]
    assert [t["runs"]["runs"] for t in tests] == [3, 3]  # each copy is repeated
    assert _log(pt).count("fn-up") == 6


def test_beside_pytest_rerunfailures(pt: pytest.Pytester) -> None:
    need("pytest_rerunfailures")
    pt.makepyfile(test_a=FIXTURES + """
@pytest.mark.perf_runs(3)
@pytest.mark.flaky(reruns=2)
def test_repeated(fn):
    assert fn != 2

@pytest.mark.flaky(reruns=2)
@pytest.mark.perf_budget(p95=100)
def test_once(perf_record):
    pass
""")
    result = pt.runpytest("--perf-report=r.json", "-p", "no:randomly")
    # perf_runs owns the protocol of its test: its failing run fails it, not retried
    result.assert_outcomes(failed=1, passed=1)
    assert _log(pt).count("fn-up") == 2
