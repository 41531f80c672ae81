"""Overhead of LLM call capture per call, against the same calls uncaptured.

One run, one client per SDK; calls interleave three modes, one call each in a shuffled order:

* ``off``     -- SDKs not patched (the reference);
* ``idle``    -- patched, capture not started (the state between tests);
* ``on``      -- patched and started, every call recorded into an ``LLMStats``.

The reference workload is chosen by ``--transport``:

* ``mock`` (default): the SDK clients get an ``httpx2.MockTransport`` serving canned responses,
  recorded once at start-up from the loopback server below -- the same bytes, without sockets
  or a server thread, so the time measured is the SDK's own work plus the capture's.  This is
  the tighter reference (a smaller denominator) and far less noisy on a shared machine.
* ``loopback``: a real local server (tests/llm_server.py: aiohttp on 127.0.0.1, port 0).

It prints, per workload and mode, the median wall time, thread CPU time and process CPU time
of a call and their ratio to ``off`` (target: on <= 1.05).  ``--rounds N`` repeats the whole
interleaved measurement and reports the median and the best round's worst ratio.  Then the
capture's own work per call measured alone and the cost of ``LLMCapture.ensure_installed()``
when nothing changed.

    python bench/bench_llm_capture.py [--quick] [--transport mock|loopback] [--rounds N]
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
import httpx2
import openai

from pytest_agentperf.llm import LLMCapture, LLMStats

from llm_server import LLMServer

MSG = [{"role": "user", "content": "one two three"}]


def workloads(
    srv: LLMServer, transport: Any = None
) -> tuple[dict[str, Callable[[], Any]], list[Any]]:
    def http() -> Any:
        return None if transport is None else httpx2.Client(transport=transport)

    oc = openai.OpenAI(
        base_url=srv.base_url + "/v1", api_key="k", max_retries=0, http_client=http()
    )
    ac = anthropic.Anthropic(
        base_url=srv.base_url, api_key="k", max_retries=0, open_telemetry=False,
        http_client=http(),
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


def direct_overhead_us(cap: LLMCapture) -> float:
    """What the patches add to one non-streamed chat call, without the network around it:
    the call's start in ``request``, tying its HTTP request in ``_build_request``, the
    safety net's check in ``send``, and reading the result in ``_parse``."""
    from types import SimpleNamespace

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
    cap.start(stats.add, stats.add_uncaptured)

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
        return min(timeit.repeat(one, number=n, repeat=5, timer=time.thread_time)) / n * 1e6
    finally:
        cap.stop()


class Recorder(httpx2.BaseTransport):
    """Sends through a real transport once per request shape, then serves the recorded bytes
    (status, content type, body) from memory: the canned reference workload."""

    def __init__(self) -> None:
        self._real = httpx2.HTTPTransport()
        self.canned: dict[tuple[str, bytes], tuple[int, str, bytes]] = {}

    @staticmethod
    def _key(request: Any) -> tuple[str, bytes]:
        return request.url.path, request.content

    def handle_request(self, request: Any) -> Any:
        key = self._key(request)
        hit = self.canned.get(key)
        if hit is None:
            response = self._real.handle_request(request)
            body = response.read()
            response.close()
            hit = self.canned[key] = (
                response.status_code, response.headers.get("content-type", ""), body
            )
        status, ctype, body = hit
        return httpx2.Response(status, headers={"content-type": ctype}, content=body)


Times = dict[str, dict[str, dict[str, list[float]]]]  # clock -> workload -> mode -> samples


def one_round(
    loads: dict[str, Callable[[], Any]], cap: LLMCapture, stats: LLMStats, triples: int,
    budget_s: float, rng: random.Random,
) -> tuple[Times, int]:
    modes = ("off", "idle", "on")
    clocks = ("wall", "thread", "process")
    times: Times = {c: {w: {m: [] for m in modes} for w in loads} for c in clocks}
    per_load = budget_s / len(loads)
    done = 0
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
                p0 = time.process_time()
                c0 = time.thread_time()
                t0 = time.perf_counter()
                fn()
                t1 = time.perf_counter()
                c1 = time.thread_time()
                p1 = time.process_time()
                times["wall"][name][mode].append(t1 - t0)
                times["thread"][name][mode].append(c1 - c0)
                times["process"][name][mode].append(p1 - p0)
                cap.stop()
            done += 1
    return times, done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--transport", choices=("mock", "loopback"), default="mock")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    triples, budget_s = (60, 7.0) if args.quick else (400, 70.0)
    budget_s /= args.rounds

    srv = LLMServer().start()
    cap = LLMCapture(attach_global_otel=False)
    stats = LLMStats()
    recorder = Recorder() if args.transport == "mock" else None
    loads, clients = workloads(srv, recorder)
    rng = random.Random(1)
    rounds: list[tuple[Times, int]] = []
    try:
        for fn in loads.values():  # warm-up: connections, pydantic models, the recording
            for _ in range(5):
                fn()
        for _ in range(args.rounds):
            rounds.append(one_round(loads, cap, stats, triples, budget_s, rng))
        cap.ensure_installed()
        direct_us = direct_overhead_us(cap)
        ensure_ns = min(timeit.repeat(cap.ensure_installed, number=10_000, repeat=5)) / 10_000 * 1e9
    finally:
        cap.uninstall()
        for c in clients:
            c.close()
        srv.stop()

    print(f"reference: {args.transport}"
          + (" (httpx2.MockTransport serving responses recorded from the loopback server)"
             if recorder is not None else " (aiohttp server on 127.0.0.1)"))
    print("wall = elapsed time of a call; thread = CPU time of the calling thread (what the")
    print("capture adds to); process = CPU time of the whole process (with --transport")
    print("loopback it includes the server thread).  Medians per call, ratio to 'off'.")
    worsts: list[dict[str, float]] = []
    fastests: list[dict[str, float]] = []
    for i, (times, done) in enumerate(rounds, 1):
        fastest = {"wall": 0.0, "thread": 0.0, "process": 0.0}
        print(f"\nround {i}: {done} triples (one call per mode each, shuffled)")
        print(f"{'workload':24} {'mode':5} {'wall us':>9} {'ratio':>6} {'thread us':>9}"
              f" {'ratio':>6} {'proc us':>8} {'ratio':>6}")
        worst = {"wall": 0.0, "thread": 0.0, "process": 0.0}
        for name in loads:
            for c in times:  # the fastest call of each mode: least disturbed by the machine
                best = times[c][name]["on"], times[c][name]["off"]
                fastest[c] = max(fastest[c], min(best[0]) / min(best[1]))
            med = {c: {m: statistics.median(v) for m, v in times[c][name].items()}
                   for c in times}
            for mode in ("off", "idle", "on"):
                ratios = {c: med[c][mode] / med[c]["off"] for c in med}
                if mode == "on":
                    for c in worst:
                        worst[c] = max(worst[c], ratios[c])
                print(f"{name:24} {mode:5} {med['wall'][mode] * 1e6:9.1f} {ratios['wall']:6.3f}"
                      f" {med['thread'][mode] * 1e6:9.1f} {ratios['thread']:6.3f}"
                      f" {med['process'][mode] * 1e6:8.1f} {ratios['process']:6.3f}")
        print(f"round {i} worst on/off of medians: wall {worst['wall']:.3f}, thread cpu"
              f" {worst['thread']:.3f}, process cpu {worst['process']:.3f}")
        print(f"round {i} worst on/off of fastest calls: wall {fastest['wall']:.3f}, thread cpu"
              f" {fastest['thread']:.3f}, process cpu {fastest['process']:.3f}")
        worsts.append(worst)
        fastests.append(dict(fastest))
    print()
    print("worst on/off over the workloads (target <= 1.05), per clock: median and best of the")
    print("rounds' figures; 'medians' compares median calls, 'fastest' the fastest call of")
    print("each mode")
    for clock in ("wall", "thread", "process"):
        for label, table in (("medians", worsts), ("fastest", fastests)):
            values = [w[clock] for w in table]
            print(f"  {clock:7} {label}: median {statistics.median(values):.3f},"
                  f" best {min(values):.3f}")
    print(f"recorded calls: {stats.calls}, uncaptured requests: {stats.uncaptured_calls}")
    print("capture's own work per non-streamed call (request classification, agent lookup,")
    print(f"usage read, record into LLMStats), measured alone: {direct_us:.1f} us")
    offs = [statistics.median(rounds[0][0]["thread"][n]["off"]) * 1e6 for n in loads]
    est = max((off + direct_us) / off for off in offs)
    print(f"worst ratio implied by it, (off + own work) / off (thread cpu): {est:.3f}")
    print(f"ensure_installed() with nothing new: {ensure_ns:.0f} ns")


if __name__ == "__main__":
    main()
