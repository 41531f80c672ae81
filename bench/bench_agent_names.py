"""Cost of naming agents in LangChain / LangGraph runs (pytest_agentperf.llm.langchain_names).

One process, a two-node LangGraph whose nodes call LangChain's in-memory fake chat model (no
network, no SDK), so the time measured is LangChain's own run and callback machinery — the
worst case for the handler, whose work is a small fixed cost per model run.  Runs interleave
two modes, one graph invocation each in a shuffled order:

* ``off`` -- the handler's context variable cleared in that run's context (LangChain adds no
  handler: the reference);
* ``noop`` -- a do-nothing handler with the same settings in its place: what LangChain
  itself costs for having any handler at all;
* ``on``  -- the handler added to the run, naming each model call's agent.

It prints the median time per graph invocation of each mode and the ratio on/off.

    python bench/bench_agent_names.py [--quick]
"""

from __future__ import annotations

import argparse
import contextvars
import random
import statistics
import time
from typing import Any, TypedDict

import langchain_core
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langgraph.graph import END, START, StateGraph

from pytest_agentperf.llm.calls import current_agent
from pytest_agentperf.llm.langchain_names import install


class State(TypedDict):
    text: str


def build() -> Any:
    llm = FakeListChatModel(responses=["ok"])
    seen: list[str | None] = []

    def planner(state: State) -> dict[str, str]:
        return {"text": str(llm.invoke("plan").content)}

    def writer(state: State) -> dict[str, str]:
        seen.append(current_agent())
        return {"text": str(llm.invoke("write " + state["text"]).content)}

    graph = StateGraph(State)
    graph.add_node("planner", planner)
    graph.add_node("writer", writer)
    graph.add_edge(START, "planner")
    graph.add_edge("planner", "writer")
    graph.add_edge("writer", END)
    return graph.compile()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    rounds = 200 if parser.parse_args().quick else 2000
    handler = install(langchain_core)
    var = next(v for v, *_ in langchain_core.tracers.context._configure_hooks
               if v.get() is handler)
    graph = build()
    off_ctx = contextvars.copy_context()
    off_ctx.run(var.set, None)
    base: Any = type(handler).__mro__[1]  # BaseCallbackHandler
    flags = ("run_inline", "ignore_chain", "ignore_agent", "ignore_retriever", "ignore_retry",
             "ignore_custom_event")
    noop = type("Noop", (base,), dict.fromkeys(flags, True))()
    noop_ctx = contextvars.copy_context()
    noop_ctx.run(var.set, noop)
    modes = {
        "off": lambda: off_ctx.run(graph.invoke, {"text": ""}),
        "noop": lambda: noop_ctx.run(graph.invoke, {"text": ""}),
        "on": lambda: graph.invoke({"text": ""}),
    }
    for fn in modes.values():  # warm up
        for _ in range(20):
            fn()
    times: dict[str, list[float]] = {m: [] for m in modes}
    order = list(modes) * rounds
    random.shuffle(order)
    for mode in order:
        t0 = time.perf_counter()
        modes[mode]()
        times[mode].append(time.perf_counter() - t0)
    off = statistics.median(times["off"])
    for mode, ts in times.items():
        med = statistics.median(ts)
        print(f"{mode:4} median {med * 1e6:9.1f} us per graph run (2 model calls)"
              f"  ratio {med / off:5.3f}")
    print(f"open scopes left: {len(handler.scopes)}")


if __name__ == "__main__":
    main()
