"""Instructions a call gains with LLM capture on, counted by callgrind: a figure a busy
machine does not disturb, beside the timings of ``bench_llm_capture.py``.

It runs the workloads of ``bench_llm_capture.py`` against its strict reference (the
``httpx2.MockTransport`` serving recorded responses: no server thread, so the count is the
calling thread's) under ``valgrind --tool=callgrind``; for each workload, ``N`` calls with the
capture off, then ``N`` on, twice, each counted alone (counters zeroed and dumped through
``callgrind_control`` between phases).  It prints the instructions per call of each mode and
the ratio on/off; with ``--cache-sim`` also the simulated L1/LL cache misses and branch
mispredictions, folded into a rough cycle estimate (Ir + 10 per L1 miss + 100 per LL miss +
15 per mispredicted branch).  Needs valgrind; slow (about 50x): ``-n`` keeps it short.

    python bench/callgrind_llm_capture.py [-n 10] [--cache-sim]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

EVENTS = ("Ir", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw", "Bcm", "Bim")


def child(fifo_out: str, fifo_in: str, n: int) -> None:
    """Inside valgrind: run the phases, asking the controller to zero/dump around each."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_llm_capture as bench  # puts tests/ on sys.path

    from pytest_agentperf.llm import LLMCapture, LLMStats

    from llm_server import LLMServer

    srv = LLMServer().start()
    cap = LLMCapture(attach_global_otel=False)
    stats = LLMStats()
    loads, clients = bench.workloads(srv, bench.Recorder())
    with open(fifo_out, "w") as out, open(fifo_in) as inp:

        def ask(cmd: str) -> None:
            out.write(cmd + "\n")
            out.flush()
            inp.readline()

        def run(mode: str, fn: Any) -> None:
            if mode == "off":
                cap.uninstall()
            else:
                cap.ensure_installed()
                cap.start(stats.add, stats.add_uncaptured)
            fn()
            cap.stop()

        try:
            for name, fn in loads.items():
                for mode in ("off", "on", "off", "on"):
                    for _ in range(5):
                        run(mode, fn)
                    ask("zero")
                    for _ in range(n):
                        run(mode, fn)
                    ask(f"dump {name.replace(' ', '_')}-{mode}")
            ask("end")
        finally:
            cap.uninstall()
            for c in clients:
                c.close()
            srv.stop()


def controller(n: int, cache_sim: bool) -> None:
    work = tempfile.mkdtemp(prefix="cg-llm-")
    fifo_out, fifo_in = os.path.join(work, "o"), os.path.join(work, "i")
    os.mkfifo(fifo_out)
    os.mkfifo(fifo_in)
    sims = ["--cache-sim=yes", "--branch-sim=yes"] if cache_sim else []
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={work}/cg.%p", *sims,
         sys.executable, __file__, "--child", fifo_out, fifo_in, str(n)],
        stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    with open(fifo_out) as out, open(fifo_in, "w") as inp:
        for line in out:
            cmd, _, arg = line.strip().partition(" ")
            if cmd == "end":
                inp.write("ok\n")
                inp.flush()
                break
            flag = ["-z"] if cmd == "zero" else ["-d", arg]
            subprocess.run(["callgrind_control", *flag, str(proc.pid)], capture_output=True,
                           check=False)
            inp.write("ok\n")
            inp.flush()
    proc.wait()
    phases: dict[str, list[dict[str, int]]] = {}
    for path in glob.glob(f"{work}/cg.*.*"):
        text = Path(path).read_text()
        trigger = re.search(r"^desc: Trigger: dump (\S+)$", text, re.M)
        names = re.search(r"^events: (.*)$", text, re.M)
        totals = re.search(r"^summary: (.*)$", text, re.M)
        if trigger and names and totals:
            row = dict(zip(names.group(1).split(), map(int, totals.group(1).split()),
                           strict=True))
            phases.setdefault(trigger.group(1), []).append(row)

    def mean(rows: list[dict[str, int]]) -> dict[str, float]:
        return {e: sum(r.get(e, 0) for r in rows) / len(rows) / n for e in EVENTS}

    def cycles(x: dict[str, float]) -> float:
        return (x["Ir"] + 10 * (x["I1mr"] + x["D1mr"] + x["D1mw"])
                + 100 * (x["ILmr"] + x["DLmr"] + x["DLmw"]) + 15 * (x["Bcm"] + x["Bim"]))

    print(f"callgrind, {n} calls a phase, two phases a mode; per call (MockTransport reference)")
    print(f"{'workload':24} {'Ir off':>10} {'Ir on':>10} {'extra':>8} {'ratio':>6}"
          + (f" {'cycles ratio':>12}" if cache_sim else ""))
    for name in sorted({p.rsplit("-", 1)[0] for p in phases}):
        off, on = mean(phases[f"{name}-off"]), mean(phases[f"{name}-on"])
        line = (f"{name.replace('_', ' '):24} {off['Ir']:10.0f} {on['Ir']:10.0f}"
                f" {on['Ir'] - off['Ir']:8.0f} {on['Ir'] / off['Ir']:6.3f}")
        if cache_sim:
            line += f" {cycles(on) / cycles(off):12.3f}"
        print(line)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10, help="calls per phase")
    parser.add_argument("--cache-sim", action="store_true")
    args = parser.parse_args()
    controller(args.n, args.cache_sim)


if __name__ == "__main__":
    main()
