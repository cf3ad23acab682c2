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
   received (``remote.py``, ``inbound.py``), an HTTP request the gateway
   accepted (its token checked: a refused one pokes nothing).
   Heartbeats, membership and the store never do, so an idle node never
   polls, however many peers it has.
2. A poke extends the window to ``window`` seconds from the next poll (a
   poke inside a window only sets a flag: it reads no clock, ~60 ns); at
   most one poll callback is scheduled at a time. The callback re-schedules itself
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
   cheap anyway (the CPUs do not halt). A window was preempted when this
   thread spent more than ``PREEMPTED_GAP`` off its CPU since the CPU clock
   was last read (the wall time since minus the CPU time it used: a long
   callback is not preemption). That clock (``time.thread_time``, a system
   call: ~0.4 µs, a third of a poll) is read at the first poll more than
   ``PREEMPTED_GAP`` after the last reading, not at every poll: a shorter
   stretch cannot hold that much time off the CPU, and polls come every
   few µs, so each reading covers little more than the gap before it. And
   the OS took the CPU from it since the window opened or the last
   preemption (involuntary context switches: one system call per window,
   one more per long time off the CPU). An occasional preemption (a kernel
   thread's turn, the other node of a pair on 2 CPUs) changes nothing: at
   ``PREEMPTIONS_TO_PAUSE`` within ``PREEMPTION_SPAN`` the window ends and
   no new one opens for a pause: ``_backoff.py``'s schedule, from
   ``MIN_BACKOFF`` up to ``MAX_BACKOFF`` while contention lasts, starting
   short again after ``RESET_AFTER`` without a pause. (Pausing at the first
   preemption halved the polling's gain at 64 callers between two nodes on
   a 2-CPU VM: one every few hundred ms, each pause longer than the last.)
   A short preemption leaves no long gap and counts for nothing. Where the
   kernel reports CPU pressure (PSI: the cgroup's ``cpu.pressure``, else
   ``/proc/pressure/cpu``), no window opens while threads waited for a CPU
   more than ``PRESSURE_LIMIT`` % of the last 10 s (read every
   ``PRESSURE_EVERY`` at most, when a window would open): contention is
   seen before polling adds to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from shoal._backoff import backoff_delays
from shoal.errors import BadArgument
from shoal.runtime.checks import env_int

__all__ = ["DEFAULT_BUSY_POLL_US", "ENV", "MAX_WINDOW", "BusyPoll", "busy_poll_window",
           "check_busy_poll_us", "involuntary_switches"]

ENV = "SHOAL_BUSY_POLL_US"
DEFAULT_BUSY_POLL_US = 150  # covers a loopback round trip's gap on both sides
MAX_WINDOW = 0.01  # seconds (Rule 3): 10 ms
_EXPECTED = "microseconds as an int in 0..10000 (0: off)"
PREEMPTED_GAP = 0.000_5  # seconds between two polls that may mean preemption (Rule 5)
MIN_BACKOFF = 0.01  # the first pause after contention; doubles up to MAX_BACKOFF
MAX_BACKOFF = 1.0
RESET_AFTER = 2.0  # seconds without a pause after which pauses start short again
PREEMPTIONS_TO_PAUSE = 3  # preemptions within PREEMPTION_SPAN that pause polling (Rule 5)
PREEMPTION_SPAN = 1.0  # seconds
PRESSURE_LIMIT = 10.0  # % of time threads waited for a CPU (PSI some avg10): no window past it
PRESSURE_EVERY = 0.25  # seconds between two reads of the pressure file
try:
    import resource
except ImportError:  # pragma: no cover - Windows: no context-switch counts
    resource = None  # type: ignore[assignment]
# This thread's context switches where the platform counts them per thread.
_WHO = 0 if resource is None else getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)


def check_busy_poll_us(value: object, name: str = "busy_poll_us") -> int:
    """The window in microseconds, checked: an int in 0..10,000 (0: off).

    Raises:
        BadArgument: not an int in that range (``name`` says where it came from).
    """
    if (not isinstance(value, int) or isinstance(value, bool)
            or not 0 <= value <= MAX_WINDOW * 1_000_000):
        raise BadArgument(name, value, _EXPECTED)
    return value


def busy_poll_window(value: int | None) -> int:
    """The node's window: ``value``, else ``SHOAL_BUSY_POLL_US``, else
    :data:`DEFAULT_BUSY_POLL_US`.

    Raises:
        BadArgument: out of range, or the environment variable is not an int.
    """
    if value is not None:
        return check_busy_poll_us(value)
    return env_int(ENV, DEFAULT_BUSY_POLL_US, 0, int(MAX_WINDOW * 1e6), _EXPECTED)


@functools.cache
def pressure_file() -> Path | None:
    """The CPU pressure (PSI) file that covers this process: its cgroup's
    ``cpu.pressure`` under cgroup v2, else the host's ``/proc/pressure/cpu``;
    None where the kernel has none (Rule 5). Looked up once per process, not
    at every node's start."""
    candidates = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text(encoding="ascii").splitlines():
            if line.startswith("0::"):
                group = line[3:].strip().lstrip("/")
                candidates += [Path("/sys/fs/cgroup", group, "cpu.pressure"),
                               Path("/sys/fs/cgroup/unified", group, "cpu.pressure")]
    candidates.append(Path("/proc/pressure/cpu"))
    for path in candidates:
        if read_pressure(path) is not None:
            return path
    return None


def read_pressure(path: Path) -> float | None:
    """``some avg10`` of a PSI file: the share (0-100) of the last 10 s in
    which some runnable thread waited for a CPU; None if unreadable."""
    try:
        first = path.read_text(encoding="ascii").split("\n", 1)[0]
        return float(first.split("avg10=", 1)[1].split(None, 1)[0])
    except (OSError, IndexError, ValueError):
        return None


def involuntary_switches() -> int:
    """Times the OS took this thread off its CPU for another one (Rule 5);
    always 0 where the platform does not count them (Windows)."""
    return 0 if resource is None else resource.getrusage(_WHO).ru_nivcsw


class BusyPoll:
    """Keeps a loop polling for ``window_us`` µs after each :meth:`poke`.

    Args:
        window_us: the window in microseconds (0: never poll).
        clock: seconds, monotonic, sub-microsecond (Rule 4; injected by tests).
        switches: this thread's involuntary context switches so far (Rule 5;
            default :func:`involuntary_switches`).
        pressure: the CPU pressure in % (PSI ``some avg10``), or None when
            unknown (Rule 5; default: read from :func:`pressure_file`).
        cpu_clock: the CPU seconds this thread used so far (Rule 5; default
            ``time.thread_time``).

    Raises:
        BadArgument: ``window_us`` out of range.
    """

    __slots__ = ("_call_soon", "_clock", "_contended_at", "_cpu", "_cpu_clock", "_last",
                 "_pauses", "_poked", "_preempted_at", "_pressure", "_pressure_at", "_pressured",
                 "_resume_at", "_running", "_started", "_switches", "_switches_now", "_until",
                 "backoffs", "polled_seconds", "window", "windows")

    def __init__(self, window_us: int, *, clock: Callable[[], float] = time.perf_counter,
                 switches: Callable[[], int] | None = None,
                 pressure: Callable[[], float | None] | None = None,
                 cpu_clock: Callable[[], float] = time.thread_time) -> None:
        self.window = check_busy_poll_us(window_us) / 1_000_000
        self.polled_seconds = 0.0  # wall time spent in windows, for /metrics
        self.backoffs = 0  # pauses because another thread wanted the CPU (Rule 5)
        self.windows = 0  # windows opened
        self._clock = clock
        self._switches_now = involuntary_switches if switches is None else switches
        # The host's (or cgroup's) CPU pressure, found by start() unless given.
        self._pressure = pressure
        self._pressure_at = 0.0  # when to read it next
        self._pressured = False  # whether the last read was past PRESSURE_LIMIT
        self._until = 0.0
        self._started = 0.0
        # Invariant: True exactly while one poll callback is scheduled (Rule 2).
        self._running = False
        self._call_soon: Callable[..., object] | None = None
        # Rule 5: no window opens before _resume_at; _pauses are those of the
        # current stretch of contention, which began after _contended_at was
        # RESET_AFTER old.
        self._resume_at = 0.0
        self._contended_at = -RESET_AFTER
        # When the last preemptions were (the oldest drops out), Rule 5.
        self._preempted_at: deque[float] = deque(maxlen=PREEMPTIONS_TO_PAUSE)
        self._pauses = backoff_delays(initial=MIN_BACKOFF, maximum=MAX_BACKOFF)
        self._switches = 0
        self._last = 0.0  # when the CPU clock was last read (Rule 5)
        self._cpu_clock = cpu_clock
        self._cpu = 0.0  # this thread's CPU time then
        self._poked = False  # a poke came since the last poll (it extends the window)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Poll on ``loop`` from now on (pokes before this do nothing)."""
        self._call_soon = loop.call_soon
        if self._pressure is None and self.window:
            path = pressure_file()
            self._pressure = (lambda: None) if path is None else (lambda: read_pressure(path))

    def stop(self) -> None:
        """End the current window at the next loop turn, and poke no more."""
        self._until = 0.0
        self._poked = False
        self._call_soon = None

    def poke(self) -> None:
        """Call traffic happened: keep polling for the window from now."""
        if self._running:
            self._poked = True  # the next poll extends the window (no clock read here)
            return
        if not self.window or self._call_soon is None:
            return
        now = self._clock()
        if now < self._resume_at:
            return
        if now >= self._pressure_at:
            self._read_pressure(now)
        if self._pressured:
            return
        self._running = True
        self._poked = False
        self._until = now + self.window
        self.windows += 1
        self._started = now
        self._last = now
        self._cpu = self._cpu_clock()
        self._switches = self._switches_now()
        self._call_soon(self._poll)

    @property
    def polling(self) -> bool:
        """Whether a window is open now (a poll callback is scheduled)."""
        return self._running

    def _poll(self) -> None:
        now = self._clock()
        call_soon = self._call_soon
        if self._poked:
            self._poked = False
            self._until = now + self.window
        preempted = False
        if now - self._last > PREEMPTED_GAP:
            # Off the CPU since the last reading (Rule 5): the wall time that
            # passed minus the CPU time this thread used (a long callback is
            # not preemption). Preempted: the window ends, and a pause begins.
            cpu = self._cpu_clock()
            away = (now - self._last) - (cpu - self._cpu)
            self._last, self._cpu = now, cpu
            preempted = away > PREEMPTED_GAP and self._preempted(now)
        if not preempted and now < self._until and call_soon is not None:
            call_soon(self._poll)
            return
        self._running = False
        self.polled_seconds += now - self._started

    def _read_pressure(self, now: float) -> None:
        """Rule 5: read the CPU pressure (every ``PRESSURE_EVERY`` at most);
        past ``PRESSURE_LIMIT``, no window opens until a read says otherwise."""
        self._pressure_at = now + PRESSURE_EVERY
        level = self._pressure() if self._pressure is not None else None
        pressured = level is not None and level > PRESSURE_LIMIT
        if pressured and not self._pressured:
            self.backoffs += 1
        self._pressured = pressured

    def _preempted(self, now: float) -> bool:
        """Rule 5: whether polling pauses after this thread was off its CPU
        for long: only if the OS took the CPU from it (time off the CPU may
        be a blocking call too) for the ``PREEMPTIONS_TO_PAUSE``-th time
        within ``PREEMPTION_SPAN``."""
        switches = self._switches_now()
        if switches == self._switches:
            return False
        self._switches = switches  # the next preemption needs a switch of its own
        recent = self._preempted_at
        recent.append(now)
        if len(recent) < PREEMPTIONS_TO_PAUSE or now - recent[0] > PREEMPTION_SPAN:
            return False  # occasional: polling goes on
        recent.clear()
        if now - self._contended_at > RESET_AFTER:
            self._pauses = backoff_delays(initial=MIN_BACKOFF, maximum=MAX_BACKOFF)
        self._contended_at = now
        self._resume_at = now + next(self._pauses)
        self.backoffs += 1
        return True
