"""Cost of measuring peak memory: the `faults` method (default) against the older `hwm`
method and against no measurement (`--perf-memory=off`), all in the same run.

Three suites, each timed as a ratio to `--perf-memory=off` measured in the same command,
variants interleaved round by round:

(a) 500 trivial tests with a memory budget: whole pytest process (the per-test fixed cost:
    one malloc_trim, two getrusage and /proc reads);
(b) 20 allocation-heavy tests (1M small objects): their call-phase time (JUnit XML);
(c) 20 tests that each allocate and free a 30 MiB buffer 10 times: call-phase time. This is
    where `faults` pays: the memory an earlier test freed is handed back to the kernel before
    each test, so the test's first allocation page-faults again (that is what makes it seen).

    python bench/bench_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_core import INI, _alloc_suite, _call_time, _interleaved, _run, _suite  # noqa: E402

METHODS = ("off", "faults", "hwm")


def _reuse_suite(folder: Path) -> None:
    (folder / "test_reuse.py").write_text(textwrap.dedent(
        """
        import pytest

        @pytest.mark.perf_budget(memory_mb=500)
        @pytest.mark.parametrize("i", range(20))
        def test_reuse(i):
            for _ in range(10):
                data = b"\\x01" * (30 * 1024 * 1024)
                del data
        """
    ))
    (folder / "pytest.ini").write_text(INI)


def _table(title: str, res: dict[str, float]) -> None:
    ref = res["off"]
    print(title)
    print(f"    --perf-memory=off (reference)  {ref:8.3f} s   1.00")
    print(f"    --perf-memory=faults (default) {res['faults']:8.3f} s   "
          f"{res['faults'] / ref:.2f}   ({res['faults'] / res['hwm']:.2f} x hwm)")
    print(f"    --perf-memory=hwm (old)        {res['hwm']:8.3f} s   {res['hwm'] / ref:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    rounds = 3 if parser.parse_args().quick else 7
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b, \
            tempfile.TemporaryDirectory() as c:
        trivial, heavy, reuse = Path(a), Path(b), Path(c)
        _suite(trivial, 500, marked=True)
        _alloc_suite(heavy)
        _reuse_suite(reuse)
        res = _interleaved({m: (lambda m=m: _run(trivial, f"--perf-memory={m}"))
                            for m in METHODS}, rounds)
        _table(f"(a) 500 trivial tests, whole pytest process (median of {rounds})", res)
        res = _interleaved({m: (lambda m=m: _call_time(heavy, f"--perf-memory={m}"))
                            for m in METHODS}, rounds)
        _table(f"(b) 20 allocation-heavy tests, call phases (median of {rounds})", res)
        res = _interleaved({m: (lambda m=m: _call_time(reuse, f"--perf-memory={m}"))
                            for m in METHODS}, rounds)
        _table(f"(c) 20 tests reusing a 30 MiB buffer 10x, call phases (median of {rounds})",
               res)


if __name__ == "__main__":
    main()
