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

import functools
import html
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

from .budgets import BUDGET_KEYS, SCOPE_KEYS, measured_value, violation_label
from .report import atomic_write_text, fix_surrogates
from .reportdata import as_dict, as_list, number
from .stats import summarize
from .units import fmt_value, sig

__all__ = ["asset", "render_html", "write_html"]


@functools.cache
def asset(name: str) -> str:
    """The text of a file the page inlines (``report.css``, ``report.js``), shipped as
    package data in ``pytest_agentperf/assets/``."""
    return (resources.files("pytest_agentperf") / "assets" / name).read_text("utf-8")

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




def fmt_seconds(value: Any) -> str:
    """``0.0123`` -> ``12.3 ms``; ``None`` -> ``-``."""
    return fmt_value(value, "s")


def _fmt_num(value: Any, unit: str = "") -> str:
    v = number(value)
    if v is None:
        return "-"
    text = f"{int(v):,}" if v == int(v) and abs(v) < 1e15 else sig(v, 4)
    return f"{text} {unit}".rstrip()


def _fmt_unit(value: Any, unit: str) -> str:
    if unit == "s":
        return fmt_seconds(value)
    if unit == "MiB":
        return fmt_value(value, "MiB")
    if unit == "fraction":
        v = number(value)
        return "-" if v is None else f"{sig(v * 100)} %"
    return _fmt_num(value, "" if unit in ("tokens", "calls") else unit)


def _fmt_any(value: Any) -> str:
    if isinstance(value, float):
        return sig(value, 4)
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
    samples = [v for v in (number(s) for s in as_list(latency.get("samples"))) if v is not None]
    if not samples:
        return '<p class="muted">No latency samples.</p>'
    summary = dict(latency)
    if number(summary.get("p95")) is None:
        summary.update(summarize(samples))
    smin, smax = min(samples), max(samples)
    limits = [(k, v) for k in LATENCY_KEYS
              if (v := number(as_dict(budget).get(k))) is not None and v > 0]
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
        v = number(summary.get(q))
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
    xfmt = xfmt or (lambda v: sig(v))
    yfmt = yfmt or (lambda v: sig(v))
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
    return [m for m in as_list(as_dict(section).get("metrics")) if isinstance(m, dict)]


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
        ratio = number(change)
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
    if spec is not None and number(value) is not None:
        return _fmt_unit(value, spec.unit)
    if key.endswith("_s") and number(value) is not None:
        return fmt_seconds(value)
    if key.endswith("_mb") and number(value) is not None:
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
    budget = as_dict(test.get("budget"))
    if not budget:
        return ""
    broken = {str(v.get("metric")) for v in as_list(test.get("violations"))
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
    scopes = {k: v for k, v in as_dict(test.get("scopes")).items() if isinstance(v, dict)}
    if not scopes:
        return ""
    notes = {(str(v.get("scope")), str(v.get("metric"))): str(v.get("note") or "")
             for v in as_list(test.get("violations")) if isinstance(v, dict) and v.get("scope")}
    rows = []
    for name, block in scopes.items():
        measured = as_dict(block.get("measured"))
        broken = {str(k) for k in as_list(block.get("violations"))}
        matched = ", ".join(str(m) for m in as_list(block.get("matched"))) or "nothing"
        for key, limit in as_dict(block.get("limits")).items():
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
    ops = {k: v for k, v in as_dict(test.get("operations")).items() if isinstance(v, dict)}
    if not ops:
        return ""
    longest = max((number(o.get("total_s")) or 0.0 for o in ops.values()), default=0.0) or 1.0
    rows = []
    for key, o in sorted(ops.items(), key=lambda kv: -(number(kv[1].get("total_s")) or 0.0)):
        total = number(o.get("total_s")) or 0.0
        rows.append([_e(key), _e(_fmt_num(o.get("count"))),
                     _bar(total / longest) + " " + _e(fmt_seconds(o.get("total_s"))),
                     _e(fmt_seconds(o.get("mean_s"))), _e(fmt_seconds(o.get("p50_s"))),
                     _e(fmt_seconds(o.get("p95_s"))), _e(fmt_seconds(o.get("max_s"))),
                     _e(_fmt_num(o.get("errors"))), _e(_fmt_num(o.get("tokens")))])
    return "<h4>Operations</h4>" + _table(
        ["operation", "count", "total", "mean", "p50", "p95", "max", "errors", "tokens"], rows)


def _llm(test: Mapping[str, Any]) -> str:
    llm = as_dict(test.get("llm"))
    if not llm:
        return ""
    out = ["<h4>LLM calls</h4>", _kv({k: v for k, v in llm.items()
                                      if k not in ("per_model", "per_agent")})]
    cost = as_dict(llm.get("cost"))
    if cost:
        out.append(_kv({"cost_usd": cost.get("usd"), "cost complete": cost.get("complete"),
                        "prices": cost.get("prices")}))
    apart = as_dict(llm.get("unbudgeted"))
    tables = [("per_model", "model", llm), ("per_agent", "agent", llm)]
    if apart:
        out.append("<h4>Unbudgeted LLM calls (agent_scope(..., budgeted=False))</h4>")
        out.append(_kv({"calls": apart.get("calls"),
                        "tokens": as_dict(apart.get("tokens")).get("total"),
                        "cost_usd": as_dict(apart.get("cost")).get("usd"),
                        "latency p95": fmt_seconds(as_dict(apart.get("latency")).get("p95"))}))
        tables.append(("per_agent", "unbudgeted agent", apart))
    for name, title, where in tables:
        per = {k: v for k, v in as_dict(where.get(name)).items() if isinstance(v, dict)}
        if not per:
            continue
        most = max((number(v.get("total")) or 0.0 for v in per.values()), default=0.0) or 1.0
        rows = []
        for key, v in sorted(per.items(), key=lambda kv: -(number(kv[1].get("total")) or 0.0)):
            total = number(v.get("total")) or 0.0
            prompt = number(v.get("prompt")) or 0.0
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
    return [r for r in as_list(runs) if isinstance(r, dict)]


def _load(test: Mapping[str, Any]) -> str:
    runs = _load_runs(test.get("load"))
    if not runs:
        return ""
    out = []
    for i, run in enumerate(runs, 1):
        rt = as_dict(run.get("response_time"))
        facts = {
            "model": run.get("model"), "requests": run.get("total_requests"),
            "failed": run.get("failed_requests"),
            "error rate": (f"{sig(run['error_rate'] * 100)} %"
                           if number(run.get("error_rate")) is not None else None),
            "throughput": (f"{sig(run['throughput_rps'])} req/s"
                           if number(run.get("throughput_rps")) is not None else None),
            "duration": fmt_seconds(run.get("duration_s")),
            "p50": fmt_seconds(rt.get("p50")), "p95": fmt_seconds(rt.get("p95")),
            "p99": fmt_seconds(rt.get("p99")),
        }
        out.append(f"<h4>Load run {i}</h4>")
        out.append(_kv({k: v for k, v in facts.items() if v is not None}))
        params = as_dict(run.get("parameters"))
        if params:
            out.append('<p class="muted">parameters: '
                       f"{_e(json.dumps(params, ensure_ascii=False, default=str))}</p>")
        timeline = [t for t in as_list(run.get("timeline")) if isinstance(t, dict)]
        xs = [number(t.get("t")) for t in timeline]
        if timeline and all(v is not None for v in xs):
            xv = [float(v) for v in xs if v is not None]
            out.append('<div class="charts">')
            out.append(line_chart(
                "load-rate", "requests and errors per second", xv,
                [("requests/s", [number(t.get("requests")) for t in timeline], "s1"),
                 ("errors/s", [number(t.get("errors")) for t in timeline], "s3")],
                xfmt=lambda v: f"{sig(v)} s", xlabel="time (s)", ylabel="per second"))
            out.append(line_chart(
                "load-p95", "p95 latency per second", xv,
                [("p95", [number(t.get("p95")) for t in timeline], "s2")],
                xfmt=lambda v: f"{sig(v)} s", yfmt=fmt_seconds, xlabel="time (s)",
                ylabel="p95"))
            out.append("</div>")
        errors = {k: v for k, v in as_dict(run.get("errors")).items() if isinstance(v, dict)}
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
                             ("peak_mb", "peak memory (MiB)", lambda v: sig(v)),
                             ("tokens", "tokens", lambda v: _fmt_num(round(v, 3)))):
        vals = [number(p.get(key)) for p in points]
        marks = [(float(i), f"change {_pct_text(c.get('change'))}: "
                  f"{yfmt(number(c.get('before')) or 0)} -> {yfmt(number(c.get('after')) or 0)}, "
                  f"p={sig(number(c.get('p_value')) or 0)}")
                 for i, p in enumerate(points) for c in as_list(p.get("changes"))
                 if isinstance(c, Mapping) and c.get("metric") == key]
        if any(v is not None for v in vals):
            out.append(line_chart("trend", f"trend: {title}", xs, [(title, vals, "s1")],
                                  xfmt=xfmt, yfmt=yfmt, xlabel="run", ylabel=key,
                                  vlines=marks))
    out.append("</div>")
    return "".join(out)


def _pct_text(change: Any) -> str:
    v = number(change)
    return "n/a" if v is None else f"{v * 100:+.1f}%"


def _details(test: Mapping[str, Any], history: Sequence[Mapping[str, Any]] | None) -> str:
    out = []
    violations = [v for v in as_list(test.get("violations")) if isinstance(v, dict)]
    if violations:
        items = "".join(
            f"<li><b>{_e(violation_label(v))}</b>: "
            f"{_e(_fmt_unit(v.get('value'), v.get('unit', '')))}"
            f" (limit {_e(_fmt_unit(v.get('limit'), v.get('unit', '')))})</li>"
            for v in violations)
        out.append(f'<div class="violations"><h4>Budget violations</h4><ul>{items}</ul></div>')
    latency = as_dict(test.get("latency"))
    out.append('<div class="cols"><div>')
    src = latency.get("source")
    out.append(f"<h4>Latency{' (' + _e(src) + ')' if src else ''}</h4>")
    out.append(latency_chart(latency, as_dict(test.get("budget"))))
    out.append(_table(["n", "min", "p50", "p90", "p95", "p99", "max"], [[
        _e(_fmt_num(latency.get("count"))), *(_e(fmt_seconds(latency.get(k)))
                                              for k in ("min", "p50", "p90", "p95", "p99",
                                                        "max"))]]))
    out.append("</div><div>")
    out.append(_budget_table(test))
    out.append(_scopes_table(test))
    facts: dict[str, Any] = {"duration": fmt_seconds(test.get("duration_s")),
                             "cpu time": fmt_seconds(test.get("cpu_time_s"))}
    memory = as_dict(test.get("memory"))
    for k in ("peak_mb", "growth_mb", "method"):
        if k in memory:
            facts[f"memory {k}"] = memory[k]
    tokens = as_dict(test.get("tokens"))
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
    findings = [f for f in as_list(test.get("findings")) if isinstance(f, dict)]
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
    latency = as_dict(test.get("latency"))
    memory = as_dict(test.get("memory"))
    tokens = as_dict(test.get("tokens"))
    nviol = len(as_list(test.get("violations")))
    verdict = _worst_verdict(test.get("baseline"))
    bad = nviol > 0 or outcome in ("failed", "error") or verdict == "regression"

    def cell(value: float | None, text: str) -> str:
        return f'<td class="num" data-v="{_e(_sort_key(value))}">{_e(text)}</td>'

    p = [number(latency.get(k)) for k in ("p50", "p95", "p99")]
    peak = number(memory.get("peak_mb"))
    tok = number(tokens.get("total"))
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
        + cell(peak, fmt_value(peak, "MiB"))
        + cell(tok, _fmt_num(tok))
        + f'<td class="num{" bad" if nviol else ""}" data-v="{nviol}">{nviol}</td>'
        + verdict_cell
        + f'</tr><tr class="detail" id="d{i}" hidden><td colspan="9">'
        f"{_details(test, history)}</td></tr></tbody>"
    )


def _summary(report: Mapping[str, Any]) -> str:
    s = as_dict(report.get("summary"))
    cards = []
    for key in ("tests", "passed", "failed", "errors", "crashed", "interrupted", "skipped",
                "xfailed", "xpassed", "budget_violations"):
        if key in s:
            bad = key in ("failed", "errors", "crashed", "budget_violations") and (
                number(s[key]) or 0) > 0
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
    for error in as_list(report.get("plugin_errors")):
        out.append(f'<p class="warn">Plugin error: {_e(error)}</p>')
    env = as_dict(report.get("environment"))
    settings = as_dict(report.get("settings"))
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
    tests = [t for t in as_list(report.get("tests")) if isinstance(t, dict)]
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
        f"<title>{_e(title)}</title><style>{asset('report.css')}</style></head><body>"
        f"<header><h1>pytest-agentperf report</h1>{_summary(report)}</header>"
        f"{_top_baseline(report)}"
        f"<section><h2>Measured tests</h2>{table}</section>"
        f"<script>{asset('report.js')}</script></body></html>\n"
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
