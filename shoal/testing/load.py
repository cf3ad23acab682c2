"""Load: callers looping group calls, each attempt recorded for the checker.

:class:`Load` runs ``callers`` tasks on a node (normally a
``LocalCluster``'s client), each calling one group in a loop. Every call
and every attempt goes into a :class:`~shoal.testing.invariants.Timeline`
(``call_started``/``attempt``/``call_ended``, on the event loop's clock,
the clock ``Groups.call(observe=...)`` uses), and every member the caller's
node sees join the group is recorded (``Timeline.joined``), so the checker
knows which live members existed. :meth:`Load.snapshot` gives the figures
so far (:class:`LoadStats`) cheaply enough for a live display.

Memory: the statistics are bounded whatever the run's length: latencies go
into a fixed histogram (:class:`Histogram`, ~5% resolution) and a per-second
bucket keeps its raw latencies only while its second is open, then only
its percentiles (one small :class:`SecondBucket` per second of load). The
Timeline, the checker's input, holds one record per call (see its header).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass, field

import shoal
from shoal.errors import NodeDown, ProcessExited, ShoalError
from shoal.pid import Pid
from shoal.testing.invariants import Outcome, Timeline

__all__ = ["Histogram", "Load", "LoadStats", "SecondBucket", "outcome_of"]

FAILURE_PAUSE = 0.005
"""Seconds a caller waits after a failed call before its next one."""
STOP_GRACE = 5.0
"""Seconds past the call timeout :meth:`Load.stop` waits for calls in flight."""


def outcome_of(error: BaseException | None) -> Outcome:
    """``"ok"``, ``"unknown"`` (delivery unknown: the callee exited
    mid-call, or its node went down after the request may have left), or
    ``"failed"``."""
    if error is None:
        return "ok"
    if isinstance(error, ProcessExited) or (isinstance(error, NodeDown)
                                            and not error.not_started):
        return "unknown"
    return "failed"


def _percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return 0.0
    return sorted_ms[min(len(sorted_ms) - 1, max(0, math.ceil(q * len(sorted_ms)) - 1))]


class Histogram:
    """Latencies in fixed log buckets (each 5% wider than the last, from
    10 µs to beyond 10 min): constant memory, percentiles within 5%."""

    RATIO = 1.05
    FLOOR_MS = 0.01
    SIZE = 400

    def __init__(self) -> None:
        self.counts = [0] * self.SIZE
        self.total = 0

    def add(self, ms: float) -> None:
        index = 0 if ms <= self.FLOOR_MS else int(math.log(ms / self.FLOOR_MS, self.RATIO)) + 1
        self.counts[min(index, self.SIZE - 1)] += 1
        self.total += 1

    def percentile(self, q: float) -> float:
        """The upper edge of the bucket holding the ``q`` quantile (ms)."""
        if not self.total:
            return 0.0
        rank = max(1, math.ceil(q * self.total))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return self.FLOOR_MS * self.RATIO ** index
        return self.FLOOR_MS * self.RATIO ** (self.SIZE - 1)


@dataclass(frozen=True, slots=True)
class SecondBucket:
    """One second of load: ``t`` seconds after it started."""

    t: int
    ok: int
    failed: int
    p50_ms: float
    p99_ms: float


@dataclass(slots=True, kw_only=True)
class LoadStats:
    """What the callers saw (``failed`` counts every failed call, the
    ``unknown`` ones included)."""

    ok: int = 0
    failed: int = 0
    unknown: int = 0
    """Failed calls whose delivery is unknown (the callee's node died or
    the callee exited mid-call): the request may have run."""
    retried: int = 0
    """Calls that needed more than one attempt."""
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    per_second: list[SecondBucket] = field(default_factory=list)
    failures_by_error: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"calls ok: {self.ok}, failed: {self.failed} (delivery unknown: "
                f"{self.unknown}), retried: {self.retried}, p50 {self.p50_ms:.2f} ms, "
                f"p99 {self.p99_ms:.2f} ms")


class _Second:
    __slots__ = ("failed", "latencies", "t")

    def __init__(self, t: int) -> None:
        self.t, self.failed, self.latencies = t, 0, list[float]()

    def close(self) -> SecondBucket:
        ordered = sorted(self.latencies)
        return SecondBucket(self.t, len(ordered), self.failed,
                            _percentile(ordered, 0.5), _percentile(ordered, 0.99))


class Load:
    """``callers`` tasks calling ``group`` in a loop from ``node`` (module header).

    Args:
        node: the calling node (a ``LocalCluster``'s ``client``).
        group: the group called; each request is a call number, which the
            sample service (``shoal.testing.sample``) echoes.
        timeline: where every call, attempt and join is recorded.
        callers: concurrent callers.
        timeout: each call's deadline, in seconds.
        idempotent: mark the calls idempotent (retried elsewhere when their
            delivery is unknown).
        scope: the group's scope.
    """

    def __init__(self, node: shoal.Node, group: str, timeline: Timeline, *, callers: int = 8,
                 timeout: float = 2.0, idempotent: bool = True, scope: str = "default") -> None:
        self.node, self.group, self.timeline = node, group, timeline
        self.callers, self.timeout, self.idempotent = callers, timeout, idempotent
        self.groups = node.scope(scope)
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._next_id = 0
        self._started = 0.0
        self._stats = LoadStats()
        self._latency = Histogram()
        self._closed: list[SecondBucket] = []
        self._second: _Second | None = None
        self._subscription: shoal.Subscription | None = None

    def start(self) -> None:
        """Start the callers (and the recording of the group's joins)."""
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        self._running = True
        self._subscription = self.groups.subscribe(self.group)
        for pid in self.groups.get_members(self.group):
            self.timeline.joined(self.group, pid, self._started)
        self._tasks.append(asyncio.create_task(self._watch_joins(self._subscription)))
        self._tasks += [asyncio.create_task(self._caller()) for _ in range(self.callers)]

    async def stop(self) -> LoadStats:
        """Let each caller finish its call in flight, stop, return the figures."""
        self._running = False
        if self._subscription is not None:
            self._subscription.close()
        callers = self._tasks[1:]
        if callers:
            _, late = await asyncio.wait(callers, timeout=self.timeout + STOP_GRACE)
            for task in late:
                task.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        return self.snapshot()

    def snapshot(self) -> LoadStats:
        """The figures so far (the current second included)."""
        s = self._stats
        seconds = list(self._closed)
        if self._second is not None:
            seconds.append(self._second.close())
        return LoadStats(ok=s.ok, failed=s.failed, unknown=s.unknown, retried=s.retried,
                         p50_ms=self._latency.percentile(0.5),
                         p99_ms=self._latency.percentile(0.99), per_second=seconds,
                         failures_by_error=dict(s.failures_by_error))

    async def _watch_joins(self, subscription: shoal.Subscription) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(StopAsyncIteration, shoal.SubscriptionOverflow):
            async for event in subscription:
                if event.kind == "join":
                    for pid in event.pids:
                        self.timeline.joined(self.group, pid, loop.time())

    def _bucket(self, at: float) -> _Second:
        t = int(at - self._started)
        second = self._second
        if second is None or second.t != t:
            if second is not None:
                self._closed.append(second.close())
            second = self._second = _Second(t)
        return second

    async def _caller(self) -> None:
        loop = asyncio.get_running_loop()
        timeline = self.timeline
        while self._running:
            call_id = self._next_id
            self._next_id += 1
            attempts = 0

            def observe(pid: Pid, start: float, end: float, error: ShoalError | None,
                        call_id: int = call_id) -> None:
                nonlocal attempts
                attempts += 1
                timeline.attempt(call_id, pid, start, end, outcome_of(error))

            started = loop.time()
            timeline.call_started(call_id, self.group, started, self.timeout,
                                  idempotent=self.idempotent)
            error: ShoalError | None = None
            try:
                await self.groups.call(self.group, call_id, timeout=self.timeout,
                                       idempotent=self.idempotent, observe=observe)
            except ShoalError as exc:
                error = exc
            ended = loop.time()
            outcome = outcome_of(error)
            timeline.call_ended(call_id, ended, outcome, "" if error is None else
                                f"{type(error).__name__}: {_first_line(error)}")
            self._count(outcome, error, attempts, started, ended)
            if error is not None:
                # A call that fails at once (NoMembers on an empty group) never
                # suspends: without this pause the callers would spin, hold the
                # event loop and fill the timeline until memory runs out.
                await asyncio.sleep(FAILURE_PAUSE)

    def _count(self, outcome: Outcome, error: ShoalError | None, attempts: int,
               started: float, ended: float) -> None:
        stats = self._stats
        second = self._bucket(ended)
        if attempts > 1:
            stats.retried += 1
        if error is None:
            stats.ok += 1
            ms = (ended - started) * 1000
            self._latency.add(ms)
            second.latencies.append(ms)
            return
        stats.failed += 1
        second.failed += 1
        if outcome == "unknown":
            stats.unknown += 1
        name = type(error).__name__
        stats.failures_by_error[name] = stats.failures_by_error.get(name, 0) + 1


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [""])[0]
