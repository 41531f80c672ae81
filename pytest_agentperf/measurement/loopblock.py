"""Event-loop blocking detection.

An asyncio event loop runs one *step* at a time (a ready callback, a task
step, a timer).  A step that takes long — ``time.sleep``, a synchronous HTTP
call, a CPU-bound loop — freezes every other task on the loop.
:class:`LoopBlockDetector` finds such steps and names the code that was running:

* while active it wraps ``asyncio.events.Handle._run`` (every step of the pure
  Python event loops goes through it) so that each step of a watched loop
  publishes its start time — two clock reads and a few attribute stores;
* a watchdog thread wakes every ``threshold_s / 4`` and, when the current step
  has been running for ``threshold_s`` or more, samples the loop thread's stack
  with :func:`sys._current_frames` *while the loop is still blocked* — once per
  step — so the culprit (say ``time.sleep(0.2)`` at ``tests/test_x.py:12``) is
  named, not just the task that happened to be scheduled;
* when the step ends, the loop thread itself measures its exact duration and,
  if it reached the threshold, records a :class:`BlockRecord` with the sampled
  stack.

Two ways to watch:

``start()`` with no loop, from the thread that will run the loop
    Every loop stepping in *this thread* is watched — what a pytest hook
    wrapper around the call phase wants: pytest-asyncio runs the test
    coroutine with ``asyncio.Runner.run`` in the pytest thread.
``start(loop)``
    Only that loop; its thread is the loop's own if it is running, else the
    calling thread (the loop is expected to be run from it).

The patch is installed on the first ``start`` and restored by the last
``stop``; the state it needs lives on the installed wrapper, not in a module
global.  Loops that do not use ``asyncio.events.Handle`` (uvloop) are not
watched.
"""

from __future__ import annotations

import asyncio
import linecache
import os
import reprlib
import sys
import sysconfig
import threading
import time
from asyncio import events
from collections.abc import Callable
from dataclasses import dataclass, field
from types import CodeType, FrameType, TracebackType
from typing import Any, TypeVar

from ..findings import BLOCKING_CALL, Finding

__all__ = ["DEFAULT_THRESHOLD_S", "BlockRecord", "LoopBlockDetector", "format_block"]

#: Default threshold: a step holding the loop for 100 ms or more is a block.
DEFAULT_THRESHOLD_S = 0.1

_DISPATCH_ATTR = "_agentperf_loopblock_dispatch"
_MAX_FRAMES = 40

_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep
_THIS_FILE = os.path.abspath(__file__)
_LIBRARY_DIRS: tuple[str, ...] = tuple(
    sorted(
        {
            os.path.abspath(p) + os.sep
            for key in ("stdlib", "platstdlib", "purelib", "platlib")
            if (p := sysconfig.get_paths().get(key))
        }
    )
)


@dataclass
class BlockRecord:
    """One event-loop step that held the loop for ``duration_s >= threshold``.

    ``stack`` lists ``"file:line in func"`` frames of the code run by the step,
    innermost last (asyncio internals removed); ``culprit`` is its innermost
    frame and ``culprit_source`` that frame's source line; ``user_frame`` is the
    innermost frame outside the standard library and site-packages (the line
    of *your* code that made the blocking call).  ``sampled`` is False when the
    watchdog could not sample the stack in time (a C call holding the GIL):
    the record then names the task or callback that ran instead.
    """

    duration_s: float
    started_at_s: float
    stack: list[str] = field(default_factory=list)
    culprit: str = ""
    culprit_source: str = ""
    user_frame: str | None = None
    sampled: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration_s,
            "started_at_s": self.started_at_s,
            "culprit": self.culprit,
            "culprit_source": self.culprit_source,
            "user_frame": self.user_frame,
            "sampled": self.sampled,
            "stack": list(self.stack),
        }


def format_block(block: BlockRecord) -> str:
    """Multi-line text for a failure message: duration, culprit and stack."""
    head = f"event loop blocked for {block.duration_s * 1000:.1f} ms"
    lines = [head, f"  culprit: {block.culprit}"]
    if block.culprit_source:
        lines.append(f"      {block.culprit_source}")
    if block.stack:
        lines.append("  stack (innermost last):")
        lines.extend(f"    {frame}" for frame in block.stack)
    elif not block.sampled:
        lines.append("  (stack not sampled: the step held the GIL)")
    return "\n".join(lines)


class _Dispatch:
    """State of the installed ``Handle._run`` wrapper: who watches what."""

    __slots__ = ("by_loop", "by_thread", "original", "wrapper")

    def __init__(self, original: Callable[[events.Handle], None]) -> None:
        self.original = original
        self.by_loop: dict[asyncio.AbstractEventLoop, LoopBlockDetector] = {}
        self.by_thread: dict[int, LoopBlockDetector] = {}
        self.wrapper: Callable[[events.Handle], None] = _make_wrapper(self)


def _make_wrapper(dispatch: _Dispatch) -> Callable[[events.Handle], None]:
    original = dispatch.original
    by_loop = dispatch.by_loop
    by_thread = dispatch.by_thread
    get_ident = threading.get_ident
    clock = time.perf_counter_ns

    def _run(self: events.Handle) -> None:
        det = by_loop.get(self._loop) if by_loop else None  # type: ignore[attr-defined]
        if det is None:
            if not by_thread:
                original(self)
                return
            det = by_thread.get(get_ident())
            if det is None:
                original(self)
                return
        start = clock()
        det._step_start = start
        try:
            original(self)
        finally:
            end = clock()
            det._step_start = 0
            det._steps += 1
            if end - start >= det._threshold_ns:
                det._record(start, end, self)

    setattr(_run, _DISPATCH_ATTR, dispatch)
    return _run


_K = TypeVar("_K")


def _unlink(table: dict[_K, LoopBlockDetector], key: _K, det: LoopBlockDetector) -> None:
    """Remove ``det`` from the stack of detectors watching ``key``."""
    top = table.get(key)
    if top is det:
        if det._below is None:
            del table[key]
        else:
            table[key] = det._below
        return
    while top is not None:  # stopped out of order: splice it out
        if top._below is det:
            top._below = det._below
            return
        top = top._below


def _installed_dispatch() -> _Dispatch | None:
    current = events.Handle._run
    dispatch = getattr(current, _DISPATCH_ATTR, None)
    return dispatch if isinstance(dispatch, _Dispatch) else None


class LoopBlockDetector:
    """Record event-loop steps that hold the loop for ``threshold_s`` or more.

    ``LoopBlockDetector(threshold_s=0.1, max_blocks=50)``; ``start(loop=None)``
    / ``stop()`` (or ``with detector:`` for the calling thread); then
    ``blocks``, ``max_block_s``, ``findings()``, ``report_section()``.
    At most ``max_blocks`` records are kept (the longest ones); counts, the
    maximum and the total cover every block.  Detectors on the same thread
    (or loop) nest: the most recently started one records until it stops.
    """

    # Switching threads: patching a class is process-wide, so starting and
    # stopping detectors is serialised.
    _install_lock = threading.Lock()

    def __init__(self, threshold_s: float = DEFAULT_THRESHOLD_S, *, max_blocks: int = 50) -> None:
        if not threshold_s > 0:
            raise ValueError(f"threshold_s must be > 0, got {threshold_s!r}")
        if max_blocks < 1:
            raise ValueError(f"max_blocks must be >= 1, got {max_blocks!r}")
        self.threshold_s = float(threshold_s)
        self.max_blocks = max_blocks
        self._threshold_ns = int(threshold_s * 1e9)
        self._poll_s = max(threshold_s / 4.0, 0.0005)
        # Published by the loop thread at every step (GIL-atomic stores).
        self._step_start = 0
        self._steps = 0
        # Shared with the watchdog, under _lock.
        self._lock = threading.Lock()
        self._pending: tuple[int, list[tuple[str, int, str]]] | None = None
        self._blocks: list[BlockRecord] = []
        self._block_count = 0
        self._max_block_s = 0.0
        self._total_blocked_s = 0.0
        # Lifecycle.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatch: _Dispatch | None = None
        self._below: LoopBlockDetector | None = None
        self._thread_id: int | None = None
        self._origin_ns = 0
        self._stop_event = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._active = False

    # -- lifecycle -----------------------------------------------------------
    @property
    def active(self) -> bool:
        return self._active

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start watching ``loop``, or every loop run in the calling thread."""
        if self._active:
            raise RuntimeError("LoopBlockDetector already started")
        if loop is not None and loop.is_running():
            thread_id = getattr(loop, "_thread_id", None) or threading.get_ident()
        else:
            thread_id = threading.get_ident()
        with LoopBlockDetector._install_lock:
            dispatch = _installed_dispatch()
            if dispatch is None:
                dispatch = _Dispatch(events.Handle._run)
                events.Handle._run = dispatch.wrapper  # type: ignore[method-assign,assignment]
            if loop is None:
                # Nested detectors (a pytester run inside a watched test):
                # the innermost one records until it stops.
                self._below = dispatch.by_thread.get(thread_id)
                dispatch.by_thread[thread_id] = self
            else:
                self._below = dispatch.by_loop.get(loop)
                dispatch.by_loop[loop] = self
            self._dispatch = dispatch
        self._loop = loop
        self._thread_id = thread_id
        self._origin_ns = time.perf_counter_ns()
        self._stop_event.clear()
        self._active = True
        self._watchdog = threading.Thread(
            target=self._watch, name="agentperf-loopblock-watchdog", daemon=True
        )
        self._watchdog.start()

    def stop(self) -> None:
        """Stop watching; restores ``Handle._run`` when no detector is left."""
        if not self._active:
            return
        self._active = False
        with LoopBlockDetector._install_lock:
            dispatch = self._dispatch
            self._dispatch = None
            if dispatch is not None:
                if self._loop is None:
                    _unlink(dispatch.by_thread, self._thread_id or 0, self)
                else:
                    _unlink(dispatch.by_loop, self._loop, self)
                self._below = None
                # Restore only if nobody patched on top of us meanwhile; if
                # someone did, the wrapper stays in their chain, idle.
                if (
                    not dispatch.by_loop
                    and not dispatch.by_thread
                    and _installed_dispatch() is dispatch
                ):
                    events.Handle._run = dispatch.original  # type: ignore[method-assign,assignment]
        self._stop_event.set()
        if self._watchdog is not None:
            self._watchdog.join()
            self._watchdog = None
        self._loop = None

    def __enter__(self) -> LoopBlockDetector:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- watchdog thread -----------------------------------------------------
    def _watch(self) -> None:
        threshold_ns = self._threshold_ns
        sampled_start = 0
        clock = time.perf_counter_ns
        while not self._stop_event.wait(self._poll_s):
            start = self._step_start
            if not start or start == sampled_start or clock() - start < threshold_ns:
                continue
            frame = sys._current_frames().get(self._thread_id or 0)
            if frame is None:
                continue
            dispatch = self._dispatch
            raw = _extract(frame, dispatch.wrapper.__code__ if dispatch is not None else None)
            del frame
            sampled_start = start
            with self._lock:
                if self._step_start == start:  # still the same step: the stack is its own
                    self._pending = (start, raw)

    # -- loop thread, slow path ----------------------------------------------
    def _record(self, start: int, end: int, handle: events.Handle) -> None:
        duration = (end - start) / 1e9
        with self._lock:
            pending = self._pending
            self._pending = None
        raw = pending[1] if pending is not None and pending[0] == start else None
        if raw is not None:
            block = _block_from_frames(raw, duration, (start - self._origin_ns) / 1e9)
        else:
            block = BlockRecord(
                duration_s=duration,
                started_at_s=(start - self._origin_ns) / 1e9,
                culprit=_describe_handle(handle),
                sampled=False,
            )
        self._block_count += 1
        self._total_blocked_s += duration
        self._max_block_s = max(self._max_block_s, duration)
        blocks = self._blocks
        if len(blocks) < self.max_blocks:
            blocks.append(block)
        else:  # keep the longest ones
            shortest = min(range(len(blocks)), key=lambda i: blocks[i].duration_s)
            if blocks[shortest].duration_s < duration:
                blocks[shortest] = block

    # -- results -------------------------------------------------------------
    @property
    def blocks(self) -> list[BlockRecord]:
        """Recorded blocks in the order they started."""
        return sorted(self._blocks, key=lambda b: b.started_at_s)

    @property
    def block_count(self) -> int:
        return self._block_count

    @property
    def max_block_s(self) -> float:
        """Longest block in seconds (0.0 when none reached the threshold)."""
        return self._max_block_s

    @property
    def steps(self) -> int:
        """Event-loop steps observed while active."""
        return self._steps

    def worst(self) -> BlockRecord | None:
        """The longest recorded block, or None."""
        return max(self._blocks, key=lambda b: b.duration_s, default=None)

    def findings(self) -> list[Finding]:
        """One finding of kind ``blocking_call`` per recorded block."""
        out = []
        for block in self.blocks:
            where = block.user_frame or block.culprit
            source = f": {block.culprit_source}" if block.culprit_source else ""
            out.append(
                Finding(
                    kind=BLOCKING_CALL,
                    message=(
                        f"event loop blocked for {block.duration_s * 1000:.0f} ms "
                        f"at {where}{source}"
                    ),
                    details=block.as_dict(),
                )
            )
        return out

    def report_section(self) -> dict[str, Any]:
        """``threshold_s, steps, watched, block_count, max_block_s, total_blocked_s,
        dropped_blocks, blocks[]`` (each block as :meth:`BlockRecord.as_dict`).

        ``watched`` is false, and ``max_block_s`` ``None`` (unknown, not 0), when
        no step of an asyncio loop was seen: a sync test, or a loop the detector
        cannot see (trio, uvloop)."""
        watched = self._steps > 0
        return {
            "threshold_s": self.threshold_s,
            "steps": self._steps,
            "watched": watched,
            "block_count": self._block_count,
            "max_block_s": self._max_block_s if watched else None,
            "total_blocked_s": self._total_blocked_s,
            "dropped_blocks": self._block_count - len(self._blocks),
            "blocks": [b.as_dict() for b in self.blocks],
        }


# -- stack handling ------------------------------------------------------------
def _extract(
    frame: FrameType | None, wrapper_code: CodeType | None
) -> list[tuple[str, int, str]]:
    """Frames of the current step, innermost first, up to the step wrapper."""
    out: list[tuple[str, int, str]] = []
    while frame is not None:
        code = frame.f_code
        if code is wrapper_code:
            break
        out.append((code.co_filename, frame.f_lineno or 0, code.co_name))
        frame = frame.f_back
    return out


def _is_internal(filename: str) -> bool:
    return filename.startswith(_ASYNCIO_DIR) or os.path.abspath(filename) == _THIS_FILE


def _is_library(filename: str) -> bool:
    path = os.path.abspath(filename)
    return filename.startswith("<") or path.startswith(_LIBRARY_DIRS)


def _block_from_frames(
    raw: list[tuple[str, int, str]], duration: float, started_at: float
) -> BlockRecord:
    frames = [f for f in reversed(raw) if not _is_internal(f[0])][-_MAX_FRAMES:]
    if not frames:  # only asyncio internals were running: keep them
        frames = list(reversed(raw))[-_MAX_FRAMES:]
    stack = [f"{fn}:{line} in {name}" for fn, line, name in frames]
    culprit = stack[-1] if stack else "<unknown>"
    source = linecache.getline(frames[-1][0], frames[-1][1]).strip() if frames else ""
    user = next(
        (f"{fn}:{line} in {name}" for fn, line, name in reversed(frames) if not _is_library(fn)),
        None,
    )
    return BlockRecord(
        duration_s=duration,
        started_at_s=started_at,
        stack=stack,
        culprit=culprit,
        culprit_source=source,
        user_frame=user,
        sampled=True,
    )


def _describe_handle(handle: events.Handle) -> str:
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        frame = getattr(coro, "cr_frame", None)
        name = getattr(coro, "__qualname__", repr(coro))
        if frame is not None:
            code = frame.f_code
            return f"task {owner.get_name()} ({name}, now at {code.co_filename}:{frame.f_lineno})"
        return f"task {owner.get_name()} ({name})"
    return reprlib.repr(handle)
