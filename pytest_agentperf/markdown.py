"""Markdown for CI: the GitHub job summary and the body of a PR comment.

Problems first — budget violations, then regressions (test, metric, measured vs limit or
before → after, p-value) — then the rest folded in ``<details>``. Output is kept under a
byte limit (GitHub's job summary takes 1 MiB per step) by cutting the tail with a note,
whatever the number of tests.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .budgets import violation_label
from .units import fmt_change, fmt_p, fmt_value

__all__ = ["GITHUB_SUMMARY_LIMIT", "comparison_dict", "comparison_markdown", "escape",
           "job_summary"]

#: GitHub rejects a step summary above 1 MiB; stay a little below it
GITHUB_SUMMARY_LIMIT = 1024 * 1024 - 16 * 1024
_MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|#~"})


def escape(text: object) -> str:
    """``text`` safe inside a table cell: one line, Markdown and HTML characters escaped."""
    one_line = " ".join(str(text).split())
    return html.escape(one_line, quote=False).translate(_MARKDOWN_SPECIAL)


class _Writer:
    """Accumulates lines while they fit in ``limit`` bytes (reserving room for a note)."""

    NOTE_ROOM = 512

    def __init__(self, limit: int) -> None:
        self.lines: list[str] = []
        self.size = 0
        self.limit = limit
        self.full = False

    def add(self, line: str, closing: bool = False) -> bool:
        """Add ``line`` if it fits; ``closing`` lines (notes, closing tags) may use the
        reserved room."""
        size = len(line.encode("utf-8")) + 1
        reserve = 0 if closing else self.NOTE_ROOM
        if (self.full and not closing) or self.size + size > self.limit - reserve:
            self.full = True
            return False
        self.lines.append(line)
        self.size += size
        return True

    def table(self, header: Sequence[str], rows: Iterable[Sequence[str]], what: str,
              total: int) -> int:
        """Add a table; returns how many rows fit. Adds the cut note when some did not."""
        if not self.add("| " + " | ".join(header) + " |"):
            return 0
        self.add("|" + "|".join(" --- " for _ in header) + "|")
        shown = 0
        for row in rows:
            if not self.add("| " + " | ".join(row) + " |"):
                break
            shown += 1
        if shown < total:  # the note fits in the room kept for it
            self.add("", closing=True)
            self.add(f"*… {total - shown} more {what} not shown: the summary is cut to stay "
                     f"under {self.limit // 1024} KiB; the JSON report has them all.*",
                     closing=True)
            self.full = True
        return shown

    def section(self, title: str, header: Sequence[str], rows: Sequence[Sequence[str]],
                what: str) -> None:
        """A ``### title`` and its table, when the title still fits."""
        if self.add("") and self.add(f"### {title}") and self.add(""):
            self.table(header, rows, what, len(rows))

    def folded(self, summary: str, header: Sequence[str], rows: Iterable[Sequence[str]],
               what: str, total: int) -> None:
        """A table inside ``<details>``, when the opening still fits (then it is closed)."""
        if self.add("") and self.add(f"<details><summary>{summary}</summary>"):
            self.add("", closing=True)
            self.table(header, rows, what, total)
            self.add("", closing=True)
            self.add("</details>", closing=True)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _violation_rows(tests: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for t in tests:
        for v in t.get("violations") or []:
            unit = str(v.get("unit") or "")
            value = v.get("value")
            measured = "unverifiable" if value is None else fmt_value(value, unit)
            n = v.get("count")
            rows.append([escape(t.get("nodeid", "?")), escape(violation_label(v)),
                         escape(measured), escape(fmt_value(v.get("limit"), unit)),
                         "-" if n is None else str(n)])
    return rows


def _regression_row(nodeid: str, m: Mapping[str, Any]) -> list[str]:
    evidence = m.get("evidence") or {}
    p = evidence.get("p_value")
    unit = str(m.get("unit") or "")
    return [escape(nodeid), escape(m.get("metric", "?")),
            escape(f"{fmt_value(m.get('baseline'), unit)} → {fmt_value(m.get('current'), unit)}"),
            escape(fmt_change(m.get("change"))),
            "-" if p is None else escape(fmt_p(p))]


def _regression_rows(tests: Sequence[Mapping[str, Any]], verdict: str) -> list[list[str]]:
    rows = []
    for t in tests:
        block = t.get("baseline") or {}
        for m in block.get("metrics") or []:
            if m.get("verdict") == verdict:
                rows.append(_regression_row(str(t.get("nodeid", "?")), m))
    return rows


def _latency(t: Mapping[str, Any], key: str) -> str:
    return escape(fmt_value((t.get("latency") or {}).get(key), "s"))


def _test_row(t: Mapping[str, Any]) -> list[str]:
    memory = t.get("memory") or {}
    tokens = (t.get("tokens") or {}).get("total")
    return [escape(t.get("nodeid", "?")), escape(t.get("outcome", "?")), _latency(t, "p50"),
            _latency(t, "p95"), str((t.get("latency") or {}).get("count", "-")),
            fmt_value(memory.get("peak_mb"), "MiB"),
            "-" if not tokens else str(tokens)]


REGRESSION_HEADER = ("Test", "Metric", "Before → after", "Change", "p-value")


def job_summary(report: Mapping[str, Any], limit: int = GITHUB_SUMMARY_LIMIT) -> str:
    """The Markdown job summary of a report, at most ``limit`` bytes of UTF-8."""
    tests: list[Mapping[str, Any]] = list(report.get("tests") or [])
    s = report.get("summary") or {}
    w = _Writer(limit)
    w.add(f"## pytest-agentperf: {len(tests)} measured tests")
    w.add("")
    totals = ", ".join(f"{s.get(k, 0)} {k}" for k in ("passed", "failed", "errors", "skipped")
                       if s.get(k) or k == "passed")
    violations = _violation_rows(tests)
    regressions = _regression_rows(tests, "regression")
    w.add(f"{totals} · **{s.get('budget_violations', 0)}** over budget · "
          f"**{len({r[0] for r in regressions})}** regressed"
          + ("" if report.get("complete", True) else
             f" · ⚠️ incomplete run: {escape(report.get('incomplete_reason') or '?')}"))
    baseline = report.get("baseline") or {}
    if baseline.get("source"):
        w.add("")
        w.add(f"Compared with {escape(baseline['source'])}.")
    if violations:
        w.section(f"❌ Budget violations ({len(violations)})",
                  ("Test", "Metric", "Measured", "Limit", "n"), violations, "violations")
    if regressions:
        w.section(f"📈 Regressions ({len(regressions)})", REGRESSION_HEADER, regressions,
                  "regressions")
    if tests:
        w.folded(f"All {len(tests)} measured tests",
                 ("Test", "Outcome", "p50", "p95", "n", "Peak memory", "Tokens"),
                 (_test_row(t) for t in tests), "tests", len(tests))
    return w.text()


def comparison_markdown(comparison: Any, base: str, new: str,
                        limit: int = GITHUB_SUMMARY_LIMIT) -> str:
    """A PR-comment body for a :class:`~pytest_agentperf.compare.ReportComparison`."""
    counts = comparison.counts()
    w = _Writer(limit)
    w.add(f"## pytest-agentperf: {escape(new)} vs {escape(base)}")
    w.add("")
    w.add(" · ".join(f"**{counts[k]}** {k}" for k in counts))
    for warning in comparison.environment_warnings:
        w.add("")
        w.add(f"> ⚠️ {escape(warning)}")
    sections = (("regression", "📈 Regressions"), ("improvement", "📉 Improvements"),
                ("inconclusive", "❔ Inconclusive"))
    for verdict, title in sections:
        rows = [_regression_row(t.nodeid, m.as_dict()) for t in comparison.tests
                for m in t.metrics if m.verdict == verdict]
        if not rows:
            continue
        if verdict == "regression":
            w.section(f"{title} ({len(rows)})", REGRESSION_HEADER, rows, "rows")
        else:
            w.folded(f"{title} ({len(rows)})", REGRESSION_HEADER, rows, "rows", len(rows))
    others = [t for t in comparison.tests if t.status != "compared"]
    if others:
        w.folded(f"New or missing tests ({len(others)})", ("Test", "Status"),
                 ([escape(t.nodeid), t.status] for t in others), "tests", len(others))
    return w.text()


#: GitHub's limit for one step's summary file
GITHUB_FILE_LIMIT = 1024 * 1024


def append_summary(path: Any, report: Mapping[str, Any]) -> None:
    """Append the job summary to ``path``, keeping the whole file under 1 MiB."""
    from pathlib import Path

    target = Path(path)
    try:
        existing = target.stat().st_size
    except FileNotFoundError:
        existing = 0
    room = min(GITHUB_SUMMARY_LIMIT, GITHUB_FILE_LIMIT - existing - 16 * 1024)
    if room < 2048:
        return  # nothing useful fits; the file is someone else's to fill
    text = job_summary(report, limit=room)
    with target.open("a", encoding="utf-8") as f:
        f.write(("\n" if existing else "") + text)


def comparison_dict(comparison: Any, base: str, new: str) -> dict[str, Any]:
    """A :class:`~pytest_agentperf.compare.ReportComparison` as plain JSON data."""
    return {
        "base": base,
        "new": new,
        "regressed": comparison.has_regressions,
        "counts": comparison.counts(),
        "environment_warnings": list(comparison.environment_warnings),
        "tests": [{"nodeid": t.nodeid, **t.as_dict()} for t in comparison.tests],
    }
