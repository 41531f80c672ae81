"""pytest entry point (``pytest11`` name ``agentperf``): options, markers, wiring.

Switch the whole plugin off with ``-p no:agentperf``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..budgets import BudgetError, describe_keys, describe_scopes, parse_budget_items
from ..measurement.memory import MemoryMethod, best_memory_method, hwm_available
from ..report import ReportError, check_writable
from . import baseline, runs
from .paths import option_path
from .session import MARKER, SESSION_KEY, PerfSession, Settings

if TYPE_CHECKING:
    from ..llm.cost import ModelPrice

DEFAULT_REPORT = "perf-report.json"
_BARE = "\0bare"  # value of a bare --perf-report
MEMORY_CHOICES = ("auto", "faults", "hwm", "sample", "tracemalloc", "off")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("agentperf", "performance budgets (pytest-agentperf)")
    group.addoption(
        "--perf-report", action="store", nargs="?", const=_BARE, default=None, metavar="PATH",
        help=f"write the JSON performance report to PATH (bare: {DEFAULT_REPORT} in the "
        "rootdir). Write --perf-report=PATH when a test path follows.",
    )
    group.addoption(
        "--perf-html", action="store", default=None, metavar="PATH",
        help="also write a self-contained HTML report (charts, sortable table) to PATH",
    )
    group.addoption(
        "--perf-markdown", action="store", default=None, metavar="PATH",
        help="append a Markdown summary (violations and regressions first, the rest folded) "
        "to PATH; default: $GITHUB_STEP_SUMMARY when set (the GitHub Actions job summary).",
    )
    group.addoption(
        "--perf-memory", action="store", default=None, choices=MEMORY_CHOICES,
        help="how peak memory is measured: auto (default: faults on Linux with glibc, "
        "else sample), faults, hwm (resets the process's peak RSS), sample, "
        "tracemalloc (Python heap, slow) or off.",
    )
    group.addoption(
        "--perf-cprofile", action="store_true", default=False,
        help="run cProfile inside profiler.profile_operation() blocks "
        "(get_profile_stats() then includes the table).",
    )
    group.addoption(
        "--perf-runs", action="store", type=runs.parse_runs_option, default=None, metavar="N",
        help="run every measured test (perf_budget marker or the plugin's fixtures) N times "
        "and judge its budget on the pooled samples; @pytest.mark.perf_runs wins",
    )
    group.addoption(
        "--perf-disable", action="store_true", default=False,
        help="measure, enforce and write nothing; markers and fixtures stay registered and "
        "the fixtures keep working (unlike -p no:agentperf, --strict-markers suites still run).",
    )
    group.addoption(
        "--perf-skip", action="store_true", default=False,
        help=f"skip the tests that carry a {MARKER} marker.",
    )
    group.addoption(
        "--perf-only", action="store_true", default=False,
        help=f"run only the tests that carry a {MARKER} marker (the rest are deselected).",
    )
    baseline.addoption(group, parser)
    parser.addini("perf_report", "write the JSON performance report to this path "
                  "(relative to the rootdir); --perf-report overrides", default="")
    parser.addini("perf_runs", "default number of runs of every measured test, as "
                  "--perf-runs (which overrides it)", default="")
    parser.addini("perf_memory", "peak memory method, as --perf-memory", default="auto")
    parser.addini(
        "perf_llm_prices",
        "LLM prices for the cost_usd budget, one model a line: MODEL INPUT_USD_PER_MTOK "
        "OUTPUT_USD_PER_MTOK [CACHED_INPUT_USD_PER_MTOK]; a line 'auto' prices the other "
        "models from the genai-prices dataset (pip install 'pytest-agentperf[prices]')",
        type="linelist", default=[],
    )
    parser.addini(
        "perf_budget",
        "default budget of every measured test, as key=value words (a marker overrides "
        f"per key). Keys: {describe_keys()}",
        type="args", default=[],
    )


def _report_path(config: pytest.Config) -> Path | None:
    value = config.getoption("perf_report")
    if value is None:
        ini = str(config.getini("perf_report")).strip()
        if not ini:
            return None
        return option_path(ini, config.rootpath, "perf_report ini option")
    if value == _BARE:
        return config.rootpath / DEFAULT_REPORT
    return option_path(value, config.invocation_params.dir, "--perf-report")


def _markdown_path(config: pytest.Config) -> Path | None:
    value = config.getoption("perf_markdown")
    if value is not None:
        return option_path(value, config.invocation_params.dir, "--perf-markdown")
    summary = os.environ.get("GITHUB_STEP_SUMMARY", "").strip()
    return Path(summary) if summary else None


def _default_runs(config: pytest.Config) -> int:
    value = config.getoption("perf_runs")
    if value is not None:
        return int(value)
    ini = str(config.getini("perf_runs")).strip()
    return runs.parse_runs_option(ini, "perf_runs ini option") if ini else 1


def _memory_method(config: pytest.Config) -> MemoryMethod:
    value = config.getoption("perf_memory") or str(config.getini("perf_memory")).strip()
    if value not in MEMORY_CHOICES:
        raise pytest.UsageError(
            f"perf_memory ini option: {value!r} is not one of {', '.join(MEMORY_CHOICES)}"
        )
    if value == "auto":
        return best_memory_method()
    if value == "hwm" and not hwm_available():
        raise pytest.UsageError(
            "--perf-memory=hwm: this system does not let the process reset its peak RSS "
            "(/proc/self/clear_refs); use auto or sample"
        )
    if value == "faults" and not sys.platform.startswith("linux"):
        raise pytest.UsageError(
            "--perf-memory=faults: needs Linux (/proc/self); use auto or sample"
        )
    return value  # type: ignore[return-value]


def _llm_prices(config: pytest.Config) -> tuple[dict[str, ModelPrice], Any]:
    """The user's price table and, for ``auto``, the pricer over genai-prices."""
    lines = config.getini("perf_llm_prices")
    if not lines:
        return {}, None
    from ..llm import parse_price_table

    raw: dict[str, dict[str, str]] = {}
    auto = False
    for line in lines:
        words = str(line).split()
        if not words:
            continue
        if words == ["auto"]:
            auto = True
            continue
        if len(words) not in (3, 4):
            raise pytest.UsageError(
                f"perf_llm_prices ini option: {line!r} should be MODEL INPUT_PER_MTOK "
                "OUTPUT_PER_MTOK [CACHED_INPUT_PER_MTOK] (USD per million tokens)"
            )
        keys = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok")
        raw[words[0]] = dict(zip(keys, words[1:], strict=False))
    try:
        table = dict(parse_price_table(raw))
    except ValueError as exc:
        raise pytest.UsageError(f"perf_llm_prices ini option: {exc}") from None
    if not auto:
        return table, None
    from ..llm.prices import AutoPricer, PricesUnavailable

    try:
        return table, AutoPricer(table)
    except PricesUnavailable as exc:
        raise pytest.UsageError(f"perf_llm_prices ini option: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    baseline.add_marker(config)
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**limits, scopes=None): performance budget of the test; fails the test "
        f"when a limit is broken. Keys: {describe_keys()}. Budgets on a part of the test: "
        f"scopes={{'KIND:PATTERN': {{key: limit}}}} with fnmatch patterns, kinds and keys "
        f"{describe_scopes()}",
    )
    config.addinivalue_line("markers", runs.MARKER_HELP)
    if config.getoption("perf_skip") and config.getoption("perf_only"):
        raise pytest.UsageError("--perf-skip and --perf-only exclude each other")
    if config.getoption("perf_disable"):
        # not registered as a plugin: nothing is measured, enforced or written
        config.stash[SESSION_KEY] = PerfSession(
            config, Settings(report_path=None, memory_method="off", cprofile=False),
            disabled=True,
        )
        _register_fixtures(config)
        return
    try:
        default_budget = parse_budget_items(config.getini("perf_budget"), "perf_budget ini option")
    except BudgetError as exc:
        raise pytest.UsageError(str(exc)) from None
    is_worker = hasattr(config, "workerinput")
    report_path = None if is_worker else _report_path(config)
    html_path = None
    if not is_worker and config.getoption("perf_html"):
        html_path = option_path(str(config.getoption("perf_html")),
                                config.invocation_params.dir, "--perf-html")
    markdown_path = None if is_worker else _markdown_path(config)
    for option, path in (("--perf-report", report_path), ("--perf-html", html_path),
                         ("--perf-markdown", markdown_path)):
        if path is not None:
            try:
                check_writable(path)
            except ReportError as exc:
                raise pytest.UsageError(f"{option}: {exc}") from None
    if (report_path is not None and html_path is not None
            and os.path.realpath(report_path) == os.path.realpath(html_path)):
        raise pytest.UsageError(
            f"--perf-report and --perf-html are the same file ({report_path}): the HTML "
            "would overwrite the JSON report; give them different paths")
    prices, pricer = _llm_prices(config)
    settings = Settings(
        report_path=report_path,
        html_path=html_path,
        markdown_path=markdown_path,
        memory_method=_memory_method(config),
        cprofile=bool(config.getoption("perf_cprofile")),
        default_budget=default_budget,
        llm_prices=prices,
        llm_pricer=pricer,
    )
    session = PerfSession(config, settings)
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "agentperf-session")
    config.pluginmanager.register(runs.RunsPlugin(config, _default_runs(config)),
                                  "agentperf-runs")
    from .samplers import SamplersPlugin

    config.pluginmanager.register(SamplersPlugin(config), "agentperf-samplers")
    baseline.register(config)
    _register_fixtures(config)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(session), "agentperf-xdist")


def _register_fixtures(config: pytest.Config) -> None:
    from . import async_fixtures, fixtures

    config.pluginmanager.register(fixtures, "agentperf-fixtures")
    async_fixtures.register(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("perf_skip"):
        skip = pytest.mark.skip(reason=f"{MARKER} test skipped by --perf-skip")
        for item in items:
            if item.get_closest_marker(MARKER) is not None:
                item.add_marker(skip)
    elif config.getoption("perf_only"):
        keep = [item for item in items if item.get_closest_marker(MARKER) is not None]
        if len(keep) < len(items):
            kept = set(keep)
            config.hook.pytest_deselected(items=[i for i in items if i not in kept])
            items[:] = keep


class XdistHooks:
    """Hooks that exist only when pytest-xdist is installed."""

    def __init__(self, session: PerfSession) -> None:
        self.session = session

    def pytest_configure_node(self, node: Any) -> None:  # xdist ships no types
        """Hand the environment block (git commit, machine) to the worker: computed once."""
        from .. import __version__
        from .environment import WORKERINPUT_KEY, session_environment

        node.workerinput[WORKERINPUT_KEY] = session_environment(node.config, __version__)

    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport) -> None:
        self.session.incomplete_reason = f"worker crashed while running {crashitem}"
        self.session.add_crashed(crashitem)


def pytest_report_header(config: pytest.Config) -> str | None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None or session.settings.report_path is None:
        return None
    s = session.settings
    return f"agentperf: report {s.report_path}, memory {s.memory_method}"
