"""Load testing: closed and open load models with bounded memory.

:class:`LoadTester` keeps the guide's API (``run_load_test``) and adds an open
model (``run_rate_test``) that does not suffer from coordinated omission.

Closed model (``run_load_test``)
    ``concurrent_users`` users each send ``requests_per_user`` requests, one after
    the other; user ``i`` starts ``i * ramp_up_time / concurrent_users`` after the
    run starts (the guide's ramp-up).  Latency is each request's own duration, so
    a stall of the system also stops the users from sending: the stalled
    requests are few and the percentiles hide it.  Use it to find the maximum
    throughput, not the latency users would see.

Open model (``run_rate_test``)
    Requests start on a fixed schedule, ``rate`` per second (rising linearly from
    0 over ``ramp_up_time``), whatever the system does: intended start times are
    computed on the monotonic clock, not by sleeping after each request, and
    latency is measured from the **intended** start (wrk2's correction), so a
    stall shows in the percentiles.  ``max_concurrency`` caps the requests in
    flight; a request that cannot start on time waits, its latency still counts
    from its intended start, and it is counted in ``late_starts``; requests
    whose intended start fell inside ``duration`` but that found no free slot
    before the duration ended are counted in ``not_started`` (without
    ``max_concurrency`` every scheduled request starts, late if the process was
    busy, and counts in ``late_starts``).  Each arrival is a
    new virtual user: ``test_func(k, 0)`` for the k-th arrival.

Both models
    * Failures (any ``Exception``, including the per-request ``timeout``) are
      counted apart: latency statistics are those of successful requests only.
    * ``throughput_rps`` is measured over the *steady window*: completed requests
      (successful or failed) whose completion time lies in the window, divided by
      its length.  Closed model: from the start of the last user (end of ramp-up)
      to the moment the first user finished all its requests.  Open model: from
      ``ramp_up_time`` to ``duration`` after the start.  When that window is
      shorter than 10 % of the run or holds no completion, the whole run is used
      (completions / (last completion - start)); ``throughput_basis`` says which.
    * Each run has its own histograms: a second run never mixes into the first's
      result.  :meth:`LoadTester.latency_histogram` merges all runs.
    * Memory is independent of the number of requests: HDR histograms (1 ns .. 1 h,
      3 significant digits), a per-second timeline and the in-flight tasks.
    * Cancellation (Ctrl-C under ``asyncio.run``, ``task.cancel()``) stops the run,
      the requests in flight are cancelled and not counted (``unfinished``), what
      was measured is kept: the partial result, marked ``"interrupted": True``, is
      appended to :attr:`LoadTester.results` (and ``last_result``, and the
      report) before ``CancelledError`` propagates, as asyncio requires.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..histogram import (
    HDR_HIGHEST_NS,
    NS_PER_S,
    FastHdr,
    LatencyHistogram,
    clamp_ns,
    new_hdr,
    percentile,
)
from ..stats import SampleSet

if TYPE_CHECKING:
    from .middleware import RequestRecorder

__all__ = ["LoadRun", "LoadTester", "ProgressCallback", "TestFunc"]

TestFunc = Callable[[int, int], Awaitable[Any]]
ProgressCallback = Callable[[dict[str, Any]], None]

_MAX_ERROR_TYPES = 50
_MAX_MESSAGE = 500
_OTHER_ERRORS = "<other>"
# The dispatcher of the open model yields after this many starts in a row.
_DISPATCH_BATCH = 64
# Latencies of one second of the timeline kept exactly before they go into a histogram.
_TIMELINE_EXACT = 4096
#: the request ids of an open-model arrival: one request, ``test_func(k, 0)``
_ONE = range(1)
_NEVER = 1 << 63


class _Unset:
    pass


_UNSET = _Unset()


class _ErrorTable:
    """Errors grouped by exception type: count and first message (bounded)."""

    __slots__ = ("_table",)

    def __init__(self) -> None:
        self._table: dict[str, list[Any]] = {}

    def add(self, exc: BaseException, timeout: float | None) -> None:
        name = type(exc).__name__
        entry = self._table.get(name)
        if entry is None:
            if len(self._table) >= _MAX_ERROR_TYPES:
                name = _OTHER_ERRORS
                entry = self._table.get(name)
            if entry is None:
                message = str(exc)
                timed_out = isinstance(exc, (TimeoutError, asyncio.TimeoutError))
                if not message and timed_out and timeout is not None:
                    message = f"request exceeded the timeout of {timeout:g} s"
                elif not message and isinstance(exc, asyncio.CancelledError):
                    message = ("test_func raised CancelledError: counted as a failed "
                               "request, the user went on")
                entry = self._table[name] = [0, message[:_MAX_MESSAGE]]
        entry[0] += 1

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {k: {"count": v[0], "first_message": v[1]} for k, v in self._table.items()}


class _Timeline:
    """Per-second counts and p95 by completion time, and the run's histogram fed in batches.

    A request's latency is appended to the current second's list, its one write per
    request.  When the second closes, the list goes into the run's histogram in one batch
    (:meth:`~pytest_agentperf.histogram.LatencyHistogram.record_many_ns`) and its p95 is
    computed exactly from it; past ``_TIMELINE_EXACT`` requests in one second the list is
    folded early, into the histogram and into a reused per-second HDR histogram (2
    significant digits, within 1 %), so memory stays bounded whatever the rate.
    :meth:`fold` brings the histogram up to date mid-second (progress snapshots).
    """

    __slots__ = ("_errors", "_fast", "_folded", "_hist", "_requests", "_sec", "_t0",
                 "entries", "lat", "next_ns")

    def __init__(self, t0_ns: int, histogram: LatencyHistogram) -> None:
        self._t0 = t0_ns
        self._hist = histogram
        self._sec = 0
        #: completions from this time on belong to a later second: ``roll`` first
        self.next_ns = t0_ns + NS_PER_S
        self._requests = 0  # failures and spilled successes of this second
        self._errors = 0
        #: this second's latencies (ns, clamped) not yet spilled; the first ``_folded``
        #: of them are in the histogram already
        self.lat: list[int] = []
        self._folded = 0
        self._fast: FastHdr | None = None
        self.entries: list[dict[str, Any]] = []

    def error(self) -> None:
        self._requests += 1
        self._errors += 1

    def fold(self) -> None:
        """Put this second's latencies so far into the run's histogram."""
        lat = self.lat
        if len(lat) > self._folded:
            self._hist.record_many_ns(lat[self._folded:])
            self._folded = len(lat)

    def spill(self) -> None:
        """This second has too many latencies to keep: into the histograms with them."""
        self.fold()
        if self._fast is None:
            self._fast = FastHdr(new_hdr(lowest_ns=1000, digits=2))
        self._fast.record_many([max(1000, v) for v in self.lat])
        self._requests += len(self.lat)
        self.lat = []
        self._folded = 0

    def roll(self, end_ns: int) -> None:
        """A completion at ``end_ns`` is past the current second: close the seconds before."""
        self._flush(max(0, (end_ns - self._t0) // NS_PER_S))

    def _flush(self, new_sec: int) -> None:
        p95: float | None = None
        fast = self._fast
        if fast is not None and fast.n:
            self.spill()
            hist = fast.sync()
            p95 = hist.get_value_at_percentile(95.0) / NS_PER_S
            hist.reset()
        elif self.lat:
            self.fold()
            p95 = percentile(sorted(self.lat), 95) / NS_PER_S
        requests = self._requests + len(self.lat)
        self.entries.append(
            {"t": self._sec, "requests": requests, "errors": self._errors, "p95": p95}
        )
        for gap in range(self._sec + 1, new_sec):
            self.entries.append({"t": gap, "requests": 0, "errors": 0, "p95": None})
        self._sec = new_sec
        self.next_ns = self._t0 + (new_sec + 1) * NS_PER_S
        self._requests = self._errors = 0
        self.lat = []
        self._folded = 0

    def close(self) -> None:
        if self._requests or self.lat or not self.entries:
            self._flush(self._sec + 1)
        self._fast = None


class LoadRun:
    """The measurement of one load run (either model); see :meth:`result`."""

    def __init__(self, model: str, parameters: dict[str, Any], timeout: float | None) -> None:
        self.model = model
        self.parameters = parameters
        self.timeout = timeout
        self.t0_ns = time.perf_counter_ns()
        self.end_ns = self.t0_ns
        self.histogram = LatencyHistogram()
        self.start_lag = LatencyHistogram() if model == "open" else None
        self.errors = _ErrorTable()
        self.timeline = _Timeline(self.t0_ns, self.histogram)
        self.succeeded = 0
        self.failed = 0
        self.in_flight = 0
        self.unfinished = 0
        self.late_starts = 0
        self.not_started = 0
        #: requests whose ``test_func`` itself raised ``CancelledError`` (failures)
        self.cancelled_requests = 0
        #: set before the tester cancels its own tasks: a ``CancelledError`` seen
        #: then is the run stopping, not the request failing
        self.stopping = False
        self.interrupted = False
        self.truncated = False
        self.last_completion_ns = self.t0_ns
        # steady window: [w0, w1] on the monotonic clock, and completions before each
        self.w0_ns = self.t0_ns
        self.w1_ns: int | None = None
        self._w0_count: int | None = None
        self._w1_count: int | None = None
        #: the next completion time at which the window counts need a look
        self._check_ns = 0
        self._finished = False

    # -- recording -----------------------------------------------------------
    def _completed(self, end_ns: int) -> None:
        """Count the completions before each end of the steady window; called only once
        a completion reaches ``_check_ns`` (one comparison per request otherwise)."""
        done = self.succeeded + self.failed
        if self._w0_count is None and end_ns >= self.w0_ns:
            self._w0_count = done
        if self._w1_count is None and self.w1_ns is not None and end_ns > self.w1_ns:
            self._w1_count = done
        if self._w0_count is None:
            self._check_ns = self.w0_ns
        elif self._w1_count is None and self.w1_ns is not None:
            self._check_ns = self.w1_ns + 1
        else:  # closed model: close_window counts the window's end itself
            self._check_ns = _NEVER

    def record_success(self, end_ns: int, latency_ns: int) -> None:
        if end_ns >= self._check_ns:
            self._completed(end_ns)
        self.last_completion_ns = end_ns
        self.succeeded += 1
        timeline = self.timeline
        if end_ns >= timeline.next_ns:
            timeline.roll(end_ns)
        # the one record of a request: its second's list, which feeds the histogram
        lat = timeline.lat
        lat.append(latency_ns if 0 < latency_ns <= HDR_HIGHEST_NS else clamp_ns(latency_ns))
        if len(lat) >= _TIMELINE_EXACT:
            timeline.spill()

    def record_failure(self, end_ns: int, exc: BaseException) -> None:
        if end_ns >= self._check_ns:
            self._completed(end_ns)
        self.last_completion_ns = end_ns
        self.failed += 1
        self.errors.add(exc, self.timeout)
        timeline = self.timeline
        if end_ns >= timeline.next_ns:
            timeline.roll(end_ns)
        timeline.error()

    def close_window(self, end_ns: int) -> None:
        """Mark the end of the steady window now (closed model: first user done)."""
        if self.w1_ns is None:
            self.w1_ns = end_ns
            self._w1_count = self.succeeded + self.failed

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self.end_ns = time.perf_counter_ns()
        self.timeline.close()

    # -- reading -------------------------------------------------------------
    @property
    def total(self) -> int:
        return self.succeeded + self.failed

    def _throughput(self) -> tuple[float, str, list[float]]:
        total = self.total
        run_ns = max(1, self.last_completion_ns - self.t0_ns)
        w1_ns = self.w1_ns
        if w1_ns is not None:
            c0 = self._w0_count if self._w0_count is not None else total
            c1 = self._w1_count if self._w1_count is not None else total
            span = w1_ns - self.w0_ns
            if span > 0 and span >= 0.1 * run_ns and c1 > c0:
                window = [(self.w0_ns - self.t0_ns) / NS_PER_S, (w1_ns - self.t0_ns) / NS_PER_S]
                return (c1 - c0) * NS_PER_S / span, "steady", window
        window = [0.0, run_ns / NS_PER_S]
        return (total * NS_PER_S / run_ns if total else 0.0), "whole_run", window

    def snapshot(self, now_ns: int, rps: float) -> dict[str, Any]:
        """Progress snapshot: elapsed_s, requests, rps, errors, p95_s, in_flight..."""
        self.timeline.fold()
        hist = self.histogram
        return {
            "model": self.model,
            "elapsed_s": (now_ns - self.t0_ns) / NS_PER_S,
            "requests": self.total,
            "rps": rps,
            "errors": self.failed,
            "p95_s": hist.percentile(95.0) if len(hist) else None,
            "in_flight": self.in_flight,
            "late_starts": self.late_starts,
            "final": False,
        }

    def planned(self) -> int:
        if self.model == "closed":
            p = self.parameters
            return int(p["concurrent_users"]) * int(p["requests_per_user"])
        return int(self.parameters["planned_requests"])

    def result(self) -> dict[str, Any]:
        """The run's result dict (the guide's keys plus ours); JSON-serialisable.

        Every planned request is accounted for: ``successful_requests +
        failed_requests + unfinished + not_started == planned_requests``.
        ``error_rate`` counts unfinished requests (cut by a timeout, the run's
        end or an interruption) as failures: ``(failed + unfinished) /
        (completed + unfinished)``; ``None`` when no request was even started.
        """
        total = self.total
        s = self.histogram.summary()
        throughput, basis, window = self._throughput()
        planned = self.planned()
        if self.model == "closed":
            self.not_started = max(0, planned - total - self.unfinished)
        attempted = total + self.unfinished
        out: dict[str, Any] = {
            "model": self.model,
            "total_requests": total,
            "successful_requests": self.succeeded,
            "failed_requests": self.failed,
            "planned_requests": planned,
            "cancelled_requests": self.cancelled_requests,
            "error_rate": (self.failed + self.unfinished) / attempted if attempted else None,
            "throughput_rps": throughput,
            "throughput_basis": basis,
            "throughput_window_s": window,
            "duration_s": (self.end_ns - self.t0_ns) / NS_PER_S,
            "response_time": {
                "min": s["min"], "max": s["max"], "mean": s["mean"], "median": s["p50"],
                "p50": s["p50"], "p90": s["p90"], "p95": s["p95"], "p99": s["p99"],
                "p999": s["p999"], "exact": s["exact"],
            },
            "errors": self.errors.as_dict(),
            "timeline": list(self.timeline.entries),
            "timeout": self.timeout,
            "unfinished": self.unfinished,
            "not_started": self.not_started,
            "interrupted": self.interrupted,
            "truncated": self.truncated,
            "parameters": dict(self.parameters),
        }
        if self.start_lag is not None:
            lag = self.start_lag.summary()
            out["late_starts"] = self.late_starts
            out["start_lag"] = {"p50": lag["p50"], "p99": lag["p99"], "max": lag["max"]}
        return out


def _arrivals_before(t: float, rate: float, ramp: float) -> int:
    """Number of scheduled arrivals with an intended start strictly before ``t``."""
    if t <= 0:
        return 0
    in_ramp = ramp > 0 and t <= ramp
    n = rate * t * t / (2 * ramp) if in_ramp else rate * ramp / 2 + rate * (t - ramp)
    return math.ceil(n - 1e-9)


def _intended_offset(k: int, rate: float, ramp: float) -> float:
    """Intended start (s after the run start) of the k-th arrival (k >= 0)."""
    ramp_arrivals = rate * ramp / 2
    if ramp > 0 and k < ramp_arrivals:
        return math.sqrt(2 * ramp * k / rate)
    return ramp + (k - ramp_arrivals) / rate


class LoadTester:
    """Closed and open load models, measured without coordinated omission.

    ``progress(snapshot)`` is called at most every ``progress_interval`` seconds
    while a run lasts (keys ``model, elapsed_s, requests, rps, errors, p95_s,
    in_flight, late_starts, final``) and once more with ``final=True`` when it
    ends; the library never prints.  ``timeout`` is the default per-request
    timeout in seconds (None: none), ``late_threshold`` how late (s) an open-model
    start may be before it counts as late, ``drain_timeout`` how long an open run
    waits for requests still in flight after its schedule ended.  ``server``: a
    :class:`~pytest_agentperf.toolkit.middleware.RequestRecorder` whose server-side
    latencies the report shows next to the client-side ones.
    """

    def __init__(
        self,
        progress: ProgressCallback | None = None,
        progress_interval: float = 1.0,
        *,
        timeout: float | None = None,
        late_threshold: float = 0.01,
        drain_timeout: float = 10.0,
        server: RequestRecorder | None = None,
    ) -> None:
        if progress_interval <= 0:
            raise ValueError("progress_interval must be > 0")
        _check_timeout(timeout)
        if late_threshold < 0 or drain_timeout < 0:
            raise ValueError("late_threshold and drain_timeout must be >= 0")
        self.progress = progress
        self.progress_interval = progress_interval
        self.timeout = timeout
        self.late_threshold = late_threshold
        self.drain_timeout = drain_timeout
        self.server = server
        #: One result dict per run, in order (interrupted runs included).
        self.results: list[dict[str, Any]] = []
        self._merged = LatencyHistogram()

    @property
    def last_result(self) -> dict[str, Any] | None:
        return self.results[-1] if self.results else None

    # -- closed model --------------------------------------------------------
    async def run_load_test(
        self,
        test_func: TestFunc,
        concurrent_users: int = 10,
        requests_per_user: int = 100,
        ramp_up_time: float = 10.0,
        *,
        timeout: float | _Unset | None = _UNSET,
        max_duration: float | None = None,
    ) -> dict[str, Any]:
        """Closed model with the guide's ramp-up; returns the run's result dict.

        ``max_duration`` (s) bounds the run: users still running then are
        cancelled, their in-flight requests reported as ``unfinished`` and the
        result marked ``truncated``.
        """
        if concurrent_users < 1 or requests_per_user < 0:
            raise ValueError("concurrent_users must be >= 1 and requests_per_user >= 0")
        if ramp_up_time < 0:
            raise ValueError("ramp_up_time must be >= 0")
        if max_duration is not None and max_duration <= 0:
            raise ValueError("max_duration must be > 0")
        req_timeout = self._timeout(timeout)
        run = LoadRun(
            "closed",
            {"concurrent_users": concurrent_users, "requests_per_user": requests_per_user,
             "ramp_up_time": ramp_up_time, "max_duration": max_duration},
            req_timeout,
        )
        delay_ns = int(ramp_up_time * NS_PER_S / concurrent_users)
        run.w0_ns = run.t0_ns + delay_ns * (concurrent_users - 1)

        async def user(user_id: int) -> None:
            start_at = run.t0_ns + user_id * delay_ns
            wait = start_at - time.perf_counter_ns()
            if wait > 0:
                await asyncio.sleep(wait / NS_PER_S)
            await _requests(run, test_func, user_id, range(requests_per_user), req_timeout)
            run.close_window(time.perf_counter_ns())

        tasks = [asyncio.ensure_future(user(i)) for i in range(concurrent_users)]
        return await self._supervise(run, tasks, max_duration)

    # -- open model ----------------------------------------------------------
    async def run_rate_test(
        self,
        test_func: TestFunc,
        rate: float,
        duration: float,
        max_concurrency: int | None = None,
        *,
        ramp_up_time: float = 0.0,
        timeout: float | _Unset | None = _UNSET,
    ) -> dict[str, Any]:
        """Open model: ``rate`` starts per second for ``duration`` seconds."""
        if rate <= 0 or duration <= 0:
            raise ValueError("rate and duration must be > 0")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1 or None")
        if not 0 <= ramp_up_time <= duration:
            raise ValueError("ramp_up_time must be within 0..duration")
        req_timeout = self._timeout(timeout)
        planned = _arrivals_before(duration, rate, ramp_up_time)
        run = LoadRun(
            "open",
            {"rate": rate, "duration": duration, "max_concurrency": max_concurrency,
             "ramp_up_time": ramp_up_time, "planned_requests": planned},
            req_timeout,
        )
        run.w0_ns = run.t0_ns + int(ramp_up_time * NS_PER_S)
        run.w1_ns = run.t0_ns + int(duration * NS_PER_S)
        dispatcher = asyncio.ensure_future(
            self._dispatch(run, test_func, rate, duration, max_concurrency, planned, req_timeout)
        )
        return await self._supervise(run, [dispatcher], None)

    async def _dispatch(
        self,
        run: LoadRun,
        test_func: TestFunc,
        rate: float,
        duration: float,
        max_concurrency: int | None,
        planned: int,
        req_timeout: float | None,
    ) -> None:
        live: set[asyncio.Future[None]] = set()
        sem = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        late_ns = int(self.late_threshold * NS_PER_S)
        end_ns = run.t0_ns + int(duration * NS_PER_S)
        ramp = run.parameters["ramp_up_time"]
        k = 0
        burst = 0
        try:
            while k < planned:
                intended = run.t0_ns + int(_intended_offset(k, rate, ramp) * NS_PER_S)
                now = time.perf_counter_ns()
                if intended > now:
                    burst = 0
                    await asyncio.sleep((intended - now) / NS_PER_S)
                elif burst >= _DISPATCH_BATCH:
                    burst = 0
                    await asyncio.sleep(0)
                if sem is not None and sem.locked():
                    remaining = (end_ns - time.perf_counter_ns()) / NS_PER_S
                    try:
                        await asyncio.wait_for(sem.acquire(), max(0.0, remaining))
                    except asyncio.TimeoutError:
                        break
                elif sem is not None:
                    await sem.acquire()
                now = time.perf_counter_ns()
                lag = max(0, now - intended)
                assert run.start_lag is not None
                run.start_lag.record_ns(lag)
                if lag > late_ns:
                    run.late_starts += 1
                fut = asyncio.ensure_future(
                    _requests(run, test_func, k, _ONE, req_timeout, intended, sem)
                )
                live.add(fut)
                fut.add_done_callback(live.discard)
                k += 1
                burst += 1
            run.not_started = planned - k
            if live:
                await asyncio.wait(list(live), timeout=self.drain_timeout)
        finally:
            pending = [f for f in live if not f.done()]
            if pending:
                run.truncated = True
                run.stopping = True
                for f in pending:
                    f.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    # -- shared machinery ----------------------------------------------------
    async def _supervise(
        self, run: LoadRun, tasks: Sequence[asyncio.Future[None]], max_duration: float | None
    ) -> dict[str, Any]:
        reporter = (
            asyncio.ensure_future(self._report_progress(run)) if self.progress else None
        )
        progress_error: BaseException | None = None
        try:
            _, pending = await asyncio.wait(tasks, timeout=max_duration)
            if pending:
                run.truncated = True
                run.stopping = True
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            for t in tasks:
                if not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        except asyncio.CancelledError:
            run.interrupted = True
            run.stopping = True
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            run.finish()
            if reporter is not None:
                reporter.cancel()
                (outcome,) = await asyncio.gather(reporter, return_exceptions=True)
                if isinstance(outcome, Exception):
                    progress_error = outcome
            result = run.result()
            self.results.append(result)
            self._merged.merge(run.histogram)
            if self.progress is not None:
                snap = run.snapshot(run.end_ns, result["throughput_rps"])
                snap["final"] = True
                snap["interrupted"] = run.interrupted
                self.progress(snap)
        if progress_error is not None:  # the result is kept in self.results
            raise progress_error
        return result

    async def _report_progress(self, run: LoadRun) -> None:
        assert self.progress is not None
        interval = self.progress_interval
        last_n, last_ns = 0, run.t0_ns
        while True:
            await asyncio.sleep(interval)
            now = time.perf_counter_ns()
            n = run.total
            rps = (n - last_n) * NS_PER_S / max(1, now - last_ns)
            last_n, last_ns = n, now
            self.progress(run.snapshot(now, rps))

    def _timeout(self, timeout: float | _Unset | None) -> float | None:
        if isinstance(timeout, _Unset):
            return self.timeout
        _check_timeout(timeout)
        return timeout

    # -- results -------------------------------------------------------------
    def latency_histogram(self) -> LatencyHistogram:
        """Merged histogram (ns) of the successful requests of every run so far.

        The tester's own copy: merging it elsewhere does not change it.
        """
        return LatencyHistogram.merged([self._merged])

    def latency_samples(self) -> SampleSet:
        """The successful requests' latencies (s) of every run so far as a new
        ``stats.SampleSet``, ready for ``SampleSet.merge``.

        Exact values while the runs recorded at most 1024 in all; past that the set is
        built from the histogram's counts (0.1 % resolution), O(buckets), not O(requests).
        """
        return SampleSet.from_histogram(self._merged)

    def report_section(self) -> dict[str, Any]:
        """``runs``: each run's result (stats, errors, timeline); ``latency``: the
        merged summary of successful requests of all runs; ``server``: the
        attached recorder's per-route summary (only when one is attached)."""
        out: dict[str, Any] = {
            "runs": [dict(r) for r in self.results],
            "latency": self._merged.summary(),
        }
        if self.server is not None:
            out["server"] = self.server.report_section()
        return out


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be > 0 or None")


async def _requests(
    run: LoadRun,
    test_func: TestFunc,
    user_id: int,
    request_ids: range,
    timeout: float | None,
    intended_ns: int | None = None,
    sem: asyncio.Semaphore | None = None,
) -> None:
    """Run requests in turn and record each: the one place a request is run and settled.

    A closed-model user runs all its requests in this one coroutine (no coroutine per
    request: the loop's own cost is per request); an open-model arrival is one call with
    one request, timed from ``intended_ns`` (its intended start) and releasing ``sem``.
    A ``CancelledError`` raised by ``test_func`` itself fails that request and the user
    goes on; the run stopping (or the task being cancelled) leaves it ``unfinished``.
    """
    clock = time.perf_counter_ns
    try:
        for request_id in request_ids:
            run.in_flight += 1
            start = clock() if intended_ns is None else intended_ns
            try:
                if timeout is None:
                    await test_func(user_id, request_id)
                elif sys.version_info >= (3, 11):
                    async with asyncio.timeout(timeout):
                        await test_func(user_id, request_id)
                else:  # pragma: no cover - Python 3.10
                    await asyncio.wait_for(test_func(user_id, request_id), timeout)
            except asyncio.CancelledError as exc:
                if run.stopping or _being_cancelled():
                    run.unfinished += 1
                    raise
                # e.g. an awaited future the request did not own was cancelled
                run.cancelled_requests += 1
                run.record_failure(clock(), exc)
            except Exception as exc:
                run.record_failure(clock(), exc)
            else:
                end = clock()
                run.record_success(end, end - start)
            finally:
                run.in_flight -= 1
    finally:
        if sem is not None:
            sem.release()


def _being_cancelled() -> bool:
    """Whether the current task has a pending cancellation request (Python >= 3.11)."""
    if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
