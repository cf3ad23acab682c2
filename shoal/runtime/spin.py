"""Busy polling: the node's loop keeps polling for a short while after call
traffic instead of sleeping, so an answer that comes soon is read at once.

Why: a loop with nothing to do blocks in ``epoll_wait``; the OS may then
halt the CPU, and waking the thread when bytes arrive costs a scheduler
wake-up and, on a virtual machine whose idle vCPUs halt, an exit to the
hypervisor: 150-300 µs each on the machines shoal is benchmarked on, where
a whole remote round trip takes ~40 µs of CPU. Erlang's schedulers
busy-wait the same way before sleeping (``+sbwt``, on by default), and so
does Go's runtime. ``docs/decisions.md`` has the measurements.

Owns: the window (``window`` seconds; 0 turns polling off), the end of the
current window and whether a poll callback is scheduled; the time spent
polling (``polled_seconds``, exported as ``shoal_busy_poll_seconds_total``),
the windows opened and the pauses for contention (``backoffs``, exported as
``shoal_busy_poll_pauses_total``).

Rules:

1. Only call traffic pokes: a CALL sent, a CALL, REPLY, FAIL, CAST or SEND
   received (``remote.py``, ``inbound.py``), an HTTP request to the gateway.
   Heartbeats, membership and the store never do, so an idle node never
   polls, however many peers it has.
2. A poke extends the window to ``window`` seconds from now; at most one
   poll callback is scheduled at a time. The callback re-schedules itself
   with ``call_soon`` while the window lasts: a loop with a ready callback
   polls its sockets without blocking, then runs it. Everything else the
   loop has to do runs between two polls as usual; a busy loop never
   sleeps anyway, so polling costs it one callback per loop turn.
3. The window is bounded (``MAX_WINDOW``) and ends by itself: CPU spent on
   polling is at most ``window`` per poke, and nothing polls once the
   traffic stops. ``stop`` ends the current window at the next turn.
4. The clock is ``time.perf_counter``: the loop's own clock may be cached
   per turn at millisecond resolution (uvloop), too coarse for windows of
   tens of microseconds.
5. Polling yields to contention: a thread that polls while another one
   wants its CPU only delays that one, and on a busy host wake-ups are
   cheap anyway (the CPUs do not halt). So a window checks, when it ends
   and every ``CHECK_EVERY`` while it lasts, whether the OS preempted this
   thread (involuntary context switches); if so the window ends and no
   new one opens for a pause (``_backoff.py``'s schedule, from
   ``MIN_BACKOFF`` up to ``MAX_BACKOFF`` while contention lasts; it starts
   again after a window without it).
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Callable, Iterator

from shoal._backoff import backoff_delays
from shoal.errors import BadArgument

__all__ = ["DEFAULT_BUSY_POLL_US", "ENV", "MAX_WINDOW", "BusyPoll", "busy_poll_window",
           "check_busy_poll_us", "involuntary_switches"]

ENV = "SHOAL_BUSY_POLL_US"
CHECK_EVERY = 0.001  # seconds between two checks for contention in a long window (Rule 5)
MIN_BACKOFF = 0.01  # the first pause after contention; doubles up to MAX_BACKOFF
MAX_BACKOFF = 1.0
# This thread's context switches where the platform counts them per thread.
_WHO = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)

DEFAULT_BUSY_POLL_US = 150  # covers a loopback round trip's gap on both sides
MAX_WINDOW = 0.01  # seconds (Rule 3): 10 ms


def check_busy_poll_us(value: object, name: str = "busy_poll_us") -> int:
    """The window in microseconds, checked: an int in 0..10,000 (0: off).

    Raises:
        BadArgument: not an int in that range (``name`` says where it came from).
    """
    if (not isinstance(value, int) or isinstance(value, bool)
            or not 0 <= value <= MAX_WINDOW * 1_000_000):
        raise BadArgument(name, value, "microseconds as an int in 0..10000 (0: off)")
    return value


def busy_poll_window(value: int | None) -> int:
    """The node's window: ``value``, else ``SHOAL_BUSY_POLL_US``, else
    :data:`DEFAULT_BUSY_POLL_US`.

    Raises:
        BadArgument: out of range, or the environment variable is not an int.
    """
    if value is not None:
        return check_busy_poll_us(value)
    text = os.environ.get(ENV)
    if text is None or not text.strip():
        return DEFAULT_BUSY_POLL_US
    try:
        number = int(text)
    except ValueError:
        raise BadArgument(ENV, text, "microseconds as an int in 0..10000 (0: off)") from None
    return check_busy_poll_us(number, ENV)


def involuntary_switches() -> int:
    """Times the OS took this thread off its CPU for another one (Rule 5)."""
    return resource.getrusage(_WHO).ru_nivcsw


class BusyPoll:
    """Keeps a loop polling for ``window_us`` µs after each :meth:`poke`.

    Args:
        window_us: the window in microseconds (0: never poll).
        clock: seconds, monotonic, sub-microsecond (Rule 4; injected by tests).
        switches: this thread's involuntary context switches so far (Rule 5;
            default :func:`involuntary_switches`).

    Raises:
        BadArgument: ``window_us`` out of range.
    """

    __slots__ = ("_call_soon", "_check_at", "_clock", "_pauses", "_resume_at", "_running",
                 "_started", "_switches", "_switches_now", "_until", "backoffs", "polled_seconds",
                 "window", "windows")

    def __init__(self, window_us: int, *, clock: Callable[[], float] = time.perf_counter,
                 switches: Callable[[], int] | None = None) -> None:
        self.window = check_busy_poll_us(window_us) / 1_000_000
        self.polled_seconds = 0.0  # wall time spent in windows, for /metrics
        self.backoffs = 0  # pauses because another thread wanted the CPU (Rule 5)
        self.windows = 0  # windows opened
        self._clock = clock
        self._switches_now = involuntary_switches if switches is None else switches
        self._until = 0.0
        self._started = 0.0
        # Invariant: True exactly while one poll callback is scheduled (Rule 2).
        self._running = False
        self._call_soon: Callable[..., object] | None = None
        # Rule 5: no window opens before _resume_at; the pauses of the current
        # stretch of contention (None: none lately).
        self._resume_at = 0.0
        self._pauses: Iterator[float] | None = None
        self._switches = 0
        self._check_at = 0.0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Poll on ``loop`` from now on (pokes before this do nothing)."""
        self._call_soon = loop.call_soon

    def stop(self) -> None:
        """End the current window at the next loop turn, and poke no more."""
        self._until = 0.0
        self._call_soon = None

    def poke(self) -> None:
        """Call traffic happened: keep polling for the window from now."""
        if not self.window:
            return
        now = self._clock()
        self._until = now + self.window
        if not self._running and self._call_soon is not None and now >= self._resume_at:
            self._running = True
            self.windows += 1
            self._started = now
            self._check_at = now + CHECK_EVERY
            self._switches = self._switches_now()
            self._call_soon(self._poll)

    @property
    def polling(self) -> bool:
        """Whether a window is open now (a poll callback is scheduled)."""
        return self._running

    def _poll(self) -> None:
        now = self._clock()
        call_soon = self._call_soon
        if now < self._until and call_soon is not None:
            if now < self._check_at:
                call_soon(self._poll)
                return
            if not self._preempted(now):
                self._check_at = now + CHECK_EVERY
                call_soon(self._poll)
                return
        elif not self._preempted(now):
            self._pauses = None  # a window without contention: the next pause is short
        self._running = False
        self.polled_seconds += now - self._started

    def _preempted(self, now: float) -> bool:
        """Rule 5: whether the OS took the CPU from this thread since the
        window opened (or the last check); if so, pause polling."""
        switches = self._switches_now()
        if switches == self._switches:
            return False
        self._switches = switches
        if self._pauses is None:
            self._pauses = backoff_delays(initial=MIN_BACKOFF, maximum=MAX_BACKOFF)
        self._resume_at = now + next(self._pauses)
        self.backoffs += 1
        return True
