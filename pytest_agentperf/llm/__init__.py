"""Automatic capture of LLM calls (tokens, latency, time to first token, model, agent).

Sources: the official ``openai`` and ``anthropic`` SDKs (patched only once they are imported,
never imported from here) and OpenTelemetry GenAI spans (:class:`GenAISpanProcessor`).
Nothing in this package imports pytest, an SDK or OpenTelemetry.

Report sections (:meth:`LLMStats.report_section`)::

    tokens: {total, prompt, completion, cached, reasoning, unknown_calls}
    llm:    {calls, streamed_calls, retries, errors,
             per_model: {model: {calls, prompt, completion, total, unknown_calls}},
             per_agent: {agent: {...same...}}, ttft_p95_s}

Token sums cover the calls whose usage the provider reported; ``unknown_calls`` counts the
others (a stream without ``include_usage``), whose tokens are unknown, not 0.  ``cached`` and
``reasoning`` are ``None`` when no call reported them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .calls import CallSink, LLMCall, agent_scope, current_agent
    from .capture import LLMCapture
    from .cost import CostEstimate, ModelPrice, PriceTable, cost_usd, parse_price_table
    from .limits import BudgetExceeded, LimitScope, limit_scope
    from .otel import GenAISpanProcessor
    from .summary import LLMOperationSamples, LLMStats, aggregate_calls, operation_samples

# Names are loaded on first use, so that ``pytest_agentperf.llm.import_hook`` (installed at
# plugin start-up) does not pull in the whole capture.
_HOMES = {
    "CallSink": "calls", "LLMCall": "calls", "agent_scope": "calls", "current_agent": "calls",
    "LLMCapture": "capture",
    "BudgetExceeded": "limits", "LimitScope": "limits", "limit_scope": "limits",
    "CostEstimate": "cost", "ModelPrice": "cost", "PriceTable": "cost", "cost_usd": "cost",
    "parse_price_table": "cost",
    "GenAISpanProcessor": "otel",
    "LLMOperationSamples": "summary", "LLMStats": "summary", "aggregate_calls": "summary",
    "operation_samples": "summary",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "BudgetExceeded",
    "CallSink",
    "CostEstimate",
    "GenAISpanProcessor",
    "LLMCall",
    "LLMCapture",
    "LLMOperationSamples",
    "LLMStats",
    "LimitScope",
    "ModelPrice",
    "PriceTable",
    "agent_scope",
    "aggregate_calls",
    "cost_usd",
    "current_agent",
    "limit_scope",
    "operation_samples",
    "parse_price_table",
]
