"""``pytest-agentperf ab BASE_REF``: base against head on one machine, interleaved.

The base revision is checked out into a temporary ``git worktree``; the selected
tests then run alternately on base and head (A B, B A, A B, … — each round
swaps the order, so a slow drift of the machine hits both sides alike), in the
same interpreter, each side's source first on the import path.  Each side's
reports are merged (:mod:`.merge`: samples pooled per test and per operation)
and compared with the same gate as ``--perf-compare`` (:mod:`.compare`:
tolerance and Mann-Whitney, inconclusive with too few samples).

Head is the working tree as it is, uncommitted changes included, so
``ab HEAD`` measures what the working tree changes.  The worktree is removed
afterwards, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .compare import ReportComparison, Tolerances, compare_reports, format_comparison
from .merge import merge_reports
from .report import ReportError, atomic_write_text, load_report, write_report

__all__ = ["AbError", "AbResult", "add_ab_parser", "comparison_dict", "rounds_order", "run_ab",
           "run_ab_command"]

DEFAULT_ROUNDS = 10  # the round test needs >= 5 a side; 10 finds a 20 % shift at perf_runs(5)
DEFAULT_OUTPUT = "agentperf-ab"


class AbError(Exception):
    """A usage problem (bad ref, not a git repository, pytest could not run)."""


def rounds_order(rounds: int) -> list[tuple[int, str]]:
    """``(round, side)`` in run order: A B, B A, A B, … (``base``/``head``)."""
    order: list[tuple[int, str]] = []
    for r in range(rounds):
        sides = ("base", "head") if r % 2 == 0 else ("head", "base")
        order.extend((r, side) for side in sides)
    return order


def _git(args: Sequence[str], cwd: Path) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                             check=False, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise AbError(f"git {' '.join(args)}: {exc}") from None
    if out.returncode != 0:
        raise AbError(f"git {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout.strip()


def _import_path(root: Path) -> str:
    """The side's source directories, first on ``PYTHONPATH``."""
    parts = [str(root)]
    if (root / "src").is_dir():
        parts.insert(0, str(root / "src"))
    inherited = os.environ.get("PYTHONPATH")
    if inherited:
        parts.append(inherited)
    return os.pathsep.join(parts)


@dataclass
class AbResult:
    comparison: ReportComparison
    base_report: dict[str, Any]
    head_report: dict[str, Any]
    output: Path

    @property
    def regressed(self) -> bool:
        return self.comparison.has_regressions


Runner = Callable[[Sequence[str], Path, dict[str, str], Path], int]


def _run_pytest(argv: Sequence[str], cwd: Path, env: dict[str, str], log: Path) -> int:
    """Run pytest with its output in ``log``."""
    with log.open("wb") as out:
        return subprocess.run(list(argv), cwd=cwd, env=env, stdout=out,
                              stderr=subprocess.STDOUT, check=False).returncode


def comparison_dict(comparison: ReportComparison) -> dict[str, Any]:
    """The JSON form of a report comparison."""
    return {
        "regression": comparison.has_regressions,
        "counts": comparison.counts(),
        "tolerances": comparison.tolerances.as_dict(),
        "environment_warnings": list(comparison.environment_warnings),
        "tests": [{"nodeid": t.nodeid, **t.as_dict()} for t in comparison.tests],
    }


def run_ab(
    base_ref: str,
    *,
    rounds: int = DEFAULT_ROUNDS,
    pytest_args: Sequence[str] = (),
    output: Path,
    tolerances: Tolerances | None = None,
    cwd: Path | None = None,
    runner: Runner = _run_pytest,
    log: Callable[[str], None] = print,
) -> AbResult:
    """Run the comparison; raises :class:`AbError` on a usage problem."""
    if rounds < 1:
        raise AbError(f"--rounds {rounds}: must be >= 1")
    here = (cwd or Path.cwd()).resolve()
    top = Path(_git(["rev-parse", "--show-toplevel"], here)).resolve()
    rel = here.relative_to(top)
    try:
        commit = _git(["rev-parse", "--verify", "--quiet", f"{base_ref}^{{commit}}"], top)
    except AbError:
        raise AbError(f"BASE_REF {base_ref!r} is not a commit of the repository {top}") from None
    output.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="agentperf-ab-"))
    base_root = tmp / "base"
    added = False
    try:
        _git(["worktree", "add", "--detach", "--quiet", str(base_root), commit], top)
        added = True
        roots = {"base": base_root, "head": top}
        reports: dict[str, list[dict[str, Any]]] = {"base": [], "head": []}
        for r, side in rounds_order(rounds):
            path = tmp / f"{side}-{r}.json"
            argv = [sys.executable, "-m", "pytest", *pytest_args, f"--perf-report={path}"]
            env = dict(os.environ, PYTHONPATH=_import_path(roots[side]),
                       PYTHONDONTWRITEBYTECODE="1")
            what = commit[:10] if side == "base" else "working tree"
            log(f"ab: round {r + 1}/{rounds} {side} ({what})")
            pytest_log = output / f"pytest-{side}-{r + 1}.log"
            status = runner(argv, roots[side] / rel, env, pytest_log)
            if status not in (0, 1):
                tail = pytest_log.read_text("utf-8", "replace").splitlines()[-15:]
                raise AbError(f"pytest on {side} ({what}) exited with status {status} "
                              f"(arguments: {' '.join(pytest_args) or 'none'}); its output "
                              f"ends:\n" + "\n".join(tail))
            try:
                reports[side].append(load_report(path))
            except ReportError as exc:
                raise AbError(f"{side}, round {r + 1}: {exc}") from None
    finally:
        if added:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_root)], cwd=top,
                           capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=top, capture_output=True, check=False)
    names = [f"round {i + 1}" for i in range(rounds)]
    base = merge_reports(reports["base"], names)
    head = merge_reports(reports["head"], names)
    comparison = compare_reports(base, head, tolerances)
    write_report(output / "base.json", base)
    write_report(output / "head.json", head)
    data = {"base_ref": base_ref, "base_commit": commit, "head": "working tree",
            "rounds": rounds, "pytest_args": list(pytest_args), **comparison_dict(comparison)}
    atomic_write_text(output / "comparison.json", json.dumps(data, default=str) + "\n")
    return AbResult(comparison, base, head, output)


def add_ab_parser(subparsers: Any) -> None:
    from .cli import _positive_int, _tolerances

    p = subparsers.add_parser(
        "ab", help="run the tests on BASE_REF and on the working tree, interleaved, and compare",
        usage="%(prog)s BASE_REF [--rounds K] [-o DIR] [--tolerance SPEC] [-- PYTEST_ARGS]",
        description="Check BASE_REF out into a temporary git worktree, run the selected tests "
        "alternately on base and head (A B, B A, ...) for --rounds rounds with this Python, "
        "pool each side's samples and compare them with the regression gate. Arguments after "
        "-- go to pytest. Exit 1 on a regression, 2 on a usage error.")
    p.add_argument("base_ref", metavar="BASE_REF", help="git revision to compare against")
    p.add_argument("--rounds", type=_positive_int, default=DEFAULT_ROUNDS, metavar="K",
                   help=f"base/head pairs to run (default {DEFAULT_ROUNDS})")
    p.add_argument("--output", "-o", type=Path, default=Path(DEFAULT_OUTPUT), metavar="DIR",
                   help="where base.json, head.json and comparison.json go "
                   f"(default ./{DEFAULT_OUTPUT})")
    p.add_argument("--tolerance", type=_tolerances, default=None, metavar="SPEC",
                   help="as --perf-tolerance, e.g. latency=25%%,tokens=5%%")
    p.add_argument("--all", action="store_true", help="list unchanged tests too")
    p.set_defaults(func=run_ab_command, passthrough=[])


def run_ab_command(args: argparse.Namespace) -> int:
    from .cli import CliError

    pytest_args = list(args.passthrough)  # the words after --
    tolerances = Tolerances().override(args.tolerance) if args.tolerance else None
    try:
        result = run_ab(args.base_ref, rounds=args.rounds, pytest_args=pytest_args,
                        output=args.output, tolerances=tolerances)
    except AbError as exc:
        raise CliError(str(exc)) from None
    except KeyboardInterrupt:
        print("ab: interrupted; the base worktree was removed", file=sys.stderr)
        return 130
    print(format_comparison(result.comparison, show_all=args.all))
    print(f"ab: reports in {result.output}/ (base.json, head.json, comparison.json)")
    return 1 if result.regressed else 0
