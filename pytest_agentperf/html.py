"""A self-contained HTML page from a JSON report: summary, sortable table, SVG charts.

The page needs nothing but itself: charts are inline SVG drawn here, the CSS and
the little vanilla JavaScript (sorting, filtering, expanding) are inline, and a
Content-Security-Policy forbids every network fetch.  Every string that comes
from the report (test ids, parameters, messages, section contents) goes through
:func:`html.escape`.

Library layer: no pytest import.  The CLI pieces (:func:`add_html_parser`,
:func:`run_html`) serve ``pytest-agentperf html REPORT.json -o OUT.html``.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .budgets import BUDGET_KEYS, SCOPE_KEYS, measured_value, violation_label
from .report import ReportError, atomic_write_text, fix_surrogates, load_report
from .stats import summarize

__all__ = ["add_html_parser", "render_html", "run_html", "write_html"]

History = Mapping[str, Sequence[Mapping[str, Any]]]

#: latency budget keys drawn on the latency chart, with the summary key they limit
LATENCY_KEYS = ("p50", "p90", "p95", "p99", "mean", "max")
#: test-entry keys rendered by a dedicated part of the page
KNOWN_KEYS = frozenset({
    "nodeid", "outcome", "duration_s", "cpu_time_s", "budget", "latency", "memory", "tokens",
    "operations", "violations", "findings", "llm", "load", "baseline", "scopes",
})
#: a generic section longer than this (JSON characters) is cut
MAX_SECTION_CHARS = 20_000
BAD_VERDICTS = ("regress", "worse", "fail", "slower")
GOOD_VERDICTS = ("improv", "better", "faster")


# -- small helpers ---------------------------------------------------------------------
def _e(value: Any) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _sig(value: float, digits: int = 3) -> str:
    text = f"{value:.{digits}g}"
    if "e" in text:
        text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return text


def fmt_seconds(value: Any) -> str:
    """``0.0123`` -> ``12.3 ms``; ``None`` -> ``-``."""
    v = _num(value)
    if v is None:
        return "-"
    a = abs(v)
    if a == 0:
        return "0 s"
    if a < 1e-6:
        return f"{_sig(v * 1e9)} ns"
    if a < 1e-3:
        return f"{_sig(v * 1e6)} µs"
    if a < 1:
        return f"{_sig(v * 1e3)} ms"
    return f"{_sig(v)} s"


def _fmt_num(value: Any, unit: str = "") -> str:
    v = _num(value)
    if v is None:
        return "-"
    text = f"{int(v):,}" if v == int(v) and abs(v) < 1e15 else _sig(v, 4)
    return f"{text} {unit}".rstrip()


def _fmt_unit(value: Any, unit: str) -> str:
    if unit == "s":
        return fmt_seconds(value)
    if unit == "MiB":
        v = _num(value)
        return "-" if v is None else f"{_sig(v)} MiB"
    if unit == "fraction":
        v = _num(value)
        return "-" if v is None else f"{_sig(v * 100)} %"
    return _fmt_num(value, "" if unit in ("tokens", "calls") else unit)


def _fmt_any(value: Any) -> str:
    if isinstance(value, float):
        return _sig(value, 4)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)[:300]
    return "-" if value is None else str(value)


def _sort_key(value: float | None) -> str:
    return "" if value is None else repr(value)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks: list[float] = []
    t = first
    while t <= hi + step * 1e-9 and len(ticks) < 20:
        ticks.append(0.0 if abs(t) < step * 1e-9 else t)
        t += step
    return ticks


# -- SVG charts ---------------------------------------------------------------------------
W, H = 520, 200
ML, MR, MT, MB = 58, 16, 22, 30  # margins: left, right, top, bottom


class _Axis:
    """A linear map from data to pixels."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float) -> None:
        if hi <= lo:
            hi = lo + (abs(lo) or 1.0)
        self.lo, self.hi, self.p0, self.p1 = lo, hi, p0, p1

    def __call__(self, v: float) -> float:
        return self.p0 + (v - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)


def _frame(x: _Axis, y: _Axis, xfmt: Any, yfmt: Any, xlabel: str, ylabel: str) -> list[str]:
    out = [f'<rect class="plot" x="{ML}" y="{MT}" width="{W - ML - MR}" '
           f'height="{H - MT - MB}"/>']
    for t in _nice_ticks(y.lo, y.hi, 4):
        py = y(t)
        out.append(f'<line class="grid" x1="{ML}" x2="{W - MR}" y1="{py:.1f}" y2="{py:.1f}"/>')
        out.append(f'<text class="tick" x="{ML - 4}" y="{py + 3:.1f}" '
                   f'text-anchor="end">{_e(yfmt(t))}</text>')
    for t in _nice_ticks(x.lo, x.hi, 6):
        px = x(t)
        out.append(f'<text class="tick" x="{px:.1f}" y="{H - MB + 13}" '
                   f'text-anchor="middle">{_e(xfmt(t))}</text>')
    out.append(f'<text class="axis" x="{W - MR}" y="{H - 3}" text-anchor="end">'
               f"{_e(xlabel)}</text>")
    out.append(f'<text class="axis" x="4" y="12">{_e(ylabel)}</text>')
    return out


def _svg(kind: str, title: str, body: Iterable[str]) -> str:
    return (f'<svg class="chart {kind}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
            f'role="img" aria-label="{_e(title)}" xmlns="http://www.w3.org/2000/svg">'
            f"<title>{_e(title)}</title>{''.join(body)}</svg>")


def latency_chart(latency: Mapping[str, Any], budget: Mapping[str, Any] | None) -> str:
    """Histogram of ``latency['samples']`` with p50/p95/p99 markers and budget lines.

    A budget limit that would squash the histogram (more than 3x the largest
    sample) is drawn as an off-scale marker at the right edge.
    """
    samples = [v for v in (_num(s) for s in _list(latency.get("samples"))) if v is not None]
    if not samples:
        return '<p class="muted">No latency samples.</p>'
    summary = dict(latency)
    if _num(summary.get("p95")) is None:
        summary.update(summarize(samples))
    smin, smax = min(samples), max(samples)
    limits = [(k, v) for k in LATENCY_KEYS
              if (v := _num(_dict(budget).get(k))) is not None and v > 0]
    in_scale = [v for _, v in limits if v <= 3 * max(smax, 1e-12)]
    hi = max([smax, *in_scale]) * 1.05 or 1e-9
    lo = 0.0 if smin < 0.5 * hi else smin * 0.95
    x = _Axis(lo, hi, ML, W - MR)
    nbins = max(5, min(40, math.ceil(math.sqrt(len(samples)) * 2)))
    width = (smax - lo) / nbins if smax > lo else (hi - lo) / nbins
    counts = [0] * nbins
    for s in samples:
        counts[min(nbins - 1, max(0, int((s - lo) / width)))] += 1
    y = _Axis(0, max(counts) * 1.15, H - MB, MT)
    body = _frame(x, y, fmt_seconds, lambda v: _fmt_num(round(v, 6)), "latency", "samples")
    for i, c in enumerate(counts):
        if not c:
            continue
        x0, x1 = x(lo + i * width), x(lo + (i + 1) * width)
        top = y(c)
        body.append(
            f'<rect class="bar" x="{x0:.1f}" y="{top:.1f}" width="{max(1.0, x1 - x0 - 1):.1f}" '
            f'height="{H - MB - top:.1f}"><title>{_e(fmt_seconds(lo + i * width))} - '
            f"{_e(fmt_seconds(lo + (i + 1) * width))}: {c}</title></rect>")
    for row, q in enumerate(("p50", "p95", "p99")):
        v = _num(summary.get(q))
        if v is None:
            continue
        px = x(v)
        body.append(f'<line class="pct" data-key="{q}" x1="{px:.1f}" x2="{px:.1f}" y1="{MT}" '
                    f'y2="{H - MB}"/><text class="pct-label" x="{px + 2:.1f}" '
                    f'y="{MT + 10 + 10 * row}">{q}</text>')
    offscale = []
    for key, v in limits:
        label = f"budget {key} {fmt_seconds(v)}"
        if v in in_scale:
            px = x(v)
            body.append(
                f'<line class="budget" data-key="{key}" data-value="{v!r}" x1="{px:.1f}" '
                f'x2="{px:.1f}" y1="{MT - 6}" y2="{H - MB}"><title>{_e(label)}</title></line>'
                f'<text class="budget-label" x="{px - 3:.1f}" y="{MT - 8}" '
                f'text-anchor="end">{_e(label)}</text>')
        else:
            offscale.append((key, v))
    if offscale:
        keys = " ".join(k for k, _ in offscale)
        label = "budget " + ", ".join(f"{k} {fmt_seconds(v)}" for k, v in offscale)
        body.append(
            f'<g class="budget offscale" data-key="{keys}"><text class="budget-label" '
            f'x="{W - MR}" y="{MT - 8}" text-anchor="end">{_e(label)} (off scale) →</text></g>')
    return _svg("latency", "latency distribution", body)


def line_chart(
    kind: str,
    title: str,
    xs: Sequence[float],
    series: Sequence[tuple[str, Sequence[float | None], str]],
    *,
    xfmt: Any = None,
    yfmt: Any = None,
    xlabel: str = "",
    ylabel: str = "",
    hline: tuple[str, float] | None = None,
    vlines: Sequence[tuple[float, str]] = (),
) -> str:
    """Lines (one per ``(label, values, css_class)``) over ``xs``; ``None`` breaks a line.
    ``vlines`` are ``(x, label)`` markers (change points), drawn dashed across the plot."""
    xfmt = xfmt or (lambda v: _sig(v))
    yfmt = yfmt or (lambda v: _sig(v))
    values = [v for _, vs, _ in series for v in vs if v is not None]
    if not xs or not values:
        return f'<p class="muted">{_e(title)}: no data.</p>'
    ymax = max([*values, hline[1] if hline else 0.0, 0.0])
    x = _Axis(min(xs), max(xs), ML, W - MR)
    if len(xs) == 1:
        x = _Axis(xs[0] - 1, xs[0] + 1, ML, W - MR)
    y = _Axis(0, ymax * 1.1 or 1.0, H - MB, MT)
    body = _frame(x, y, xfmt, yfmt, xlabel, ylabel)
    if hline is not None:
        py = y(hline[1])
        body.append(f'<line class="budget" data-key="{_e(hline[0])}" x1="{ML}" x2="{W - MR}" '
                    f'y1="{py:.1f}" y2="{py:.1f}"/><text class="budget-label" x="{W - MR - 2}" '
                    f'y="{py - 3:.1f}" text-anchor="end">{_e(hline[0])}</text>')
    for xv, label in vlines:
        px = x(xv)
        body.append(f'<line class="change" x1="{px:.1f}" x2="{px:.1f}" y1="{MT}" '
                    f'y2="{H - MB}"><title>{_e(label)}</title></line>'
                    f'<text class="change-label" x="{px + 2:.1f}" y="{MT + 10}">'
                    f"{_e(label.split(':')[0])}</text>")
    for n, (label, vs, css) in enumerate(series):
        runs: list[list[str]] = [[]]
        for xv, yv in zip(xs, vs, strict=False):
            if yv is None:
                runs.append([])
                continue
            runs[-1].append(f"{x(xv):.1f},{y(yv):.1f}")
            body.append(f'<circle class="pt {css}" cx="{x(xv):.1f}" cy="{y(yv):.1f}" r="2">'
                        f"<title>{_e(label)} {_e(xfmt(xv))}: {_e(yfmt(yv))}</title></circle>")
        for pts in runs:
            if len(pts) > 1:
                body.append(f'<polyline class="line {css}" points="{" ".join(pts)}"/>')
        body.append(f'<text class="legend {css}" x="{ML + 8 + 130 * n}" y="{MT - 8}">'
                    f"{_e(label)}</text>")
    return _svg(kind, title, body)


# -- page parts ---------------------------------------------------------------------------
def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="small {cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _bar(fraction: float, css: str = "") -> str:
    pct = max(0.0, min(1.0, fraction)) * 100
    return f'<span class="hbar {css}"><span style="width:{pct:.1f}%"></span></span>'


def _verdict_class(verdict: Any) -> str:
    v = str(verdict).lower()
    if any(b in v for b in BAD_VERDICTS):
        return "regression"
    if any(g in v for g in GOOD_VERDICTS):
        return "improvement"
    return ""


def _baseline_metrics(section: Any) -> list[dict[str, Any]]:
    return [m for m in _list(_dict(section).get("metrics")) if isinstance(m, dict)]


def _worst_verdict(section: Any) -> str:
    metrics = _baseline_metrics(section)
    if any(_verdict_class(m.get("verdict")) == "regression" for m in metrics):
        return "regression"
    if any(_verdict_class(m.get("verdict")) == "improvement" for m in metrics):
        return "improvement"
    return "unchanged" if metrics else ""


def _baseline_table(section: Any) -> str:
    metrics = _baseline_metrics(section)
    if not metrics:
        return ""
    rows = []
    for m in metrics:
        cls = _verdict_class(m.get("verdict"))
        metric = str(m.get("metric", "?"))
        change = m.get("change")
        ratio = _num(change)
        change_text = f"{ratio * 100:+.1f} %" if ratio is not None else _fmt_any(change)
        rows.append(
            f'<tr class="{cls}"><td>{_e(metric)}</td>'
            f"<td>{_e(_fmt_keyed(metric, m.get('baseline')))}</td>"
            f"<td>{_e(_fmt_keyed(metric, m.get('current')))}</td>"
            f"<td>{_e(change_text)}</td><td><b>{_e(_fmt_any(m.get('verdict')))}</b></td>"
            f"<td>{_e(_fmt_any(m.get('evidence')))}</td></tr>")
    return ('<table class="small baseline"><thead><tr><th>metric</th><th>baseline</th>'
            "<th>current</th><th>change</th><th>verdict</th><th>evidence</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _fmt_keyed(key: str, value: Any) -> str:
    """``value`` formatted by the unit its key implies (``*_s``, ``*_mb``, budget keys)."""
    spec = BUDGET_KEYS.get(key)
    if spec is not None and _num(value) is not None:
        return _fmt_unit(value, spec.unit)
    if key.endswith("_s") and _num(value) is not None:
        return fmt_seconds(value)
    if key.endswith("_mb") and _num(value) is not None:
        return _fmt_unit(value, "MiB")
    return _fmt_any(value)


def _kv(data: Mapping[str, Any]) -> str:
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(_fmt_keyed(str(k), v))}</dd>"
                    for k, v in data.items()
                    if not isinstance(v, (dict, list)) or k in ("argv", "parameters"))
    return f'<dl class="kv">{items}</dl>'


def _json_block(value: Any) -> str:
    text = json.dumps(value, indent=1, ensure_ascii=False, default=str, allow_nan=True)
    if len(text) > MAX_SECTION_CHARS:
        text = text[:MAX_SECTION_CHARS] + f"\n… ({len(text) - MAX_SECTION_CHARS} more characters)"
    return f"<pre>{_e(text)}</pre>"


def _budget_table(test: Mapping[str, Any]) -> str:
    budget = _dict(test.get("budget"))
    if not budget:
        return ""
    broken = {str(v.get("metric")) for v in _list(test.get("violations"))
              if isinstance(v, dict) and not v.get("scope")}
    rows = []
    for key, limit in budget.items():
        spec = BUDGET_KEYS.get(key)
        unit = spec.unit if spec else ""
        measured = measured_value(test, spec) if spec else None
        status = '<b class="bad">over</b>' if key in broken else "ok"
        rows.append([_e(key), _e(("≥ " if spec and spec.direction == "min" else "≤ ")
                                 + _fmt_unit(limit, unit)),
                     _e(_fmt_unit(measured, unit)), status])
    return "<h4>Budget</h4>" + _table(["key", "limit", "measured", ""], rows)


def _scopes_table(test: Mapping[str, Any]) -> str:
    """Each scoped budget's limits against what its scope measured."""
    scopes = {k: v for k, v in _dict(test.get("scopes")).items() if isinstance(v, dict)}
    if not scopes:
        return ""
    notes = {(str(v.get("scope")), str(v.get("metric"))): str(v.get("note") or "")
             for v in _list(test.get("violations")) if isinstance(v, dict) and v.get("scope")}
    rows = []
    for name, block in scopes.items():
        measured = _dict(block.get("measured"))
        broken = {str(k) for k in _list(block.get("violations"))}
        matched = ", ".join(str(m) for m in _list(block.get("matched"))) or "nothing"
        for key, limit in _dict(block.get("limits")).items():
            spec = BUDGET_KEYS.get(key) or SCOPE_KEYS.get(key)
            unit = spec.unit if spec else ""
            note = notes.get((name, key), "")
            if key not in broken:
                status = "ok"
            elif note.startswith("unverifiable"):
                status = f'<b class="bad" title="{_e(note)}">unverifiable</b>'
            else:
                status = '<b class="bad">over</b>'
            rows.append([_e(name), _e(matched), _e(key),
                         _e(("≥ " if spec and spec.direction == "min" else "≤ ")
                            + _fmt_unit(limit, unit)),
                         _e(_fmt_unit(measured.get(key), unit)), status])
    return "<h4>Scoped budgets</h4>" + _table(
        ["scope", "matched", "key", "limit", "measured", ""], rows)


def _operations(test: Mapping[str, Any]) -> str:
    ops = {k: v for k, v in _dict(test.get("operations")).items() if isinstance(v, dict)}
    if not ops:
        return ""
    longest = max((_num(o.get("total_s")) or 0.0 for o in ops.values()), default=0.0) or 1.0
    rows = []
    for key, o in sorted(ops.items(), key=lambda kv: -(_num(kv[1].get("total_s")) or 0.0)):
        total = _num(o.get("total_s")) or 0.0
        rows.append([_e(key), _e(_fmt_num(o.get("count"))),
                     _bar(total / longest) + " " + _e(fmt_seconds(o.get("total_s"))),
                     _e(fmt_seconds(o.get("mean_s"))), _e(fmt_seconds(o.get("p50_s"))),
                     _e(fmt_seconds(o.get("p95_s"))), _e(fmt_seconds(o.get("max_s"))),
                     _e(_fmt_num(o.get("errors"))), _e(_fmt_num(o.get("tokens")))])
    return "<h4>Operations</h4>" + _table(
        ["operation", "count", "total", "mean", "p50", "p95", "max", "errors", "tokens"], rows)


def _llm(test: Mapping[str, Any]) -> str:
    llm = _dict(test.get("llm"))
    if not llm:
        return ""
    out = ["<h4>LLM calls</h4>", _kv({k: v for k, v in llm.items()
                                      if k not in ("per_model", "per_agent")})]
    cost = _dict(llm.get("cost"))
    if cost:
        out.append(_kv({"cost_usd": cost.get("usd"), "cost complete": cost.get("complete"),
                        "prices": cost.get("prices")}))
    apart = _dict(llm.get("unbudgeted"))
    tables = [("per_model", "model", llm), ("per_agent", "agent", llm)]
    if apart:
        out.append("<h4>Unbudgeted LLM calls (agent_scope(..., budgeted=False))</h4>")
        out.append(_kv({"calls": apart.get("calls"),
                        "tokens": _dict(apart.get("tokens")).get("total"),
                        "cost_usd": _dict(apart.get("cost")).get("usd"),
                        "latency p95": fmt_seconds(_dict(apart.get("latency")).get("p95"))}))
        tables.append(("per_agent", "unbudgeted agent", apart))
    for name, title, where in tables:
        per = {k: v for k, v in _dict(where.get(name)).items() if isinstance(v, dict)}
        if not per:
            continue
        most = max((_num(v.get("total")) or 0.0 for v in per.values()), default=0.0) or 1.0
        rows = []
        for key, v in sorted(per.items(), key=lambda kv: -(_num(kv[1].get("total")) or 0.0)):
            total = _num(v.get("total")) or 0.0
            prompt = _num(v.get("prompt")) or 0.0
            rows.append([_e(key), _e(_fmt_num(v.get("calls"))), _e(_fmt_num(v.get("prompt"))),
                         _e(_fmt_num(v.get("completion"))),
                         _stacked(prompt / most, (total - prompt) / most) + " "
                         + _e(_fmt_num(v.get("total")))])
        out.append(_table([title, "calls", "prompt", "completion", "total tokens"], rows))
    return "".join(out)


def _stacked(a: float, b: float) -> str:
    a, b = max(0.0, min(1.0, a)) * 100, max(0.0, min(1.0, b)) * 100
    return (f'<span class="hbar"><span style="width:{a:.1f}%"></span>'
            f'<span class="alt" style="width:{b:.1f}%"></span></span>')


def _load_runs(section: Any) -> list[dict[str, Any]]:
    runs = section.get("runs") if isinstance(section, dict) else section
    return [r for r in _list(runs) if isinstance(r, dict)]


def _load(test: Mapping[str, Any]) -> str:
    runs = _load_runs(test.get("load"))
    if not runs:
        return ""
    out = []
    for i, run in enumerate(runs, 1):
        rt = _dict(run.get("response_time"))
        facts = {
            "model": run.get("model"), "requests": run.get("total_requests"),
            "failed": run.get("failed_requests"),
            "error rate": (f"{_sig(run['error_rate'] * 100)} %"
                           if _num(run.get("error_rate")) is not None else None),
            "throughput": (f"{_sig(run['throughput_rps'])} req/s"
                           if _num(run.get("throughput_rps")) is not None else None),
            "duration": fmt_seconds(run.get("duration_s")),
            "p50": fmt_seconds(rt.get("p50")), "p95": fmt_seconds(rt.get("p95")),
            "p99": fmt_seconds(rt.get("p99")),
        }
        out.append(f"<h4>Load run {i}</h4>")
        out.append(_kv({k: v for k, v in facts.items() if v is not None}))
        params = _dict(run.get("parameters"))
        if params:
            out.append('<p class="muted">parameters: '
                       f"{_e(json.dumps(params, ensure_ascii=False, default=str))}</p>")
        timeline = [t for t in _list(run.get("timeline")) if isinstance(t, dict)]
        xs = [_num(t.get("t")) for t in timeline]
        if timeline and all(v is not None for v in xs):
            xv = [float(v) for v in xs if v is not None]
            out.append('<div class="charts">')
            out.append(line_chart(
                "load-rate", "requests and errors per second", xv,
                [("requests/s", [_num(t.get("requests")) for t in timeline], "s1"),
                 ("errors/s", [_num(t.get("errors")) for t in timeline], "s3")],
                xfmt=lambda v: f"{_sig(v)} s", xlabel="time (s)", ylabel="per second"))
            out.append(line_chart(
                "load-p95", "p95 latency per second", xv,
                [("p95", [_num(t.get("p95")) for t in timeline], "s2")],
                xfmt=lambda v: f"{_sig(v)} s", yfmt=fmt_seconds, xlabel="time (s)",
                ylabel="p95"))
            out.append("</div>")
        errors = {k: v for k, v in _dict(run.get("errors")).items() if isinstance(v, dict)}
        if errors:
            out.append(_table(["error", "count", "first message"],
                              [[_e(k), _e(_fmt_num(v.get("count"))),
                                _e(_fmt_any(v.get("first_message")))]
                               for k, v in errors.items()], "errors"))
    return "".join(out)


def _history(entries: Sequence[Mapping[str, Any]]) -> str:
    points = [e for e in entries if isinstance(e, Mapping)]
    if not points:
        return ""
    xs = [float(i) for i in range(len(points))]
    labels = [str(p.get("created", "")) for p in points]

    def xfmt(v: float) -> str:
        i = round(v)
        return labels[i][:10] if 0 <= i < len(labels) and abs(v - i) < 1e-9 else ""

    out = [f"<h4>History ({len(points)} runs, {_e(labels[0])} … {_e(labels[-1])})</h4>",
           '<div class="charts">']
    for key, title, yfmt in (("p95", "p95 latency", fmt_seconds),
                             ("peak_mb", "peak memory (MiB)", lambda v: _sig(v)),
                             ("tokens", "tokens", lambda v: _fmt_num(round(v, 3)))):
        vals = [_num(p.get(key)) for p in points]
        marks = [(float(i), f"change {_pct_text(c.get('change'))}: "
                  f"{yfmt(_num(c.get('before')) or 0)} -> {yfmt(_num(c.get('after')) or 0)}, "
                  f"p={_sig(_num(c.get('p_value')) or 0)}")
                 for i, p in enumerate(points) for c in _list(p.get("changes"))
                 if isinstance(c, Mapping) and c.get("metric") == key]
        if any(v is not None for v in vals):
            out.append(line_chart("trend", f"trend: {title}", xs, [(title, vals, "s1")],
                                  xfmt=xfmt, yfmt=yfmt, xlabel="run", ylabel=key,
                                  vlines=marks))
    out.append("</div>")
    return "".join(out)


def _pct_text(change: Any) -> str:
    v = _num(change)
    return "n/a" if v is None else f"{v * 100:+.1f}%"


def _details(test: Mapping[str, Any], history: Sequence[Mapping[str, Any]] | None) -> str:
    out = []
    violations = [v for v in _list(test.get("violations")) if isinstance(v, dict)]
    if violations:
        items = "".join(
            f"<li><b>{_e(violation_label(v))}</b>: "
            f"{_e(_fmt_unit(v.get('value'), v.get('unit', '')))}"
            f" (limit {_e(_fmt_unit(v.get('limit'), v.get('unit', '')))})</li>"
            for v in violations)
        out.append(f'<div class="violations"><h4>Budget violations</h4><ul>{items}</ul></div>')
    latency = _dict(test.get("latency"))
    out.append('<div class="cols"><div>')
    src = latency.get("source")
    out.append(f"<h4>Latency{' (' + _e(src) + ')' if src else ''}</h4>")
    out.append(latency_chart(latency, _dict(test.get("budget"))))
    out.append(_table(["n", "min", "p50", "p90", "p95", "p99", "max"], [[
        _e(_fmt_num(latency.get("count"))), *(_e(fmt_seconds(latency.get(k)))
                                              for k in ("min", "p50", "p90", "p95", "p99",
                                                        "max"))]]))
    out.append("</div><div>")
    out.append(_budget_table(test))
    out.append(_scopes_table(test))
    facts: dict[str, Any] = {"duration": fmt_seconds(test.get("duration_s")),
                             "cpu time": fmt_seconds(test.get("cpu_time_s"))}
    memory = _dict(test.get("memory"))
    for k in ("peak_mb", "growth_mb", "method"):
        if k in memory:
            facts[f"memory {k}"] = memory[k]
    tokens = _dict(test.get("tokens"))
    for k in ("total", "prompt", "completion", "per_request", "cached", "reasoning",
              "unknown_calls"):
        if tokens.get(k) is not None:
            facts[f"tokens {k}"] = tokens[k]
    out.append("<h4>Measurements</h4>" + _kv(facts))
    out.append("</div></div>")
    out.append(_operations(test))
    out.append(_llm(test))
    out.append(_load(test))
    if "baseline" in test:
        table = _baseline_table(test.get("baseline"))
        out.append("<h4>Against the baseline</h4>"
                   + (table or _json_block(test.get("baseline"))))
    if history:
        out.append(_history(history))
    findings = [f for f in _list(test.get("findings")) if isinstance(f, dict)]
    if findings:
        items = "".join(f"<li><b>{_e(f.get('kind'))}</b>: {_e(f.get('message'))}</li>"
                        for f in findings)
        out.append(f"<h4>Findings</h4><ul>{items}</ul>")
    for key in sorted(k for k in test if k not in KNOWN_KEYS):
        out.append(f"<details><summary>section {_e(key)}</summary>"
                   f"{_json_block(test[key])}</details>")
    return "".join(out)


def _row(i: int, test: Mapping[str, Any], history: Sequence[Mapping[str, Any]] | None) -> str:
    nodeid = str(test.get("nodeid", "?"))
    outcome = str(test.get("outcome", "?"))
    latency = _dict(test.get("latency"))
    memory = _dict(test.get("memory"))
    tokens = _dict(test.get("tokens"))
    nviol = len(_list(test.get("violations")))
    verdict = _worst_verdict(test.get("baseline"))
    bad = nviol > 0 or outcome in ("failed", "error") or verdict == "regression"

    def cell(value: float | None, text: str) -> str:
        return f'<td class="num" data-v="{_e(_sort_key(value))}">{_e(text)}</td>'

    p = [_num(latency.get(k)) for k in ("p50", "p95", "p99")]
    peak = _num(memory.get("peak_mb"))
    tok = _num(tokens.get("total"))
    verdict_cell = (f'<td data-v="{_e(verdict)}" class="{_verdict_class(verdict)}">'
                    f"{_e(verdict or '-')}</td>")
    return (
        f'<tbody class="test{" problem" if bad else ""}" id="t{i}" data-id="{_e(nodeid)}" '
        f'data-outcome="{_e(outcome)}" data-bad="{int(bad)}">'
        f'<tr class="row"><td data-v="{_e(nodeid)}"><button type="button" class="toggle" '
        f'aria-expanded="false" aria-controls="d{i}" title="details">▸</button> '
        f'<span class="nodeid">{_e(nodeid)}</span></td>'
        f'<td data-v="{_e(outcome)}"><span class="oc {_e(outcome)}">{_e(outcome)}</span></td>'
        + "".join(cell(v, fmt_seconds(v)) for v in p)
        + cell(peak, "-" if peak is None else f"{_sig(peak)} MiB")
        + cell(tok, _fmt_num(tok))
        + f'<td class="num{" bad" if nviol else ""}" data-v="{nviol}">{nviol}</td>'
        + verdict_cell
        + f'</tr><tr class="detail" id="d{i}" hidden><td colspan="9">'
        f"{_details(test, history)}</td></tr></tbody>"
    )


def _summary(report: Mapping[str, Any]) -> str:
    s = _dict(report.get("summary"))
    cards = []
    for key in ("tests", "passed", "failed", "errors", "crashed", "interrupted", "skipped",
                "xfailed", "xpassed", "budget_violations"):
        if key in s:
            bad = key in ("failed", "errors", "crashed", "budget_violations") and (
                _num(s[key]) or 0) > 0
            cards.append(f'<div class="card{" bad" if bad else ""}"><div class="n">'
                         f'{_e(_fmt_num(s[key]))}</div><div>{_e(key.replace("_", " "))}</div>'
                         "</div>")
    out = [f'<div class="cards">{"".join(cards)}</div>']
    when = f"created {_e(report.get('created', '?'))}"
    if report.get("started"):
        when = f"started {_e(report['started'])}, " + when
    out.append(f'<p class="muted">{when}</p>')
    if report.get("complete") is False:
        out.append('<p class="warn">Incomplete report: '
                   f"{_e(report.get('incomplete_reason') or 'unknown reason')}</p>")
    for error in _list(report.get("plugin_errors")):
        out.append(f'<p class="warn">Plugin error: {_e(error)}</p>')
    env = _dict(report.get("environment"))
    settings = _dict(report.get("settings"))
    if env or settings:
        out.append(f"<details><summary>environment</summary>{_kv({**env, **settings})}"
                   "</details>")
    return "".join(out)


def _top_baseline(report: Mapping[str, Any]) -> str:
    if "baseline" not in report:
        return ""
    section = report["baseline"]
    out = ["<section><h2>Against the baseline</h2>"]
    if isinstance(section, dict):
        out.append(_kv(section))
        out.append(_baseline_table(section))
        rest = {k: v for k, v in section.items()
                if isinstance(v, (dict, list)) and k != "metrics"}
        if rest:
            out.append(f"<details><summary>details</summary>{_json_block(rest)}</details>")
    else:
        out.append(_json_block(section))
    out.append("</section>")
    return "".join(out)


def render_html(report: Mapping[str, Any], *, history: History | None = None) -> str:
    """The report as one self-contained HTML page (a string).

    ``history`` maps a test id to its past runs, oldest first, each
    ``{"created", "p95", "peak_mb", "tokens"}``; each test with history gets
    trend lines.  Sections missing from the report are left out.
    """
    tests = [t for t in _list(report.get("tests")) if isinstance(t, dict)]
    hist = history or {}
    outcomes = sorted({str(t.get("outcome", "?")) for t in tests})
    options = "".join(f'<option value="{_e(o)}">{_e(o)}</option>' for o in outcomes)
    rows = "".join(_row(i, t, hist.get(str(t.get("nodeid")))) for i, t in enumerate(tests))
    head_cells = "".join(
        f'<th data-col="{i}" data-type="{typ}" tabindex="0">{_e(name)}</th>'
        for i, (name, typ) in enumerate((
            ("test", "str"), ("outcome", "str"), ("p50", "num"), ("p95", "num"),
            ("p99", "num"), ("peak memory", "num"), ("tokens", "num"),
            ("violations", "num"), ("baseline", "str"))))
    if tests:
        table = (
            '<div class="filters"><input id="q" type="search" placeholder="filter tests…" '
            f'aria-label="filter tests"> <select id="oc" aria-label="outcome"><option value="">'
            f"all outcomes</option>{options}</select> "
            '<label><input id="bad" type="checkbox"> only problems</label> '
            '<button type="button" id="expand">expand all</button> '
            '<button type="button" id="collapse">collapse all</button> '
            f'<span id="shown" class="muted">{len(tests)} of {len(tests)} shown</span></div>'
            f'<table id="tests"><thead><tr>{head_cells}</tr></thead>{rows}</table>')
    else:
        table = '<p class="muted">No measured tests in this report.</p>'
    title = f"pytest-agentperf report {report.get('created', '')}".strip()
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>pytest-agentperf report</h1>{_summary(report)}</header>"
        f"{_top_baseline(report)}"
        f"<section><h2>Measured tests</h2>{table}</section>"
        f"<script>{JS}</script></body></html>\n"
    )


def write_html(
    path: str | os.PathLike[str], report: Mapping[str, Any], *, history: History | None = None
) -> None:
    """Render ``report`` and write it to ``path`` atomically (temp file + rename).

    A string that UTF-8 cannot encode (a lone surrogate, ``"\\ud800"``, which a
    JSON file may hold) is written as U+FFFD.
    """
    text = render_html(report, history=history)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = fix_surrogates(text)
    atomic_write_text(path, text)


# -- CLI ------------------------------------------------------------------------------------
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
    """Run the ``html`` subcommand: 0 on success, 2 when the report or output is unusable."""
    try:
        report = load_report(args.report)
    except ReportError as exc:
        print(f"pytest-agentperf html: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output) if args.output else Path(args.report).with_suffix(".html")
    history = None
    db_path = getattr(args, "db", None)
    if db_path is not None:
        from .history import HistoryError, is_url, open_history

        if not is_url(db_path) and not Path(db_path).is_file():
            print(f"pytest-agentperf html: history database {db_path} does not exist",
                  file=sys.stderr)
            return 2
        try:
            with open_history(db_path, readonly=True) as db:
                history = db.trends([str(t.get("nodeid")) for t in report["tests"]])
        except HistoryError as exc:
            print(f"pytest-agentperf html: {exc}", file=sys.stderr)
            return 2
    try:
        write_html(out, report, history=history)
    except OSError as exc:
        print(f"pytest-agentperf html: cannot write {out}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


CSS = """
:root{--fg:#1d2330;--mut:#6b7385;--bd:#dde1e8;--bg:#fff;--alt:#f6f7f9;--acc:#2f6fd6;
--bad:#c62828;--good:#2e7d32;--warn:#b26a00}
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg);margin:0;padding:16px 24px}
h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:20px 0 8px}
h4{font-size:13px;margin:12px 0 4px;color:var(--mut);text-transform:uppercase;letter-spacing:.03em}
.muted{color:var(--mut)}.warn{color:var(--warn);font-weight:600}.bad{color:var(--bad)}
.cards{display:flex;gap:8px;flex-wrap:wrap}
.card{border:1px solid var(--bd);border-radius:6px;padding:6px 12px;min-width:84px;
background:var(--alt)}
.card .n{font-size:20px;font-weight:600}.card.bad{border-color:var(--bad);color:var(--bad)}
.filters{margin:8px 0;display:flex;gap:8px;align-items:center;flex-wrap:wrap}
input[type=search]{padding:4px 8px;min-width:260px;border:1px solid var(--bd);border-radius:4px}
button{font:inherit;border:1px solid var(--bd);background:var(--alt);border-radius:4px;
cursor:pointer}
table{border-collapse:collapse;width:100%}
#tests>thead th:first-child{width:45%}
#tests>thead th{position:sticky;top:0;background:var(--alt);cursor:pointer;user-select:none;
text-align:left;border-bottom:2px solid var(--bd);padding:6px}
#tests>thead th.asc::after{content:" ▲"}#tests>thead th.desc::after{content:" ▼"}
#tests>tbody>tr.row>td{border-bottom:1px solid var(--bd);padding:5px 6px}
#tests>tbody.problem>tr.row{background:#fff4f4}
#tests>tbody>tr.row:hover{background:#eef3fc}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.nodeid{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;word-break:break-all}
.toggle{border:0;background:none;padding:0 4px}
tr.detail>td{padding:8px 12px 16px 28px;background:#fbfbfc;border-bottom:2px solid var(--bd)}
.oc{padding:1px 6px;border-radius:8px;font-size:12px;background:#e8eaee}
.oc.passed{background:#e3f4e5;color:var(--good)}.oc.failed,.oc.error{background:#fde5e5;color:var(--bad)}
.oc.skipped{background:#fff3d6;color:var(--warn)}
td.regression,tr.regression{color:var(--bad);font-weight:600;background:#fff0f0}
td.improvement,tr.improvement{color:var(--good)}
table.small{width:auto;margin:4px 0 8px;font-size:12.5px}
table.small th,table.small td{white-space:nowrap;padding:3px 8px;
border-bottom:1px solid var(--bd);text-align:left}table.small td:last-child{white-space:normal}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:4px 0;
font-size:12.5px}
dl.kv dt{color:var(--mut)}dl.kv dd{margin:0;word-break:break-all}
.cols{display:flex;gap:24px;flex-wrap:wrap}.charts{display:flex;gap:12px;flex-wrap:wrap}
.hbar{display:inline-flex;width:90px;height:9px;background:#eceef2;border-radius:2px;
vertical-align:middle;overflow:hidden}
.hbar>span{display:block;height:100%;background:var(--acc)}.hbar>span.alt{background:#8fb3ee}
pre{background:var(--alt);padding:8px;overflow:auto;max-height:320px;font-size:12px}
svg.chart{background:#fff;border:1px solid var(--bd);border-radius:4px;max-width:100%;height:auto}
svg .plot{fill:none}svg .grid{stroke:#eceef2}svg .tick,svg .axis{font-size:10px;fill:var(--mut)}
svg .bar{fill:#8fb3ee}svg .pct{stroke:#555;stroke-dasharray:2 3}
svg .pct-label{font-size:10px;fill:#555}
svg .budget{stroke:var(--bad);stroke-width:2;stroke-dasharray:6 3}
svg .budget-label{font-size:11px;fill:var(--bad);stroke:none;font-weight:600}
svg .change{stroke:var(--warn);stroke-width:1.5;stroke-dasharray:3 3}
svg .change-label{font-size:10px;fill:var(--warn);stroke:none}
svg .line{fill:none;stroke-width:1.8}svg .legend{font-size:11px;font-weight:600}
svg .s1{stroke:var(--acc);fill:var(--acc)}svg .s2{stroke:#7b3fc4;fill:#7b3fc4}
svg .s3{stroke:var(--bad);fill:var(--bad)}svg polyline.line{fill:none}
svg text.legend{stroke:none}
"""

JS = """
(function(){
"use strict";
var table=document.getElementById("tests");
if(!table){return;}
var q=document.getElementById("q"),oc=document.getElementById("oc"),
bad=document.getElementById("bad"),shown=document.getElementById("shown");
function bodies(){return Array.prototype.slice.call(table.tBodies);}
function cellValue(tb,col,type){
var v=tb.rows[0].cells[col].getAttribute("data-v")||"";
if(type==="num"){return v===""?null:parseFloat(v);}return v.toLowerCase();}
var ths=table.tHead.rows[0].cells,state={col:-1,dir:1};
function sortBy(col){
var th=ths[col],type=th.getAttribute("data-type");
state.dir=(state.col===col)?-state.dir:(type==="num"?-1:1);state.col=col;
for(var i=0;i<ths.length;i++){ths[i].classList.remove("asc","desc");}
th.classList.add(state.dir>0?"asc":"desc");
var list=bodies().map(function(tb,i){return {tb:tb,v:cellValue(tb,col,type),i:i};});
list.sort(function(a,b){
if(a.v===null&&b.v===null){return a.i-b.i;}
if(a.v===null){return 1;}if(b.v===null){return -1;}
if(a.v<b.v){return -state.dir;}if(a.v>b.v){return state.dir;}return a.i-b.i;});
list.forEach(function(x){table.appendChild(x.tb);});}
for(var c=0;c<ths.length;c++){(function(col){
ths[col].addEventListener("click",function(){sortBy(col);});
ths[col].addEventListener("keydown",function(e){if(e.key==="Enter"){sortBy(col);}});
})(c);}
function filter(){
var text=q.value.trim().toLowerCase(),o=oc.value,onlyBad=bad.checked,n=0,all=bodies();
all.forEach(function(tb){
var ok=(!text||tb.getAttribute("data-id").toLowerCase().indexOf(text)>=0)&&
(!o||tb.getAttribute("data-outcome")===o)&&(!onlyBad||tb.getAttribute("data-bad")==="1");
tb.hidden=!ok;if(ok){n++;}});
shown.textContent=n+" of "+all.length+" shown";}
q.addEventListener("input",filter);oc.addEventListener("change",filter);
bad.addEventListener("change",filter);
function setOpen(tb,open){
var b=tb.querySelector("button.toggle"),d=tb.rows[1];
d.hidden=!open;b.setAttribute("aria-expanded",open?"true":"false");
b.textContent=open?"\\u25be":"\\u25b8";}
table.addEventListener("click",function(e){
var t=e.target;if(!(t instanceof Element)){return;}
var row=t.closest("tr.row");if(!row||t.closest("a")){return;}
var tb=row.parentNode;setOpen(tb,tb.rows[1].hidden);});
document.getElementById("expand").addEventListener("click",function(){
bodies().forEach(function(tb){if(!tb.hidden){setOpen(tb,true);}});});
document.getElementById("collapse").addEventListener("click",function(){
bodies().forEach(function(tb){setOpen(tb,false);});});
var m=/^#open=(.*)$/.exec(location.hash);
(m?m[1].split(","):[]).forEach(function(id){
var tb=id?document.getElementById(id):null;
if(tb&&tb.parentNode===table){setOpen(tb,true);}});
})();
"""
