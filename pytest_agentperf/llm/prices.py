"""Current prices from the genai-prices dataset (``perf_llm_prices = auto``).

`genai-prices <https://pypi.org/project/genai-prices/>`_ (the ``[prices]`` extra) ships a
maintained dataset of model prices with the dates they changed.  :class:`AutoPricer` prices
each call from it at the call's time -- input, cached input (cache reads) and cache writes
where the provider reported them, and output -- and a user's price table overrides it per
model.  Only the dataset bundled with the installed package is used: nothing here starts
genai-prices' ``UpdatePrices`` (which would fetch a newer dataset over the network), so the
prices of a run are those of the package version the report names.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any

from .calls import LLMCall
from .cost import PriceTable, TablePricer

__all__ = ["AutoPricer", "PricesUnavailable", "table_source"]

#: distinct (model, provider, usage, day) prices remembered
_MEMO = 4096
#: our provider names -> genai-prices provider ids (others: found from the model name)
_PROVIDERS = {"openai": "openai", "anthropic": "anthropic"}


class PricesUnavailable(RuntimeError):
    """``auto`` prices were asked for and genai-prices is not installed."""


def table_source(prices: PriceTable) -> str:
    """``"table <digest>"``: names the user's table, so two runs can tell they used the same."""
    text = ";".join(
        f"{model}={p.input_per_mtok},{p.output_per_mtok},{p.cached_input_per_mtok}"
        for model, p in sorted(prices.items()))
    return f"table {hashlib.sha256(text.encode()).hexdigest()[:12]}"


class AutoPricer:
    """A :data:`~.summary.Pricer` over genai-prices' bundled dataset, ``table`` first.

    ``source`` names the prices (``"genai-prices 0.2.3"``, plus the table's digest when one
    overrides some models); the report records it and the regression gate compares cost only
    between runs whose ``source`` is the same.
    """

    def __init__(self, table: PriceTable | None = None) -> None:
        try:
            import genai_prices
        except ImportError:
            raise PricesUnavailable(
                "perf_llm_prices = auto needs the genai-prices package: "
                "pip install 'pytest-agentperf[prices]' (or give a price table instead)"
            ) from None
        self._calc: Any = genai_prices.calc_price
        self._usage: Any = genai_prices.Usage
        self.version = str(genai_prices.__version__)
        self.table = dict(table or {})
        self._table = TablePricer(self.table) if self.table else None
        self.source = f"genai-prices {self.version}"
        if self.table:
            self.source += f" + {table_source(self.table)}"
        self._memo: OrderedDict[tuple[Any, ...], float | None] = OrderedDict()
        self._lock = threading.Lock()
        # the dataset is parsed on first use: do it now, not inside the first test that
        # calls an LLM (it takes about a second and tens of MiB)
        self._price("gpt-4o-mini", "openai", 1, 0, 0, 1, datetime.now(timezone.utc))

    def __call__(self, call: LLMCall) -> float | None:
        if self._table is not None and call.model in self.table:
            return self._table(call)
        return self._price(call.model, call.provider, call.prompt_tokens or 0,
                           call.cached_tokens or 0, call.cache_write_tokens or 0,
                           call.completion_tokens or 0, datetime.now(timezone.utc))

    def _price(self, model: str, provider: str, prompt: int, cached: int, written: int,
               completion: int, when: datetime) -> float | None:
        key = (model, provider, prompt, cached, written, completion, when.date())
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        usage: dict[str, int] = {"input_tokens": prompt, "output_tokens": completion}
        if cached:
            usage["cache_read_tokens"] = min(cached, prompt)
        if written:
            usage["cache_write_tokens"] = written
        try:
            result = self._calc(self._usage(**usage), model,
                                provider_id=_PROVIDERS.get(provider),
                                genai_request_timestamp=when)
            usd: float | None = float(result.total_price)
        except (LookupError, ValueError, ArithmeticError):  # a model it does not price
            usd = None
        with self._lock:
            self._memo[key] = usd
            if len(self._memo) > _MEMO:
                self._memo.popitem(last=False)
        return usd
