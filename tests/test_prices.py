"""Current prices: ``perf_llm_prices = auto`` over genai-prices' bundled dataset."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from pytest_agentperf.compare import Tolerances, compare_entries
from pytest_agentperf.llm import LLMCall, ModelPrice

from _support import by_id, read_report
from llm_server import LLMServer

genai_prices = pytest.importorskip("genai_prices")

from pytest_agentperf.llm.prices import AutoPricer, table_source  # noqa: E402

pytest_plugins = ["pytester"]


def _call(model: str, provider: str = "openai", **kw: Any) -> LLMCall:
    kw.setdefault("prompt_tokens", 1000)
    kw.setdefault("completion_tokens", 100)
    kw["total_tokens"] = kw["prompt_tokens"] + kw["completion_tokens"]
    return LLMCall(provider=provider, model=model, operation="chat", latency_s=0.1, **kw)


def _direct(model: str, provider: str, **usage: int) -> float:
    return float(genai_prices.calc_price(
        genai_prices.Usage(**usage), model, provider_id=provider,
        genai_request_timestamp=datetime.now(timezone.utc)).total_price)


def test_auto_prices_cached_input_and_cache_writes() -> None:
    pricer = AutoPricer()
    assert pricer.source == f"genai-prices {genai_prices.__version__}"
    usd = pricer(_call("gpt-4o-mini", cached_tokens=400))
    assert usd == pytest.approx(_direct("gpt-4o-mini", "openai", input_tokens=1000,
                                        cache_read_tokens=400, output_tokens=100))
    # cached input is cheaper than input: the cache read was priced as such
    assert usd < pricer(_call("gpt-4o-mini"))  # type: ignore[operator]
    claude = pricer(_call("claude-3-5-haiku-latest", "anthropic", prompt_tokens=1000,
                          cached_tokens=200, cache_write_tokens=500))
    assert claude == pytest.approx(_direct(
        "claude-3-5-haiku-latest", "anthropic", input_tokens=1000, cache_read_tokens=200,
        cache_write_tokens=500, output_tokens=100))
    plain = pricer(_call("claude-3-5-haiku-latest", "anthropic", prompt_tokens=1000))
    assert claude != plain  # cache writes and reads are not priced as plain input
    assert pricer(_call("no-such-model-anywhere")) is None


def test_the_users_table_overrides_per_model() -> None:
    table = {"gpt-4o-mini": ModelPrice(1000.0, 2000.0)}
    pricer = AutoPricer(table)
    assert pricer.source == f"genai-prices {genai_prices.__version__} + {table_source(table)}"
    assert pricer(_call("gpt-4o-mini")) == pytest.approx((1000 * 1000 + 100 * 2000) / 1e6)
    assert pricer(_call("gpt-4o")) == pytest.approx(
        _direct("gpt-4o", "openai", input_tokens=1000, output_tokens=100))


@pytest.fixture(scope="module")
def server() -> Iterator[LLMServer]:
    srv = LLMServer().start()
    yield srv
    srv.stop()


NO_FETCH = """
import genai_prices.update_prices as update

def _no_fetch(*args, **kwargs):
    raise AssertionError("genai-prices tried to fetch prices")

update.UpdatePrices.fetch = _no_fetch
update.UpdatePrices.start = _no_fetch
"""


def test_auto_prices_in_the_report(pt: pytest.Pytester, server: LLMServer) -> None:
    pt.makeini(
        """
        [pytest]
        perf_llm_prices =
            auto
            gpt-mine 1000 2000
        """
    )
    pt.makeconftest(NO_FETCH)
    pt.makepyfile(
        f"""
        import anthropic, openai, pytest

        @pytest.mark.perf_budget(cost_usd=1.0, scopes={{"model:claude*": {{"cost_usd": 1e-9}}}})
        def test_calls():
            oa = openai.OpenAI(base_url="{server.base_url}/v1", api_key="t", max_retries=0)
            for model in ("gpt-4o-mini", "gpt-mine"):
                oa.chat.completions.create(model=model, messages=[{{"role": "user",
                    "content": "a b c"}}], extra_headers={{"x-cached": "2"}})
            anthropic.Anthropic(base_url="{server.base_url}", api_key="k").messages.create(
                model="claude-3-5-haiku-latest", max_tokens=10, messages=[{{"role": "user",
                "content": "a b c"}}], extra_headers={{"x-cache-read": "100",
                "x-cache-write": "20"}})
        """
    )
    result = pt.runpytest_subprocess("--perf-report=r.json")
    result.assert_outcomes(failed=1)  # the claude scope's tiny budget, priced from the dataset
    result.stdout.fnmatch_lines(["*perf budget exceeded: model:claude[*] cost_usd * > *"])
    entry = by_id(read_report(pt.path / "r.json"))["test_calls"]
    cost = entry["llm"]["cost"]
    version = genai_prices.__version__
    assert cost["prices"].startswith(f"genai-prices {version} + table ")
    assert cost["complete"] is True
    per_model = entry["llm"]["per_model"]
    assert per_model["gpt-mine"]["cost"]["usd"] == pytest.approx((3 * 1000 + 4 * 2000) / 1e6)
    assert per_model["gpt-4o-mini"]["cost"]["usd"] == pytest.approx(_direct(
        "gpt-4o-mini", "openai", input_tokens=3, cache_read_tokens=2, output_tokens=4))
    assert per_model["claude-3-5-haiku-latest"]["cost"]["usd"] == pytest.approx(_direct(
        "claude-3-5-haiku-latest", "anthropic", input_tokens=123, cache_read_tokens=100,
        cache_write_tokens=20, output_tokens=4))
    assert cost["usd"] == pytest.approx(sum(m["cost"]["usd"] for m in per_model.values()))


def test_auto_without_genai_prices_is_a_clear_usage_error(pt: pytest.Pytester) -> None:
    pt.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n"
               "perf_llm_prices = auto\n")
    pt.makeconftest("import sys\nsys.modules['genai_prices'] = None\n")
    pt.makepyfile("def test_x(): pass")
    result = pt.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*perf_llm_prices ini option: perf_llm_prices = auto needs the genai-prices package: "
        "pip install 'pytest-agentperf[[]prices]'*",
    ])
    # without auto the plugin runs as ever without it
    pt.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pt.runpytest_subprocess().assert_outcomes(passed=1)


def _entry(usd: float, prices: str, complete: bool = True) -> dict[str, Any]:
    return {"nodeid": "t.py::test_x", "outcome": "passed",
            "llm": {"calls": 1, "cost": {"usd": usd, "complete": complete, "prices": prices}}}


def test_the_gate_compares_cost_only_under_the_same_prices() -> None:
    tol = Tolerances()
    same = compare_entries(_entry(0.010, "genai-prices 0.2.3"), _entry(0.020, "genai-prices 0.2.3"),
                           tol)
    (cost,) = [m for m in same.metrics if m.metric == "llm.cost_usd"]
    assert cost.verdict == "regression" and cost.change == pytest.approx(1.0)
    other = compare_entries(_entry(0.010, "table 0123456789ab"),
                            _entry(0.020, "genai-prices 0.2.3"), tol)
    (cost,) = [m for m in other.metrics if m.metric == "llm.cost_usd"]
    assert cost.verdict == "inconclusive"
    assert cost.evidence.note == ("cost not compared: the runs used different prices "
                                  "(table 0123456789ab / genai-prices 0.2.3)")
    # a report from before prices were recorded: cost is left out, as it always was
    old = _entry(0.010, "x")
    del old["llm"]["cost"]["prices"]
    assert not [m for m in compare_entries(old, _entry(0.02, "x"), tol).metrics
                if m.metric == "llm.cost_usd"]
