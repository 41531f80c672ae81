"""Event-loop blocking detection: culprits named, clean code clean."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from asyncio import events
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_agentperf.findings import BLOCKING_CALL
from pytest_agentperf.measurement.loopblock import LoopBlockDetector, format_block


@pytest.fixture
def detector() -> Iterator[LoopBlockDetector]:
    """Watch every loop run in this thread, as the plugin's hook wrapper does."""
    original = events.Handle._run
    det = LoopBlockDetector(threshold_s=0.1)
    det.start()
    try:
        yield det
    finally:
        det.stop()
    assert events.Handle._run is original


def _here() -> int:
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno


def _spin(seconds: float) -> None:
    """Hold the GIL-using loop thread in Python code (no sleeping)."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1


@pytest.mark.asyncio
async def test_time_sleep_in_async_test_is_caught_with_its_line(
    detector: LoopBlockDetector,
) -> None:
    line = _here() + 1
    time.sleep(0.2)
    await asyncio.sleep(0)  # end the blocking step

    assert detector.block_count == 1
    block = detector.blocks[0]
    assert block.duration_s >= 0.2
    assert block.sampled
    assert block.culprit == (
        f"{__file__}:{line} in test_time_sleep_in_async_test_is_caught_with_its_line"
    )
    assert block.culprit_source == "time.sleep(0.2)"
    assert block.user_frame == block.culprit
    assert detector.max_block_s >= 0.2
    [finding] = detector.findings()
    assert finding.kind == BLOCKING_CALL
    assert f"{__file__}:{line}" in finding.message
    assert "time.sleep(0.2)" in finding.message
    assert finding.details["duration_s"] == block.duration_s


def _helper_that_blocks() -> None:
    time.sleep(0.15)


@pytest.mark.asyncio
async def test_stack_goes_from_the_test_to_the_blocking_helper(
    detector: LoopBlockDetector,
) -> None:
    await asyncio.sleep(0)
    _helper_that_blocks()
    await asyncio.sleep(0)

    [block] = detector.blocks
    assert block.culprit.endswith("in _helper_that_blocks")
    assert block.culprit_source == "time.sleep(0.15)"
    assert block.stack[-2].endswith("in test_stack_goes_from_the_test_to_the_blocking_helper")
    # asyncio internals are trimmed away
    assert not any("asyncio" in frame.split(":")[0] for frame in block.stack)
    text = format_block(block)
    assert "_helper_that_blocks" in text and "time.sleep(0.15)" in text


@pytest.mark.asyncio
async def test_non_blocking_code_gives_no_finding(detector: LoopBlockDetector) -> None:
    async def worker(i: int) -> int:
        for _ in range(20):
            await asyncio.sleep(0)
        await asyncio.sleep(0.02)
        return i

    assert await asyncio.gather(*(worker(i) for i in range(10))) == list(range(10))
    await asyncio.sleep(0)
    assert detector.steps > 200
    assert detector.block_count == 0
    assert detector.findings() == []
    section = detector.report_section()
    assert section["blocks"] == [] and section["max_block_s"] == 0.0


@pytest.mark.asyncio
async def test_blocking_in_another_task_is_caught() -> None:
    async def background() -> None:
        await asyncio.sleep(0)
        _spin(0.4)

    # thresholds far above what a busy CPU adds to an ordinary step (here and below):
    # a "exactly these blocks" assertion must not catch scheduler hiccups
    det = LoopBlockDetector(threshold_s=0.2)
    det.start(asyncio.get_running_loop())
    try:
        await asyncio.create_task(background())
        await asyncio.sleep(0)
    finally:
        det.stop()
    [block] = det.blocks
    assert block.duration_s >= 0.4
    assert block.sampled
    # sampled while spinning: the culprit is inside _spin, called from background
    assert "in _spin" in block.culprit
    assert any(frame.endswith("in background") for frame in block.stack)


def test_sync_code_running_a_loop_is_watched_in_thread_mode() -> None:
    async def main() -> None:
        await asyncio.sleep(0)
        time.sleep(0.3)
        await asyncio.sleep(0.01)

    with LoopBlockDetector(threshold_s=0.2) as det:
        asyncio.run(main())
    assert [b.culprit.rsplit(" in ", 1)[1] for b in det.blocks] == ["main"]
    assert not det.active


def test_only_the_watched_loop_is_recorded() -> None:
    watched = asyncio.new_event_loop()
    other = asyncio.new_event_loop()

    async def block() -> None:
        await asyncio.sleep(0)
        time.sleep(0.3)
        await asyncio.sleep(0)

    det = LoopBlockDetector(threshold_s=0.2)
    det.start(watched)
    try:
        other.run_until_complete(block())
        assert det.block_count == 0
        watched.run_until_complete(block())
        assert det.block_count == 1
    finally:
        det.stop()
        watched.close()
        other.close()


def test_blocks_are_bounded_and_the_longest_kept() -> None:
    async def main() -> None:
        for delay in (0.06, 0.12, 0.06, 0.1, 0.06):
            await asyncio.sleep(0)
            time.sleep(delay)
        await asyncio.sleep(0)

    with LoopBlockDetector(threshold_s=0.05, max_blocks=2) as det:
        asyncio.run(main())
    section = det.report_section()
    assert section["block_count"] >= 5  # a loaded machine may add a hiccup
    assert section["dropped_blocks"] == section["block_count"] - 2
    kept = sorted(b["duration_s"] for b in section["blocks"])
    assert kept[0] >= 0.1 and kept[1] >= 0.12
    assert section["total_blocked_s"] >= 0.4
    json.dumps(section)


def test_patch_is_restored_and_double_start_refused() -> None:
    original = events.Handle._run
    det = LoopBlockDetector(threshold_s=0.05)
    det.start()
    try:
        assert events.Handle._run is not original
        with pytest.raises(RuntimeError, match="already"):
            det.start()
        inner = LoopBlockDetector(threshold_s=0.05)
        loop = asyncio.new_event_loop()
        try:
            inner.start(loop)  # a second detector, other key: shares the patch
            inner.stop()
        finally:
            loop.close()
        assert events.Handle._run is not original
    finally:
        det.stop()
    assert events.Handle._run is original
    det.stop()  # idempotent


def test_nested_detectors_on_one_thread_innermost_records() -> None:
    # blocks far above the 30 ms threshold: the watchdog must get the CPU to sample the
    # culprit while the loop is blocked, even on a busy machine
    async def block(seconds: float) -> None:
        await asyncio.sleep(0)
        time.sleep(seconds)
        await asyncio.sleep(0)

    original = events.Handle._run
    outer = LoopBlockDetector(threshold_s=0.03)
    outer.start()
    try:
        asyncio.run(block(0.2))
        with LoopBlockDetector(threshold_s=0.03) as inner:  # e.g. a pytester run
            asyncio.run(block(0.25))
        asyncio.run(block(0.3))
        # out of order: a third one stopped after the one below it
        third = LoopBlockDetector(threshold_s=0.03)
        fourth = LoopBlockDetector(threshold_s=0.03)
        third.start()
        fourth.start()
        third.stop()
        asyncio.run(block(0.2))
        fourth.stop()
        asyncio.run(block(0.2))
    finally:
        outer.stop()
    assert events.Handle._run is original
    def ours(det: LoopBlockDetector) -> int:
        return sum(b.culprit.endswith("in block") for b in det.blocks)

    assert ours(inner) == 1
    assert ours(outer) == 3
    assert ours(fourth) == 1 and third.block_count == 0


@pytest.mark.parametrize("kwargs", [{"threshold_s": 0}, {"threshold_s": -1}, {"max_blocks": 0}])
def test_invalid_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LoopBlockDetector(**kwargs)  # type: ignore[arg-type]


def test_plugin_style_wiring_with_pytest_asyncio(pytester: pytest.Pytester) -> None:
    """The wiring the plugin uses: start in a pytest_runtest_call wrapper,
    stop after; pytest-asyncio runs the test coroutine in this thread."""
    pytester.makeconftest(
        """
        import pytest
        from pytest_agentperf.measurement.loopblock import LoopBlockDetector

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_call(item):
            det = LoopBlockDetector(threshold_s=0.2)
            det.start()
            try:
                return (yield)
            finally:
                det.stop()
                item.user_properties.append(("loopblock", det.report_section()))
        """
    )
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        test_agent="""
        import asyncio, time
        import pytest

        @pytest.mark.asyncio
        async def test_blocks():
            time.sleep(0.4)  # in the test's first step
            await asyncio.sleep(0)

        @pytest.mark.asyncio
        async def test_clean():
            await asyncio.sleep(0.01)
        """
    )
    reprec = pytester.inline_run("-p", "no:agentperf", "-p", "no:cacheprovider")
    reprec.assertoutcome(passed=2)
    sections: dict[str, Any] = {
        r.nodeid.split("::")[-1]: dict(r.user_properties)["loopblock"]
        for r in reprec.getreports("pytest_runtest_logreport")
        if r.when == "call"
    }
    assert sections["test_clean"]["block_count"] == 0
    [block] = sections["test_blocks"]["blocks"]
    assert block["culprit"].endswith("test_agent.py:6 in test_blocks")
    assert block["culprit_source"].startswith("time.sleep(0.4)")
