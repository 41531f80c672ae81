"""Peak memory (``memory_mb``) through real pytest runs: honest whatever earlier tests did."""

from __future__ import annotations

import sys

import pytest

from _support import by_id, read_report

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")


@linux_only
def test_allocations_reusing_memory_freed_by_earlier_tests_are_seen(pt: pytest.Pytester) -> None:
    """glibc keeps a freed 30 MiB block resident: RSS does not rise when the next
    test allocates it again, but the test did allocate 30 MiB."""
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(memory_mb=500)
        @pytest.mark.parametrize("i", range(6))
        def test_alloc(i):
            data = b"\\x01" * (30 * 1024 * 1024)
            del data
        """
    )
    result = pt.runpytest_subprocess("--perf-report=r.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    tests = read_report(pt.path / "r.json")["tests"]
    peaks = [t["memory"]["peak_mb"] for t in tests]
    assert [t["memory"]["method"] for t in tests] == ["faults"] * 6
    assert all(28 <= p <= 64 for p in peaks), peaks  # each ~30 MiB, not 0


@linux_only
def test_measuring_does_not_reset_the_process_peak_rss(pt: pytest.Pytester) -> None:
    """ru_maxrss (what /usr/bin/time and CI monitoring read) keeps the process's peak."""
    pt.makeconftest(
        """
        import resource

        def pytest_sessionfinish(session):
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            with open("maxrss.txt", "w") as f:
                f.write(str(peak_kib))
        """
    )
    pt.makepyfile(
        """
        import pytest

        def test_big_unmeasured():
            data = b"\\x01" * (200 * 1024 * 1024)
            del data

        @pytest.mark.perf_budget(memory_mb=50)
        @pytest.mark.parametrize("i", range(3))
        def test_small_measured(i):
            pass
        """
    )
    result = pt.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    assert int((pt.path / "maxrss.txt").read_text()) >= 200 * 1024


def test_a_test_that_stops_tracemalloc_reads_unknown_not_zero(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import tracemalloc, pytest

        @pytest.mark.perf_budget(memory_mb=10)
        def test_stops_tracing():
            data = bytearray(50 * 1024 * 1024)
            del data
            tracemalloc.stop()
        """
    )
    result = pt.runpytest("--perf-memory=tracemalloc", "--perf-report=r.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*memory_mb unknown > 10 MiB [[]unverifiable: tracemalloc was stopped during the test*",
    ])
    memory = by_id(read_report(pt.path / "r.json"))["test_stops_tracing"]["memory"]
    assert memory["peak_mb"] is None and memory["method"] == "tracemalloc"


def test_memory_budget_with_memory_off_is_unverifiable(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(memory_mb=10, p95=10)
        def test_x():
            pass
        """
    )
    result = pt.runpytest("--perf-memory=off")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*memory_mb unknown > 10 MiB [[]unverifiable: memory/peak_mb missing: memory was not "
        "measured (--perf-memory=off*",
    ])


@linux_only
def test_hwm_stays_available_on_request(pt: pytest.Pytester) -> None:
    pt.makepyfile(
        """
        import pytest

        @pytest.mark.perf_budget(memory_mb=500)
        def test_alloc():
            data = b"\\x01" * (40 * 1024 * 1024)
            del data
        """
    )
    result = pt.runpytest_subprocess("--perf-memory=hwm", "--perf-report=r.json")
    result.assert_outcomes(passed=1)
    memory = read_report(pt.path / "r.json")["tests"][0]["memory"]
    assert memory["method"] == "hwm" and memory["peak_mb"] >= 35


@linux_only
def test_proc_files_opened_once_follow_a_forked_child() -> None:
    """The session opens /proc/self once; a test run in a forked child (pytest-forked)
    must read its own figures, not its parent's through the inherited descriptors."""
    import os
    import warnings

    from pytest_agentperf.measurement.memory import ProcFiles, rss_bytes

    proc = ProcFiles(clear_refs=False)
    try:
        parent_peak = proc.peak_bytes()
        read, write = os.pipe()
        with warnings.catch_warnings():  # a multi-threaded parent (xdist) warns on 3.12+
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: raise its own peak well above the parent's
            code = 1
            try:
                data = bytearray(parent_peak + 64 * 1024 * 1024)
                ok = proc.peak_bytes() > parent_peak + 32 * 1024 * 1024 and abs(
                    proc.rss_bytes() - rss_bytes()) < 16 * 1024 * 1024
                del data
                os.write(write, b"1" if ok else b"0")
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        answer = os.read(read, 1)
        os.close(read)
        os.waitpid(pid, 0)
        assert answer == b"1", "the forked child read its parent's /proc files"
        assert proc.peak_bytes() < parent_peak + 32 * 1024 * 1024  # the parent's own again
    finally:
        proc.close()
