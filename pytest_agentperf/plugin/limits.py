"""Hard limits of a test (``perf_budget(..., enforce="hard")``): wiring and verdicts.

The limits themselves live in :mod:`pytest_agentperf.llm.limits` (no pytest there); this
module makes the test's :class:`~pytest_agentperf.llm.limits.LimitScope` from its budget,
turns what the scope refused into budget violations, and makes a test that a hard limit
stopped fail with the budget's message instead of a traceback into the SDK.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import pytest

from ..budgets import BUDGET_KEYS, BUDGET_OPTIONS, BudgetError, Violation

if TYPE_CHECKING:
    from ..llm.limits import BudgetExceeded, LimitScope

__all__ = ["ENFORCE_KEY", "HARD_SCOPE_KEY", "budget_exception", "check_enforce",
           "hard_scope", "hard_violations", "where_raised"]

#: the test's ``enforce`` option (closest marker wins), when a marker set one
ENFORCE_KEY = pytest.StashKey[str]()
#: the running test's hard-limit scope
HARD_SCOPE_KEY = pytest.StashKey["LimitScope"]()


def check_enforce(enforce: str | None, budget: dict[str, float], prices: Any,
                  source: str) -> None:
    """A hard budget needs a limit it can act on, and prices for ``cost_usd``."""
    if enforce != "hard":
        return
    keys = BUDGET_OPTIONS["enforce"].keys
    if not any(k in budget for k in keys):
        raise BudgetError(f"{source}: enforce='hard' acts on {', '.join(keys)}; the budget "
                          f"has none of them ({', '.join(budget) or 'no limits'})")
    if "cost_usd" in budget and prices is None:
        raise BudgetError(f"{source}: enforce='hard' with cost_usd needs prices: set the "
                          "perf_llm_prices ini option")


def hard_scope(item: pytest.Item, budget: dict[str, float] | None,
               prices: Any) -> LimitScope | None:
    """The test's hard-limit scope (kept in the item's stash), or ``None``."""
    if budget is None or item.stash.get(ENFORCE_KEY, "after") != "hard":
        return None
    from ..llm.limits import LimitScope, from_call_pricer

    keys = BUDGET_OPTIONS["enforce"].keys
    scope = LimitScope({k: v for k, v in budget.items() if k in keys},
                       "perf_budget enforce='hard'",
                       from_call_pricer(prices) if prices is not None else None)
    item.stash[HARD_SCOPE_KEY] = scope
    return scope


def hard_violations(scope: LimitScope) -> list[Violation]:
    """What the test's hard limits stopped, as violations (the first one that acted)."""
    exc = scope.exceeded
    if exc is None:
        return []
    key = BUDGET_KEYS[exc.budget]
    refused, stopped = scope.refused, scope.stopped
    parts = []
    if refused:
        made = scope.calls
        parts.append(f"{made} call{'s' if made != 1 else ''} made, {refused} refused before "
                     f"{'they were' if refused != 1 else 'it was'} sent")
    if stopped:
        parts.append(f"{stopped} stream{'s' if stopped != 1 else ''} stopped")
    note = "hard limit: " + ", ".join(parts)
    # the value says what the test tried: calls made plus the one refused; tokens/cost used
    value = float(scope.calls + refused) if exc.budget == "llm_calls" else exc.used
    return [Violation(exc.budget, value, exc.limit, key.unit, None, note)]


def budget_exception(
    excinfo: pytest.ExceptionInfo[BaseException] | None,
) -> BudgetExceeded | None:
    """The :class:`BudgetExceeded` that ended the test, also when wrapped by the agent code
    (``raise ... from``, an exception group), else ``None``."""
    if excinfo is None:
        return None
    if "pytest_agentperf.llm.limits" not in sys.modules:  # no hard limit can have acted
        return None
    from ..llm.limits import BudgetExceeded as exceeded
    seen: set[int] = set()
    todo: list[BaseException] = [excinfo.value]
    while todo:
        exc = todo.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, exceeded):
            return exc
        todo.extend(e for e in (exc.__cause__, exc.__context__) if e is not None)
        todo.extend(getattr(exc, "exceptions", ()) or ())
    return None


def where_raised(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """``file:line in function`` of the test's innermost frame in its own file."""
    path = getattr(item, "path", None)
    for entry in reversed(excinfo.traceback):
        if path is not None and entry.path == path:
            return f"{os.path.basename(entry.path)}:{entry.lineno + 1} in {entry.name}"
    return ""
