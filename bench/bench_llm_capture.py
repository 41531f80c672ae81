"""Overhead of LLM call capture per call, on loopback, against the same calls uncaptured.

One run, one local server (tests/llm_server.py: aiohttp on 127.0.0.1, port 0), one client per
SDK; calls interleave three modes, one call each in a shuffled order:

* ``off``     -- SDKs not patched (the reference);
* ``idle``    -- patched, capture not started (the state between tests);
* ``on``      -- patched and started, every call recorded into an ``LLMStats``.

It prints the median time per call of each mode and the ratio to ``off`` (target: on <= 1.05),
then the cost of ``LLMCapture.ensure_installed()`` when nothing changed.

    /work/venv/bin/python bench/bench_llm_capture.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import anthropic
import openai

from pytest_agentperf.llm import LLMCapture, LLMStats

from llm_server import LLMServer

MSG = [{"role": "user", "content": "one two three"}]


def workloads(srv: LLMServer) -> tuple[dict[str, Callable[[], Any]], list[Any]]:
    oc = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="k", max_retries=0)
    ac = anthropic.Anthropic(
        base_url=srv.base_url, api_key="k", max_retries=0, open_telemetry=False
    )

    def chat() -> None:
        oc.chat.completions.create(model="gpt", messages=MSG)

    def chat_stream() -> None:
        for _ in oc.chat.completions.create(
            model="gpt", messages=MSG, stream=True, stream_options={"include_usage": True}
        ):
            pass

    def chat_raw() -> None:  # langchain-openai, litellm: with_raw_response, parsed later
        oc.chat.completions.with_raw_response.create(model="gpt", messages=MSG).parse()

    def chat_raw_stream() -> None:
        raw = oc.chat.completions.with_raw_response.create(
            model="gpt", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
        for _ in raw.parse():
            pass

    def responses() -> None:
        oc.responses.create(model="gpt", input="one two three")

    def messages() -> None:
        ac.messages.create(model="claude", max_tokens=5, messages=MSG)

    def messages_stream() -> None:
        for _ in ac.messages.create(model="claude", max_tokens=5, messages=MSG, stream=True):
            pass

    return {
        "openai chat": chat,
        "openai chat stream": chat_stream,
        "openai chat raw": chat_raw,
        "openai chat raw stream": chat_raw_stream,
        "openai responses": responses,
        "anthropic messages": messages,
        "anthropic stream": messages_stream,
    }, [oc, ac]


def direct_overhead_us(cap: LLMCapture, limits: Any = None, scoped: Any = None) -> float:
    """What the patches add to one non-streamed chat call, without the network around it:
    the call's start in ``request``, tying its HTTP request in ``_build_request``, the
    safety net's check in ``send``, and reading the result in ``_parse``."""
    from types import SimpleNamespace

    import httpx2
    from openai.types.chat import ChatCompletion

    patch = cap._patches[0]
    result = ChatCompletion.model_validate({
        "id": "c", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4,
                  "prompt_tokens_details": {"cached_tokens": 0}},
    })
    options = SimpleNamespace(method="post", url="/chat/completions", json_data={"model": "m"})
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    net = cap._nets[1]
    stats = LLMStats()
    cap.start(stats.add, stats.add_uncaptured, limits)
    if scoped is not None:
        scoped.__enter__()

    def one() -> None:
        pending = patch._begin(options)
        assert pending is not None
        token = cap.inflight.set(pending)
        patch.requests[request] = pending
        net.check(request)
        patch.requests.pop(request)
        patch._after(pending, result)
        cap.inflight.reset(token)

    try:
        n = 5_000
        return min(timeit.repeat(one, number=n, repeat=5)) / n * 1e6
    finally:
        if scoped is not None:
            scoped.__exit__(None, None, None)
        cap.stop()


def limit_overheads_us(cap: LLMCapture) -> dict[str, float]:
    """The capture's own work per call with no hard limit, with the test's
    (``enforce="hard"``) and with a ``perf_record.limit`` block around it as well; the
    modes interleave five times and the best of each is kept."""
    from pytest_agentperf.llm.limits import LimitScope, current_scopes

    def check() -> bool:  # what _begin adds when no limit is set
        return cap.limits is not None or current_scopes() is not None

    n = 200_000
    check_us = min(timeit.repeat(check, number=n, repeat=5)) / n * 1e6
    big = {"llm_calls": 10**12, "tokens": 10**15}
    best = {"no limit": float("inf"), "test limit": float("inf"),
            "test + block": float("inf"), "check alone": check_us}
    for _ in range(5):
        best["no limit"] = min(best["no limit"], direct_overhead_us(cap))
        best["test limit"] = min(best["test limit"],
                                 direct_overhead_us(cap, LimitScope(big, "bench")))
        best["test + block"] = min(best["test + block"], direct_overhead_us(
            cap, LimitScope(big, "bench"), LimitScope(big, "bench block")))
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    triples, budget_s = (60, 7.0) if args.quick else (400, 70.0)

    srv = LLMServer().start()
    cap = LLMCapture(attach_global_otel=False)
    stats = LLMStats()
    loads, clients = workloads(srv)
    modes = ("off", "idle", "on")
    times: dict[str, dict[str, list[float]]] = {w: {m: [] for m in modes} for w in loads}
    cpu: dict[str, dict[str, list[float]]] = {w: {m: [] for m in modes} for w in loads}
    rng = random.Random(1)
    per_load = budget_s / len(loads)
    done = 0
    try:
        for fn in loads.values():  # warm-up: connections, pydantic models
            for _ in range(5):
                fn()
        for name, fn in loads.items():
            deadline = time.perf_counter() + per_load
            for _ in range(triples):  # one call per mode, in a shuffled order, per triple
                if time.perf_counter() > deadline:
                    break
                order = list(modes)
                rng.shuffle(order)
                for mode in order:
                    if mode == "off":
                        cap.uninstall()
                    else:
                        cap.ensure_installed()
                        if mode == "on":
                            cap.start(stats.add, stats.add_uncaptured)
                    c0 = time.thread_time()
                    t0 = time.perf_counter()
                    fn()
                    times[name][mode].append(time.perf_counter() - t0)
                    cpu[name][mode].append(time.thread_time() - c0)
                    cap.stop()
                done += 1
        cap.ensure_installed()
        direct_us = direct_overhead_us(cap)
        limit_us = limit_overheads_us(cap)
        ensure_ns = min(timeit.repeat(cap.ensure_installed, number=10_000, repeat=5)) / 10_000 * 1e9
    finally:
        cap.uninstall()
        for c in clients:
            c.close()
        srv.stop()

    print(f"{done} triples (one call per mode each, shuffled); medians per call")
    print("wall = elapsed time of the call; cpu = CPU time of the calling thread (the server")
    print("runs in another thread), which is what capture adds to and is far less noisy.")
    head = f"{'workload':20} {'mode':5} {'wall us':>9} {'ratio':>7} {'cpu us':>8} {'ratio':>7}"
    print(head)
    worst = {"wall": 0.0, "cpu": 0.0}
    for name in loads:
        wall = {m: statistics.median(v) for m, v in times[name].items()}
        cpus = {m: statistics.median(v) for m, v in cpu[name].items()}
        for mode in modes:
            rw, rc = wall[mode] / wall["off"], cpus[mode] / cpus["off"]
            if mode == "on":
                worst["wall"] = max(worst["wall"], rw)
                worst["cpu"] = max(worst["cpu"], rc)
            print(
                f"{name:20} {mode:5} {wall[mode] * 1e6:9.1f} {rw:7.3f}"
                f" {cpus[mode] * 1e6:8.1f} {rc:7.3f}"
            )
    print(f"worst on/off: wall {worst['wall']:.3f}, cpu {worst['cpu']:.3f} (target <= 1.05)")
    print(f"recorded calls: {stats.calls}, uncaptured requests: {stats.uncaptured_calls}")
    print("capture's own work per non-streamed call (request classification, agent lookup,")
    print(f"usage read, record into LLMStats), measured alone: {direct_us:.1f} us")
    offs = [statistics.median(times[n]["off"]) * 1e6 for n in loads]
    est = max((off + direct_us) / off for off in offs)
    print(f"worst ratio implied by it, (off + own work) / off: {est:.3f}")
    print("hard limits, capture's own work per call (best of 5 interleaved rounds):")
    print("  ('check alone': the no-limit check _begin adds, a ContextVar.get and an"
          " attribute read)")
    for mode, us in limit_us.items():
        print(f"  {mode:13} {us:6.2f} us  ratio to no limit {us / limit_us['no limit']:.3f}"
              f"  implied call ratio {max((o + us) / o for o in offs):.4f}")
    print(f"ensure_installed() with nothing new: {ensure_ns:.0f} ns")


if __name__ == "__main__":
    main()
