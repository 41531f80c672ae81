"""Hard limits on LLM usage: the call that would cross a limit is refused before it is sent.

A :class:`LimitScope` counts the LLM calls, tokens and cost of the calls made while it is
active and holds up to three limits (``llm_calls``, ``tokens``, ``cost_usd``).  Two kinds
are active for a call:

* the test's own scope (``perf_budget(..., enforce="hard")``), process-wide like the
  capture's sink: calls from every thread and task of the test count;
* the scopes of :func:`limit_scope` blocks (``perf_record.limit(...)``), held in a context
  variable: asyncio tasks created inside a block inherit it, plain threads do not (run them
  with ``contextvars.copy_context().run``).  Blocks nest; every enclosing limit applies.

The SDK patches ask :func:`admit` at the call's start, in the caller's thread or task: a call
past ``llm_calls``, or made when the tokens or cost so far already reached their limit, raises
:class:`BudgetExceeded` there and nothing is sent.  A call's tokens are known only from its
response, so a call may cross the token or cost limit; a *stream* stops (its iterator
raises) at the event whose usage crosses it.  With no limit active the SDK patch pays one
``ContextVar.get`` and one attribute read per call.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..units import fmt_quantity

if TYPE_CHECKING:
    from ._pending import PendingCall
    from .calls import LLMCall

__all__ = [
    "HARD_KEYS", "BudgetExceeded", "LimitScope", "Pricer", "admit", "check_stream",
    "from_call_pricer", "limit_scope",
]

#: the budget keys a hard limit can act on, with their units
HARD_KEYS: dict[str, str] = {"llm_calls": "calls", "tokens": "tokens", "cost_usd": "USD"}

Pricer = Callable[[str, int, int, int], "float | None"]
"""``(model, prompt, cached, completion) -> USD``, ``None`` when the model has no price."""

# one lock for every scope: a call's check and count over all its scopes is atomic, so
# ``llm_calls=3`` lets exactly 3 calls through whatever the number of threads
_LOCK = threading.Lock()
# A ContextVar is a key, not state: each task / copied context holds its own stack.
_SCOPED: contextvars.ContextVar[tuple[LimitScope, ...] | None] = contextvars.ContextVar(
    "pytest_agentperf_llm_limits", default=None
)


class BudgetExceeded(RuntimeError):
    """An LLM call was refused before it was sent (or a stream stopped): a hard limit.

    ``budget`` is the budget key (``llm_calls``, ``tokens``, ``cost_usd``), ``limit`` its
    limit, ``used`` the usage so far when it happened (calls made, tokens, USD), ``scope``
    where the limit was set (``perf_budget`` or ``perf_record.limit``) and ``streamed``
    whether a stream was stopped rather than a call refused.
    """

    def __init__(
        self, budget: str, limit: float, used: float, scope: str, *, streamed: bool = False
    ) -> None:
        self.budget = budget
        self.limit = limit
        self.used = used
        self.scope = scope
        self.streamed = streamed
        super().__init__(self.describe())

    def describe(self) -> str:
        unit = HARD_KEYS.get(self.budget, "")
        used, limit = fmt_quantity(self.used, unit), fmt_quantity(self.limit, unit)
        if self.streamed:
            what = f"{self.budget} {used} > {limit}: stream stopped"
        elif self.budget == "llm_calls":
            what = (f"llm_calls limit {limit} reached: call {int(self.used) + 1} refused "
                    "before it was sent")
        else:
            what = (f"{self.budget} {used} used, limit {limit} reached: call refused "
                    "before it was sent")
        return f"perf budget exceeded: {what} (hard limit, {self.scope})"

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (xdist, multiprocessing)
        return (_rebuild, (self.budget, self.limit, self.used, self.scope, self.streamed))


def _rebuild(budget: str, limit: float, used: float, scope: str,
             streamed: bool) -> BudgetExceeded:
    return BudgetExceeded(budget, limit, used, scope, streamed=streamed)


class LimitScope:
    """Limits and usage of one scope (a test, a ``perf_record.limit`` block)."""

    __slots__ = ("_token", "calls", "cost", "exceeded", "limits", "price", "refused",
                 "source", "stopped", "tokens", "unpriced_calls")

    def __init__(
        self, limits: Mapping[str, float], source: str, price: Pricer | None = None
    ) -> None:
        unknown = set(limits) - set(HARD_KEYS)
        if unknown:
            raise ValueError(f"{source}: no hard limit for {', '.join(sorted(unknown))} "
                             f"(hard limits: {', '.join(HARD_KEYS)})")
        for name, value in limits.items():
            ok = (not isinstance(value, bool) and isinstance(value, (int, float))
                  and value == value and value > 0 and value != float("inf"))
            if not ok:
                raise ValueError(f"{source}: {name}={value!r} must be a finite number > 0")
        if "cost_usd" in limits and price is None:
            raise ValueError(f"{source}: cost_usd needs prices: set the perf_llm_prices "
                             "ini option")
        self.limits = {k: float(v) for k, v in limits.items()}
        self.source = source
        self.price = price
        self.calls = 0
        self.tokens = 0
        self.cost = 0.0
        self.unpriced_calls = 0
        self.refused = 0
        self.stopped = 0
        #: the first limit that acted, as raised
        self.exceeded: BudgetExceeded | None = None
        self._token: contextvars.Token[tuple[LimitScope, ...] | None] | None = None

    def _refusal(self) -> BudgetExceeded | None:
        """Why the next call must not be sent, or ``None`` (caller holds ``_LOCK``)."""
        lim = self.limits
        calls = lim.get("llm_calls")
        if calls is not None and self.calls >= calls:
            return BudgetExceeded("llm_calls", calls, self.calls, self.source)
        tokens = lim.get("tokens")
        if tokens is not None and self.tokens >= tokens:
            return BudgetExceeded("tokens", tokens, self.tokens, self.source)
        cost = lim.get("cost_usd")
        if cost is not None and self.cost >= cost:
            return BudgetExceeded("cost_usd", cost, self.cost, self.source)
        return None

    def _note(self, exc: BudgetExceeded) -> None:
        if exc.streamed:
            self.stopped += 1
        else:
            self.refused += 1
        if self.exceeded is None:
            self.exceeded = exc

    def _call_cost(self, model: str, prompt: int, cached: int, completion: int) -> float | None:
        price = self.price
        return None if price is None else price(model, prompt, cached, completion)

    def section(self) -> dict[str, Any]:
        """The report's view of the scope: limits, usage, what was refused."""
        exc = self.exceeded
        return {
            "limits": dict(self.limits),
            "calls": self.calls,
            "tokens": self.tokens,
            "cost_usd": self.cost if "cost_usd" in self.limits else None,
            "refused_calls": self.refused,
            "stopped_streams": self.stopped,
            "exceeded": None if exc is None else exc.budget,
            "message": None if exc is None else exc.describe(),
        }

    # -- a scoped block (perf_record.limit) ---------------------------------------------
    def __enter__(self) -> LimitScope:
        self._push()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._pop()
        if kind is None and self.exceeded is not None:
            # the block swallowed the refusal: a limit is not advice
            raise self.exceeded

    async def __aenter__(self) -> LimitScope:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(kind, exc, tb)

    def _push(self) -> None:
        stack = _SCOPED.get()
        self._token = _SCOPED.set((*stack, self) if stack else (self,))

    def _pop(self) -> None:
        token, self._token = self._token, None
        if token is None:
            return
        try:
            _SCOPED.reset(token)
        except ValueError:  # exited in another context (a task that outlived the block)
            stack = _SCOPED.get() or ()
            _SCOPED.set(tuple(s for s in stack if s is not self) or None)


def from_call_pricer(price: Callable[[LLMCall], float | None]) -> Pricer:
    """A :data:`Pricer` over a pricer of whole calls (the capture's ``perf_llm_prices``)."""
    from .calls import LLMCall

    def priced(model: str, prompt: int, cached: int, completion: int) -> float | None:
        return price(LLMCall("", model, "", 0.0, prompt_tokens=prompt, cached_tokens=cached,
                             completion_tokens=completion, total_tokens=prompt + completion))

    return priced


def limit_scope(
    source: str = "perf_record.limit", price: Pricer | None = None, **limits: float
) -> LimitScope:
    """A scope to use as ``with`` / ``async with``: LLM calls made inside count toward
    ``limits`` (``llm_calls``, ``tokens``, ``cost_usd``) and are refused past them."""
    if not limits:
        raise ValueError(f"{source}: give at least one of {', '.join(HARD_KEYS)}")
    return LimitScope(limits, source, price)


def current_scopes() -> tuple[LimitScope, ...] | None:
    """The ``limit_scope`` blocks enclosing the current context, outermost first."""
    return _SCOPED.get()


def admit(
    test: LimitScope | None, scoped: tuple[LimitScope, ...] | None
) -> tuple[LimitScope, ...]:
    """Count a call that is about to be sent in every active scope, or refuse it.

    Raises :class:`BudgetExceeded` (counting nothing) when any scope's limit is reached.
    """
    scopes = scoped or ()
    if test is not None:
        scopes = (test, *scopes)
    with _LOCK:
        for scope in scopes:
            exc = scope._refusal()
            if exc is not None:
                scope._note(exc)
                break
        else:
            for scope in scopes:
                scope.calls += 1
            return scopes
    raise exc


def account(scopes: tuple[LimitScope, ...], call: LLMCall) -> None:
    """A call counted by ``scopes`` finished: add its tokens and cost."""
    total = call.total_tokens
    if total is None:
        return
    with _LOCK:
        for scope in scopes:
            scope.tokens += total
            if scope.price is not None:
                cost = scope._call_cost(call.model, call.prompt_tokens or 0,
                                        call.cached_tokens or 0, call.completion_tokens or 0)
                if cost is None:
                    scope.unpriced_calls += 1
                else:
                    scope.cost += cost


def check_stream(pending: PendingCall) -> None:
    """Stop a stream whose usage so far takes a scope past its token or cost limit."""
    scopes = pending.limits
    total = pending.total_tokens
    if not scopes or total is None:
        return
    model = pending.model or pending.response_model or "unknown"
    for scope in scopes:
        lim = scope.limits
        tokens = lim.get("tokens")
        if tokens is not None and scope.tokens + total > tokens:
            exc = BudgetExceeded("tokens", tokens, scope.tokens + total, scope.source,
                                 streamed=True)
        else:
            cost = lim.get("cost_usd")
            if cost is None:
                continue
            spent = scope._call_cost(model, pending.prompt_tokens or 0,
                                     pending.cached_tokens or 0, pending.completion_tokens or 0)
            if spent is None or scope.cost + spent <= cost:
                continue
            exc = BudgetExceeded("cost_usd", cost, scope.cost + spent, scope.source,
                                 streamed=True)
        with _LOCK:
            scope._note(exc)
        raise exc
