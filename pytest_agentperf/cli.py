"""The ``pytest-agentperf`` command line (also ``python -m pytest_agentperf``).

Subcommands:

* ``compare BASE NEW`` — table of changes; exit 1 when a test regressed.
  ``BASE`` may be ``history`` (the recent runs on this machine, ``--db``).
* ``merge A B … -o OUT`` — one report from CI shards or separate runs.
* ``history [NODEID]`` — recent runs, or one test's trend; ``history export`` /
  ``history import FILE`` move runs as JSON lines between stores.
* ``ab BASE_REF [--rounds K] [-- PYTEST_ARGS]`` — base vs working tree, interleaved
  on this machine (:mod:`.ab`); words after ``--`` go to pytest.

Exit codes: 0 fine, 1 regression (``compare``), 2 bad arguments or an
unreadable file (one line naming it).

Adding a subcommand: write ``add_<name>_parser(subparsers)`` that calls
``subparsers.add_parser(...)`` and ``set_defaults(func=run)`` with
``run(args) -> int``, then add it to :data:`SUBCOMMANDS` (one line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .ab import add_ab_parser
from .compare import (
    Tolerances,
    compare_reports,
    format_comparison,
    parse_tolerance_spec,
)
from .export import add_export_parser
from .history import (
    DEFAULT_HISTORY_PATH,
    HistoryError,
    HistoryStore,
    display_target,
    fingerprint,
    is_url,
    open_history,
)
from .merge import merge_reports
from .report import ReportError, load_report, write_report
from .units import fmt_change, fmt_value

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

PROG = "pytest-agentperf"
Subparsers = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CliError(Exception):
    """A one-line error for the user (exit status 2)."""


def _tolerances(text: str) -> dict[str, float]:
    try:
        return parse_tolerance_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _open_history(target: str, *, readonly: bool = True) -> HistoryStore:
    """Open ``--db`` (a path or a postgresql:// URL); read-only unless told otherwise."""
    if readonly and not is_url(target) and not Path(target).is_file():
        raise CliError(f"history database {target} does not exist "
                       "(run pytest with --perf-history first)")
    return open_history(target, readonly=readonly)


_DB_HELP = (f"history database: a SQLite file or a postgresql://user@host:port/db URL "
            f"(password from PGPASSWORD or ~/.pgpass; default {DEFAULT_HISTORY_PATH})")


# -- compare ---------------------------------------------------------------------------
def add_compare_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare", help="compare two reports; exit 1 on a regression",
        description="Compare NEW with BASE test by test and metric by metric. A regression "
        "is a change beyond the tolerance and, for latency, statistically significant "
        "(one-sided Mann-Whitney U). Exit 1 when any test regressed.")
    p.add_argument("base", metavar="BASE",
                   help="baseline report, or 'history': per test the runs since its last "
                   "change point in the history database (see --db)")
    p.add_argument("new", metavar="NEW", help="the report to check")
    p.add_argument("--tolerance", type=_tolerances, default={}, metavar="SPEC",
                   help="e.g. latency=10%%,memory=10%%,tokens=5%%,memory_floor=5")
    p.add_argument("--db", default=str(DEFAULT_HISTORY_PATH), metavar="PATH|URL",
                   help=_DB_HELP + "; read for BASE=history")
    p.add_argument("--group", default=None, metavar="NAME",
                   help="with BASE=history: the machine group (--perf-history-group) to "
                   "compare with (default: NEW's machine fingerprint)")
    p.add_argument("--all", action="store_true", help="show unchanged metrics too")
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table",
                   help="table (default, for the terminal), markdown (a PR-comment body for "
                   "gh pr comment --body-file or a sticky-comment action) or json")
    p.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    new = load_report(args.new)
    if args.base == "history":
        from .history.changes import HistoryBaseline

        with _open_history(args.db) as history:
            fp = args.group or fingerprint(new.get("environment") or {})
            base = history.baseline_report(fp)
            if base is not None:  # as the plugin: each test's runs since its change point
                per_test = HistoryBaseline(history, fp)
                base["tests"] = [e for e in (per_test.entry(str(t.get("nodeid")))[0]
                                             for t in new.get("tests", [])
                                             if isinstance(t, dict)) if e is not None]
        if base is None:
            what = f"machine group {fp!r}" if args.group else f"machine fingerprint {fp}"
            raise CliError(f"history database {display_target(args.db)} has no complete run "
                           f"of {what}")
    else:
        base = load_report(args.base)
    try:
        tolerances = Tolerances().override(args.tolerance)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    comparison = compare_reports(base, new, tolerances)
    if args.format == "markdown":
        from .markdown import comparison_markdown

        print(comparison_markdown(comparison, str(args.base), str(args.new)), end="")
    elif args.format == "json":
        from .markdown import comparison_dict

        print(json.dumps(comparison_dict(comparison, str(args.base), str(args.new)),
                         indent=2))
    else:
        print(format_comparison(comparison, show_all=args.all))
    return 1 if comparison.has_regressions else 0


# -- merge -----------------------------------------------------------------------------
def add_merge_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "merge", help="merge reports (CI shards, repeated runs) into one",
        description="Merge reports into one. Distinct tests are collected; the same test in "
        "several inputs has its samples pooled and its summary recomputed ('exact': false "
        "when approximate). The result is complete only when every input is.")
    p.add_argument("inputs", nargs="+", metavar="REPORT", help="reports to merge")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                   help="where to write the merged report")
    p.set_defaults(func=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    reports = [load_report(path) for path in args.inputs]
    merged = merge_reports(reports, [str(p) for p in args.inputs])
    out: Path = args.output
    if out.is_dir() or not out.parent.is_dir():
        raise CliError(f"cannot write {out}: not a file path in an existing directory")
    try:
        write_report(out, merged)
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror or exc}") from None
    s = merged["summary"]
    print(f"merged {len(reports)} reports, {s['tests']} tests -> {out}"
          + ("" if merged["complete"] else " (incomplete: " + str(merged["incomplete_reason"])
             + ")"))
    for warning in merged["merge"]["environment_warnings"]:
        print(f"warning: {warning}")
    return 0


# -- history ---------------------------------------------------------------------------
def add_history_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "history", help="recent runs, or one test's trend, from the history database",
        description="Without NODEID: the recent runs. With NODEID (or a unique part of one): "
        "that test's figures run by run. 'history export [-o FILE]' writes every run as "
        "JSON lines; 'history import FILE' (or - for stdin) records them into --db, e.g. to "
        "move a SQLite history into PostgreSQL or keep it as a CI artifact.")
    p.add_argument("nodeid", nargs="?", metavar="NODEID|export|import",
                   help="test id (or a unique part), or export / import")
    p.add_argument("file", nargs="?", metavar="FILE", help="for import: the JSON-lines file")
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="for export: where to write (default: stdout)")
    p.add_argument("--db", default=str(DEFAULT_HISTORY_PATH), metavar="PATH|URL",
                   help=_DB_HELP)
    p.add_argument("--limit", type=_positive_int, default=20, metavar="N",
                   help="how many runs to show (default 20)")
    p.add_argument("--changes", action="store_true",
                   help="list the change points of every test (level shifts found by "
                   "E-divisive with a permutation test) that began in the last --recent "
                   "runs, worst first")
    p.add_argument("--recent", type=_positive_int, default=10, metavar="N",
                   help="with --changes: how recent a change point must be (default 10 runs)")
    p.add_argument("--group", default=None, metavar="NAME",
                   help="machine group (--perf-history-group or fingerprint) whose runs to "
                   "search for change points (default: the test's latest run's)")
    p.set_defaults(func=run_history)


def _table(header: Sequence[str], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])


def run_history(args: argparse.Namespace) -> int:
    if args.nodeid == "export":
        return _export(args)
    if args.nodeid == "import":
        return _import(args)
    if args.file is not None:
        raise CliError(f"unexpected argument {args.file!r} (FILE is for history import)")
    with _open_history(args.db) as history:
        if args.changes:
            return _print_changes(history, args)
        if args.nodeid is None:
            runs = history.runs(limit=args.limit)
            if not runs:
                print(f"no runs in {display_target(args.db)}")
                return 0
            rows: list[tuple[str, ...]] = [
                (str(r.id), r.created, (r.git_commit or "-")[:10], r.git_branch or "-",
                 r.fingerprint, "yes" if r.complete else "no", str(r.tests), str(r.failed))
                    for r in runs]
            print(_table(("run", "created (UTC)", "commit", "branch", "machine", "complete",
                          "tests", "failed"), rows))
            return 0
        nodeid = _resolve_nodeid(history.nodeids(), args.nodeid, display_target(args.db))
        from .history.changes import DEFAULT_WINDOW, latest_group, test_changes

        group = args.group or latest_group(history, nodeid)
        points, changes = test_changes(history, nodeid, group,
                                       window=max(args.limit, DEFAULT_WINDOW))
        points = points[-args.limit:]
        marks: dict[int, list[str]] = {}
        for c in changes:
            marks.setdefault(c.run_id, []).append(
                f"{c.metric.split('.')[-1]} {fmt_change(c.change)}")
        first = next((p.p50 for p in points if p.p50), None)
        trend_rows: list[tuple[str, ...]] = [
            (str(p.run_id), p.created, (p.git_commit or "-")[:10], p.outcome or "-",
             fmt_value(p.p50, "s"), fmt_value(p.p95, "s"), fmt_value(p.mean, "s"),
                 "-" if p.count is None else str(p.count), fmt_value(p.peak_mb, "MiB"),
                 "-" if p.tokens is None else str(p.tokens),
                 fmt_change(p.p50 / first - 1 if first and p.p50 else None),
                 ("<- change: " + ", ".join(marks[p.run_id])) if p.run_id in marks else "")
                for p in points]
        print(f"{nodeid} (machine group {group})")
        print(_table(("run", "created (UTC)", "commit", "outcome", "p50", "p95", "mean",
                      "n", "peak memory", "tokens", "p50 vs first", ""), trend_rows))
        if changes:
            print("\nchange points (E-divisive, permutation test):")
            for c in changes:
                print(f"  run {c.run_id} ({(c.git_commit or '-')[:10]}, {c.created}): "
                      f"{_describe_change(c)}")
        else:
            print("\nno change points")
    return 0




def _describe_change(c: Any) -> str:
    return (f"{c.metric} {fmt_value(c.before, c.unit)} -> {fmt_value(c.after, c.unit)} "
            f"({fmt_change(c.change)}, p={c.p_value:.3g})")


def _print_changes(history: HistoryStore, args: argparse.Namespace) -> int:
    from .history.changes import DEFAULT_WINDOW, recent_changes

    changes = recent_changes(history, args.group, window=max(args.limit, DEFAULT_WINDOW),
                             recent=args.recent)
    if args.nodeid is not None:
        changes = [c for c in changes if args.nodeid in c.nodeid]
    if not changes:
        print(f"no change points in the last {args.recent} runs of any test")
        return 0
    rows = [(c.nodeid, c.metric, str(c.run_id), (c.git_commit or "-")[:10],
             fmt_value(c.before, c.unit), fmt_value(c.after, c.unit), fmt_change(c.change),
             f"{c.p_value:.3g}", str(c.runs_ago)) for c in changes]
    print(_table(("test", "metric", "run", "commit", "before", "after", "change", "p",
                  "runs ago"), rows))
    return 0


def _export(args: argparse.Namespace) -> int:
    with _open_history(args.db) as history:
        if args.output is None:
            n = history.export_to(sys.stdout)
        else:
            out = Path(args.output)
            tmp = out.with_name(out.name + ".tmp")
            try:
                with open(tmp, "w", encoding="utf-8") as f:
                    n = history.export_to(f)
                tmp.replace(out)
            except OSError as exc:
                raise CliError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"exported {n} runs from {display_target(args.db)}", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace) -> int:
    if args.file is None:
        raise CliError("history import needs FILE (JSON lines from history export, or -)")
    with _open_history(args.db, readonly=False) as history:
        if args.file == "-":
            n = history.import_lines(sys.stdin, "stdin")
        else:
            try:
                with open(args.file, encoding="utf-8") as f:
                    n = history.import_lines(f, args.file)
            except OSError as exc:
                raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    print(f"imported {n} runs into {display_target(args.db)}")
    return 0


def _resolve_nodeid(known: list[str], wanted: str, db: str) -> str:
    if wanted in known:
        return wanted
    matches = [n for n in known if wanted in n]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CliError(f"no test matching {wanted!r} in history database {db}")
    raise CliError(f"{wanted!r} matches {len(matches)} tests in {db}: "
                   + ", ".join(matches[:5]) + (", …" if len(matches) > 5 else ""))


# -- html ------------------------------------------------------------------------------
def add_html_parser(subparsers: Any) -> None:
    """Add the ``html`` subcommand to an ``argparse`` subparsers object."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "html", help="render a JSON report as a self-contained HTML page",
        description="Render a pytest-agentperf JSON report as one self-contained HTML file "
        "(inline SVG charts, no network resources).")
    p.add_argument("report", help="the JSON report (written by pytest --perf-report)")
    p.add_argument("--db", default=None, metavar="PATH|URL",
                   help="draw each test's trend from this history database, a SQLite file "
                   "or a postgresql:// URL (written by pytest --perf-history)")
    p.add_argument("-o", "--output", default=None, metavar="OUT.html",
                   help="where to write the page (default: the report's path with .html)")
    p.set_defaults(func=run_html)


def run_html(args: argparse.Namespace) -> int:
    """The ``html`` subcommand: 0 on success; a bad report, database or output raises
    (:func:`main` turns it into one line and exit status 2)."""
    from .html import write_html

    report = load_report(args.report)
    out = Path(args.output) if args.output else Path(args.report).with_suffix(".html")
    history = None
    db_path = getattr(args, "db", None)
    if db_path is not None:
        with _open_history(db_path) as db:
            history = db.trends([str(t.get("nodeid")) for t in report["tests"]])
    try:
        write_html(out, report, history=history)
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote {out}")
    return 0


#: One ``add_<name>_parser(subparsers)`` per subcommand, in help order.
SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (
    add_compare_parser,
    add_merge_parser,
    add_history_parser,
    add_html_parser,
    add_export_parser,
    add_ab_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="pytest-agentperf reports: compare, merge, history, html.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (argparse exits 2 itself on bad arguments)."""
    words = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in words:  # the rest goes to pytest (ab)
        cut = words.index("--")
        words, passthrough = words[:cut], words[cut + 1:]
    parser = build_parser()
    args = parser.parse_args(words)
    if passthrough and not hasattr(args, "passthrough"):
        parser.error(f"{args.command} takes no arguments after --")
    if passthrough:
        args.passthrough = passthrough
    try:
        status: int = args.func(args)
    except (CliError, ReportError, HistoryError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except _INPUT_ERRORS as exc:
        # a file that passed the schema but still holds data no command can use: one line,
        # exit 2 (1 means "regression" to a CI script); PYTEST_AGENTPERF_TRACEBACK=1 shows more
        if os.environ.get("PYTEST_AGENTPERF_TRACEBACK"):
            raise
        print(f"{PROG}: error: {_diagnose(args, exc)}"
              .encode("utf-8", "backslashreplace").decode("utf-8"), file=sys.stderr)
        return 2
    return status


def _diagnose(args: argparse.Namespace, exc: BaseException) -> str:
    """Which input file (and field, by the report schema) made a command fail."""
    from .report import load_schema
    from .validate import first_error

    files = _input_files(args)
    for name in files:
        try:
            data = json.loads(Path(name).read_text("utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        problem = first_error(data, load_schema())
        if problem is not None:
            return f"report file {name}: {problem}"
    return (f"cannot use {', '.join(files) or 'the input'}: "
            f"{type(exc).__name__}: {exc!s:.200}")


#: what malformed input makes the commands raise
_INPUT_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError,
                 ZeroDivisionError, RecursionError, UnicodeError)


def _input_files(args: argparse.Namespace) -> list[str]:
    """The existing files named on the command line (for the error message)."""
    found: list[str] = []
    for value in vars(args).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, (str, Path)) and Path(item).is_file():
                found.append(str(item))
    return found
