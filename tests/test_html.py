"""The HTML report: rendering real and hand-built reports, escaping, CLI, a real browser."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pytest_agentperf.html import (
    ML,
    MR,
    H,
    W,
    asset,
    latency_chart,
    render_html,
    write_html,
)
from pytest_agentperf.report import build_report, load_report, write_report

XSS = "<script>alert(1)</script>"
ESCAPED_XSS = "&lt;script&gt;alert(1)&lt;/script&gt;"
#: breaks out of a cell, an attribute in either quote style, and carries & and unicode
PAYLOAD = "</td></tr><script>alert(1)</script><img src=x onerror=alert(2)> & \"q\" 'a' ü"
ESCAPED_PAYLOAD = (
    "&lt;/td&gt;&lt;/tr&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
    "&lt;img src=x onerror=alert(2)&gt; &amp; &quot;q&quot; &#x27;a&#x27; ü"
)

SUITE = '''
import pytest


@pytest.mark.perf_budget(p95=5.0, tokens=1000)
def test_steps(profiler):
    for _ in range(20):
        with profiler.profile_operation("agent", "step") as m:
            m.record_tokens(prompt=3, completion=2)


@pytest.mark.perf_budget(p95=5.0)
@pytest.mark.parametrize(
    "q", [1, 2, 3], ids=["<script>alert(1)</script>", "quote\\"s & amps", "plain"]
)
def test_param(perf_record, q):
    for i in range(10):
        perf_record.add_latency(0.001 * (i + q))
'''


def _env() -> dict[str, Any]:
    return {"python": "3.11", "platform": "Linux", "machine": "x86_64", "cpu_count": 2,
            "pytest": "9", "agentperf": "0.1", "git_commit": None}


def _test(nodeid: str, p95: float = 0.01, **extra: Any) -> dict[str, Any]:
    samples = [p95 * (0.5 + i / 40) for i in range(21)]
    return {
        "nodeid": nodeid, "outcome": "passed", "duration_s": 0.2, "cpu_time_s": 0.1,
        "budget": {"p95": 1.0},
        "latency": {"count": len(samples), "min": min(samples), "mean": p95 * 0.75,
                    "p50": p95 * 0.75, "p90": p95 * 0.95, "p95": p95, "p99": p95 * 1.01,
                    "max": max(samples), "exact": True, "source": "profiler",
                    "samples": samples},
        "memory": {"method": "hwm", "peak_mb": 1.5},
        "tokens": {"total": 30, "prompt": 20, "completion": 10, "requests": 3,
                   "per_request": 10.0},
        "operations": {}, "violations": [], "findings": [], **extra,
    }


def _load_run(name: str = "ValueError", message: str = "boom") -> dict[str, Any]:
    timeline: list[dict[str, Any]] = [
        {"t": t, "requests": 10 + t, "errors": t % 3, "p95": 0.02 + t / 1000} for t in range(8)
    ]
    timeline[3]["p95"] = None  # a second without a successful request
    return {"model": "open", "total_requests": 100, "successful_requests": 95,
            "failed_requests": 5, "error_rate": 0.05, "throughput_rps": 12.5,
            "duration_s": 8.0, "response_time": {"p50": 0.01, "p95": 0.03, "p99": 0.04},
            "errors": {name: {"count": 5, "first_message": message}},
            "timeline": timeline, "parameters": {"rate": 12.5}}


def _llm(model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"calls": 3, "retries": 0, "errors": 0, "ttft_p95_s": 0.12,
            "per_model": {model: {"calls": 2, "prompt": 15, "completion": 5, "total": 20},
                          "other-model": {"calls": 1, "prompt": 6, "completion": 4,
                                          "total": 10}}}


def _baseline(evidence: str = "p=0.01") -> dict[str, Any]:
    return {"metrics": [
        {"metric": "p95", "baseline": 0.008, "current": 0.01, "change": 0.25,
         "verdict": "regression", "evidence": evidence},
        {"metric": "tokens", "baseline": 30, "current": 30, "change": 0.0,
         "verdict": "unchanged", "evidence": "equal"},
    ]}


def _full_report(xss_id: str = XSS) -> dict[str, Any]:
    tests = [
        _test("t.py::test_a", 0.01, llm=_llm(), baseline=_baseline()),
        _test(f"t.py::test_b[{xss_id}]", 0.03, operations={
            "planner:plan": {"count": 2, "total_s": 0.02, "p95_s": 0.011, "tokens": 7}}),
        _test("t.py::test_router", 0.02, load={"runs": [_load_run()], "latency": {}}),
    ]
    report = build_report(tests=tests, env=_env(), complete=True)
    report["baseline"] = {"path": "old.json", "regressions": 1}
    return report


# -- real reports ------------------------------------------------------------------------
@pytest.fixture
def real_report(pt: pytest.Pytester) -> dict[str, Any]:
    pt.makepyfile(test_suite=SUITE)
    result = pt.runpytest("--perf-report=r.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    return load_report(pt.path / "r.json")


def test_real_report_renders_every_test(real_report: dict[str, Any]) -> None:
    page = render_html(real_report)
    assert page.startswith("<!DOCTYPE html>")
    assert page.count('<tbody class="test') == 4
    for test in real_report["tests"]:
        assert f'data-id="{_esc(test["nodeid"])}"' in page
    assert page.count('<svg class="chart latency"') == 4
    assert "agent:step" in page  # per-operation breakdown
    assert "4 of 4 shown" in page
    # 5 s budgets are far beyond millisecond samples: drawn as off-scale markers
    assert page.count('class="budget offscale" data-key="p95"') == 4


def test_script_in_test_id_is_escaped(real_report: dict[str, Any]) -> None:
    nodeids = [t["nodeid"] for t in real_report["tests"]]
    assert any(XSS in n for n in nodeids)  # pytest kept the id as written
    page = render_html(real_report)
    assert XSS not in page
    assert "alert(1)</script>" not in page
    assert ESCAPED_XSS in page
    assert page.count("<script") == 1  # the page's own script, nothing else
    assert "quote&quot;s &amp; amps" in page


def test_every_user_string_is_escaped() -> None:
    test = _test(
        f"t.py::test[{PAYLOAD}]",
        outcome=PAYLOAD,
        operations={PAYLOAD: {"count": 1, "total_s": 0.1, "p95_s": 0.1, "tokens": 1}},
        findings=[{"kind": PAYLOAD, "message": PAYLOAD}],
        violations=[{"metric": PAYLOAD, "value": 2.0, "limit": 1.0, "unit": PAYLOAD}],
        llm=_llm(PAYLOAD),
        load=[_load_run(PAYLOAD, PAYLOAD) | {"parameters": {PAYLOAD: PAYLOAD}}],
        baseline=_baseline(PAYLOAD) | {"metrics": [{"metric": PAYLOAD, "verdict": PAYLOAD,
                                                    "evidence": PAYLOAD}]},
        custom_section={"note": PAYLOAD},
    )
    test["budget"] = {PAYLOAD: 1.0}
    report = build_report(tests=[test], env={**_env(), "platform": PAYLOAD}, complete=False,
                          incomplete_reason=PAYLOAD)
    report["created"] = PAYLOAD
    report["baseline"] = {"note": PAYLOAD, "more": {"x": PAYLOAD}}
    page = render_html(report, history={test["nodeid"]: [{"created": PAYLOAD, "p95": 0.1}] * 2})
    assert "<img" not in page
    assert "alert(1)</script>" not in page
    assert page.count("<script") == 1
    # JSON-dumped sections escape the same way (json keeps the quotes as \")
    assert page.count(ESCAPED_PAYLOAD) >= 12
    assert "ü" in page  # unicode stays readable


# -- charts ----------------------------------------------------------------------------
def _line_x(svg: str, key: str) -> float:
    m = re.search(rf'<line class="budget" data-key="{key}"[^>]* x1="([0-9.]+)"', svg)
    assert m is not None, svg
    return float(m.group(1))


def test_budget_line_is_drawn_where_the_limit_is() -> None:
    samples = [0.001 * i for i in range(1, 101)]  # 1 ms .. 100 ms
    svg = latency_chart({"samples": samples, "p50": 0.05, "p95": 0.095, "p99": 0.099},
                        {"p95": 0.05, "tokens": 10})
    hi = 0.1 * 1.05  # axis from 0 to 5 % above the largest sample
    expected = ML + 0.05 / hi * (W - ML - MR)
    assert abs(_line_x(svg, "p95") - expected) < 1.0
    assert "budget p95 50 ms" in svg
    assert 'data-key="tokens"' not in svg  # not a latency limit
    # the measured p95 marker sits to the right of the broken limit
    pct = re.search(r'<line class="pct" data-key="p95" x1="([0-9.]+)"', svg)
    assert pct is not None and float(pct.group(1)) > _line_x(svg, "p95")


def test_budget_above_the_samples_extends_the_axis_or_goes_off_scale() -> None:
    samples = [0.001 * i for i in range(1, 11)]  # up to 10 ms
    svg = latency_chart({"samples": samples}, {"p95": 0.02, "max": 10.0})
    assert ML < _line_x(svg, "p95") <= W - MR  # 20 ms: the axis grows to show it
    assert '<g class="budget offscale" data-key="max">' in svg
    assert "budget max 10 s (off scale)" in svg
    assert f'viewBox="0 0 {W} {H}"' in svg


def test_latency_chart_without_samples_says_so() -> None:
    assert "No latency samples" in latency_chart({"count": 0, "samples": []}, {"p95": 1.0})


# -- degenerate and sectioned reports ------------------------------------------------------
def test_empty_report() -> None:
    page = render_html(build_report(tests=[], env=_env(), complete=True))
    assert "No measured tests" in page
    assert 'id="tests"' not in page
    assert page.count("<script") == 1  # the script copes with no table
    bare = render_html({"schema_version": 1, "tests": []})
    assert "No measured tests" in bare


def test_incomplete_report_says_why() -> None:
    report = build_report(tests=[_test("t.py::x")], env=_env(), complete=False,
                          incomplete_reason="interrupted")
    assert "Incomplete report: interrupted" in render_html(report)


def test_malformed_values_do_not_crash() -> None:
    weird = {"nodeid": "t.py::w", "latency": {"p95": "fast", "samples": ["x", None, 1e999]},
             "memory": None, "tokens": [], "operations": {"op": 3}, "violations": "none",
             "load": {"runs": "?"}, "llm": {"per_model": {"m": "x"}}, "baseline": [1]}
    page = render_html({"tests": [weird, "not a test"], "summary": None})
    assert page.count('<tbody class="test') == 1


def test_load_llm_and_baseline_sections() -> None:
    report = _full_report()
    report["tests"].append(_test("t.py::test_list_shape", load=[_load_run(), _load_run()]))
    page = render_html(report)
    assert page.count('<svg class="chart load-rate"') == 3  # dict shape 1 run + list shape 2
    assert page.count('<svg class="chart load-p95"') == 3
    assert "requests/s" in page and "errors/s" in page
    assert "12.5 req/s" in page
    # tokens per model
    assert "gpt-4o-mini" in page and "other-model" in page
    assert "ttft_p95_s</dt><dd>120 ms" in page
    # per-operation breakdown
    assert "planner:plan" in page
    # regression highlighted, per metric and in the table row
    assert '<tr class="regression"><td>p95</td><td>8 ms</td><td>10 ms</td><td>+25.0 %' in page
    assert '<tbody class="test problem" id="t0" data-id="t.py::test_a"' in page
    assert '<td data-v="regression" class="regression">regression</td>' in page
    # the run's baseline summary
    assert "<h2>Against the baseline</h2>" in page
    assert "old.json" in page


def test_sections_absent_are_left_out() -> None:
    page = render_html(build_report(tests=[_test("t.py::x")], env=_env(), complete=True))
    for absent in ("Against the baseline", "Load run", "LLM calls", "History", "Operations"):
        assert absent not in page
    assert '<svg class="chart latency"' in page


def test_history_draws_trend_lines() -> None:
    report = _full_report()
    history: dict[str, list[dict[str, Any]]] = {
        "t.py::test_a": [{"created": f"2026-11-{d:02d}T00:00:00Z", "p95": 0.01 + d / 1e4,
                          "peak_mb": 1.0 + d / 10, "tokens": None} for d in range(1, 8)],
        "t.py::unknown": [{"created": "x", "p95": 1.0}],
    }
    page = render_html(report, history=history)
    assert page.count('<svg class="chart trend"') == 2  # p95 and peak memory; tokens all None
    assert "History (7 runs, 2026-11-01T00:00:00Z" in page
    assert page.count("<polyline") >= 2
    assert 'class="chart trend"' not in render_html(report)


def test_page_loads_nothing_from_the_network() -> None:
    page = render_html(_full_report(), history={"t.py::test_a": [{"created": "c", "p95": 1.0}]})
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    without_ns = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http:" not in without_ns and "https:" not in without_ns
    for pattern in (r"\ssrc=", r"\shref=", r"url\(", r"@import", r"<link", r"<iframe"):
        assert re.search(pattern, page) is None, pattern


# -- writing and the CLI --------------------------------------------------------------------
def test_write_html_is_atomic_and_readable(tmp_path: Path) -> None:
    out = tmp_path / "out.html"
    write_html(out, _full_report())
    assert out.read_text("utf-8").startswith("<!DOCTYPE html>")
    assert os.listdir(tmp_path) == ["out.html"]
    assert out.stat().st_mode & 0o644 == 0o644  # readable by others, like any page
    out.chmod(0o600)
    write_html(out, _full_report(), history={})
    assert out.stat().st_mode & 0o777 == 0o600  # an existing file keeps its mode
    with pytest.raises(OSError):
        write_html(tmp_path / "missing" / "out.html", _full_report())
    assert os.listdir(tmp_path) == ["out.html"]


def _cli(*argv: str) -> int:
    from pytest_agentperf.cli import main

    return main(list(argv))


def test_cli_renders_a_saved_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r.json"
    write_report(report, _full_report())
    out = tmp_path / "page.html"
    assert _cli("html", str(report), "-o", str(out)) == 0
    assert ESCAPED_XSS in out.read_text("utf-8")
    assert str(out) in capsys.readouterr().out
    assert _cli("html", str(report)) == 0  # default: next to the report
    assert (tmp_path / "r.html").is_file()


@pytest.mark.parametrize("content", [None, "{not json", '{"tests": []}', '{"schema_version": 9}'])
def test_cli_rejects_unusable_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    report = tmp_path / "r.json"
    if content is not None:
        report.write_text(content)
    assert _cli("html", str(report), "-o", str(tmp_path / "o.html")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(report) in err
    assert not (tmp_path / "o.html").exists()


def test_cli_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "r.json"
    write_report(report, _full_report())
    out = tmp_path / "nodir" / "o.html"
    assert _cli("html", str(report), "-o", str(out)) == 2
    assert str(out) in capsys.readouterr().err


def test_page_inlines_the_shipped_css_and_js() -> None:
    page = render_html(_full_report())
    css, js = asset("report.css"), asset("report.js")
    assert "#tests>thead th" in css and 'getElementById("tests")' in js
    assert f"<style>{css}</style>" in page and f"<script>{js}</script>" in page


def test_run_html_is_callable_directly(tmp_path: Path) -> None:
    from pytest_agentperf.cli import run_html

    report = tmp_path / "r.json"
    write_report(report, _full_report())
    args = argparse.Namespace(report=str(report), output=str(tmp_path / "x.html"))
    assert run_html(args) == 0


def _esc(text: str) -> str:
    import html

    return html.escape(text, quote=True)


# -- a real browser -----------------------------------------------------------------------
BROWSER_TIMEOUT = 60.0
XSS_PROBE = "<script>window.__xss=1</script>"


def _chromium() -> str | None:
    for name in (os.environ.get("AGENTPERF_CHROMIUM"), "chromium", "chromium-browser",
                 "google-chrome", "google-chrome-stable"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


class _DevTools:
    """A minimal Chrome DevTools Protocol client on an aiohttp websocket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.last_id = 0
        self.events: list[dict[str, Any]] = []

    async def _receive(self) -> dict[str, Any]:
        import aiohttp

        msg = await self.ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"devtools connection closed: {msg.type}")
        data: dict[str, Any] = json.loads(msg.data)
        if "method" in data:
            self.events.append(data)
        return data

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.last_id += 1
        await self.ws.send_json({"id": self.last_id, "method": method, "params": params})
        while True:
            data = await self._receive()
            if data.get("id") == self.last_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                result: dict[str, Any] = data.get("result", {})
                return result

    async def event(self, method: str) -> dict[str, Any]:
        for e in self.events:
            if e["method"] == method:
                return e
        while True:
            data = await self._receive()
            if data.get("method") == method:
                return data

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluation failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["method"] == "Runtime.exceptionThrown"
                or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
                or (e["method"] == "Runtime.consoleAPICalled"
                    and e["params"]["type"] in ("error", "assert"))]


INTERACT = """
(() => {
  const t = document.getElementById("tests");
  const ids = () => Array.from(t.tBodies).map(b => b.dataset.id);
  const before = ids();
  t.tHead.rows[0].cells[3].click();  // p95, descending first
  const sorted = ids();
  t.tHead.rows[0].cells[3].click();  // and ascending
  const sortedAsc = ids();
  const q = document.getElementById("q");
  q.value = "ROUTER"; q.dispatchEvent(new Event("input"));
  const visible = Array.from(t.tBodies).filter(b => !b.hidden).map(b => b.dataset.id);
  const shown = document.getElementById("shown").textContent;
  q.value = ""; q.dispatchEvent(new Event("input"));
  const bad = document.getElementById("bad"); bad.click();
  const problems = Array.from(t.tBodies).filter(b => !b.hidden).map(b => b.dataset.id);
  bad.click();
  const first = t.tBodies[0];
  const closed = first.rows[1].hidden;
  first.rows[0].cells[0].querySelector("button").click();
  const open = !first.rows[1].hidden;
  const chart = first.rows[1].querySelector("svg.chart");
  return {before, sorted, sortedAsc, visible, shown, problems, closed, open,
          chartWidth: chart ? chart.getBoundingClientRect().width : 0,
          hashOpened: !document.getElementById("t2").rows[1].hidden,
          xss: typeof window.__xss};
})()
"""


@pytest.mark.asyncio
async def test_page_in_headless_chromium(tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("AGENTPERF_REQUIRE_CHROMIUM"):  # set by .ci/run: CI must not skip
            pytest.fail("AGENTPERF_REQUIRE_CHROMIUM is set but no chromium binary was found")
        pytest.skip("no chromium binary found (install Debian's chromium package)")
    import aiohttp

    page = tmp_path / "report.html"
    write_html(page, _full_report(XSS_PROBE),
               history={"t.py::test_a": [{"created": "a", "p95": 0.01},
                                         {"created": "b", "p95": 0.02}]})
    profile = tmp_path / "profile"
    log_path = tmp_path / "chromium.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-extensions", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
             "--window-size=1280,1600", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=log,
        )
    try:
        result, errors, shot = await asyncio.wait_for(
            _drive(proc, profile, page.as_uri() + "#open=t2", aiohttp), BROWSER_TIMEOUT)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert errors == [], errors
    xss_id = f"t.py::test_b[{XSS_PROBE}]"
    assert result["xss"] == "undefined"  # the id was shown, not run
    assert result["before"] == ["t.py::test_a", xss_id, "t.py::test_router"]
    assert result["sorted"] == [xss_id, "t.py::test_router", "t.py::test_a"]
    assert result["sortedAsc"] == ["t.py::test_a", "t.py::test_router", xss_id]
    assert result["visible"] == ["t.py::test_router"]
    assert result["shown"] == "1 of 3 shown"
    assert result["problems"] == ["t.py::test_a"]  # the baseline regression
    assert result["closed"] and result["open"] and result["chartWidth"] > 100
    assert result["hashOpened"]
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000
    (tmp_path / "screenshot.png").write_bytes(shot)


async def _drive(
    proc: subprocess.Popen[bytes], profile: Path, url: str, aiohttp: Any
) -> tuple[dict[str, Any], list[dict[str, Any]], bytes]:
    port_file = profile / "DevToolsActivePort"
    while not port_file.is_file() or not port_file.read_text().strip():
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}")
        await asyncio.sleep(0.05)
    port = int(port_file.read_text().split()[0])
    async with aiohttp.ClientSession() as http:
        target = None
        while target is None:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                target = next((t for t in await resp.json() if t["type"] == "page"), None)
            if target is None:
                await asyncio.sleep(0.05)
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            cdp = _DevTools(ws)
            for domain in ("Runtime", "Log", "Page"):
                await cdp.call(f"{domain}.enable")
            await cdp.call("Page.navigate", url=url)
            await cdp.event("Page.loadEventFired")
            result = await cdp.evaluate(INTERACT)
            errors = cdp.errors()
            shot = base64.b64decode((await cdp.call("Page.captureScreenshot",
                                                    format="png"))["data"])
            # the listener works: a thrown error is seen
            await cdp.evaluate("setTimeout(() => { throw new Error('probe'); }, 0); 1")
            await cdp.event("Runtime.exceptionThrown")
    return result, errors, shot
