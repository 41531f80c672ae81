"""Cost of LLM calls from a user-given price table (USD per million tokens).

There are no built-in prices.  A model missing from the table is not an error: the estimate
lists it in ``unpriced_models`` and is not ``complete`` -- as it is when some call's usage is
unknown.  ``usd`` is then a lower bound.  :func:`parse_price_table` validates a table
(from ini or pyproject) and raises ``ValueError`` naming the model and key at fault.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .calls import LLMCall
from .summary import LLMStats

__all__ = [
    "CostEstimate", "ModelPrice", "PriceTable", "TablePricer", "cost_usd", "parse_price_table",
]


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens; ``cached_input_per_mtok`` defaults to ``input_per_mtok``."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None


PriceTable = Mapping[str, ModelPrice]

_KEYS = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok")


def parse_price_table(raw: Mapping[str, Any]) -> dict[str, ModelPrice]:
    """Validate ``{model: {input_per_mtok, output_per_mtok[, cached_input_per_mtok]}}``."""
    table: dict[str, ModelPrice] = {}
    for model, entry in raw.items():
        if isinstance(entry, ModelPrice):
            table[str(model)] = entry
            continue
        if not isinstance(entry, Mapping):
            raise ValueError(f"price of model {model!r} must be a table of USD per 1M tokens")
        unknown = set(entry) - set(_KEYS)
        if unknown:
            raise ValueError(f"price of model {model!r}: unknown key(s) {sorted(unknown)}")
        values: dict[str, float] = {}
        for key in _KEYS:
            if key not in entry:
                if key == "cached_input_per_mtok":
                    continue
                raise ValueError(f"price of model {model!r}: missing {key!r}")
            value = entry[key]
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"price of model {model!r}: {key}={value!r} is not a number"
                ) from None
            if isinstance(value, bool) or not math.isfinite(number) or number < 0:
                raise ValueError(
                    f"price of model {model!r}: {key}={value!r} must be a finite number >= 0"
                )
            values[key] = number
        table[str(model)] = ModelPrice(**values)
    return table


@dataclass(frozen=True)
class CostEstimate:
    """Cost of the calls whose model is priced and whose usage is known."""

    usd: float
    unpriced_models: tuple[str, ...] = ()
    unknown_usage_calls: int = 0

    @property
    def complete(self) -> bool:
        """True when every call was priced: ``usd`` is exact, not a lower bound."""
        return not self.unpriced_models and self.unknown_usage_calls == 0

    def report_section(self) -> dict[str, Any]:
        return {
            "usd": self.usd,
            "complete": self.complete,
            "unpriced_models": list(self.unpriced_models),
            "unknown_usage_calls": self.unknown_usage_calls,
        }


def _price(model: str, prompt: int, cached: int, completion: int, p: ModelPrice) -> float:
    cached_rate = p.input_per_mtok if p.cached_input_per_mtok is None else p.cached_input_per_mtok
    cached = min(cached, prompt)
    return (
        (prompt - cached) * p.input_per_mtok
        + cached * cached_rate
        + completion * p.output_per_mtok
    ) / 1_000_000


def cost_usd(calls: Iterable[LLMCall] | LLMStats, prices: PriceTable) -> CostEstimate:
    """Estimate the cost of ``calls`` (or of an :class:`LLMStats`) with ``prices``."""
    if isinstance(calls, LLMStats):
        per_model = calls.per_model_tokens()
    else:
        per_model = {}
        for c in calls:
            p, k, o, u = per_model.get(c.model, (0, 0, 0, 0))
            if c.total_tokens is None:
                u += 1
            else:
                p += c.prompt_tokens or 0
                k += c.cached_tokens or 0
                o += c.completion_tokens or 0
            per_model[c.model] = (p, k, o, u)
    usd = 0.0
    unpriced: list[str] = []
    unknown = 0
    for model, (prompt, cached, completion, unknown_calls) in per_model.items():
        unknown += unknown_calls
        price = prices.get(model)
        if price is None:
            unpriced.append(model)
            continue
        usd += _price(model, prompt, cached, completion, price)
    return CostEstimate(
        usd=usd, unpriced_models=tuple(sorted(unpriced)), unknown_usage_calls=unknown
    )


class TablePricer:
    """Prices one call from a :data:`PriceTable` (a :data:`~.summary.Pricer`)."""

    def __init__(self, prices: PriceTable) -> None:
        self.prices = prices

    @property
    def source(self) -> str:
        """Names these prices in the report (``"table <digest>"``)."""
        from .prices import table_source

        return table_source(self.prices)

    def __call__(self, call: LLMCall) -> float | None:
        price = self.prices.get(call.model)
        if price is None:
            return None
        return _price(call.model, call.prompt_tokens or 0, call.cached_tokens or 0,
                      call.completion_tokens or 0, price)
