"""Busy polling (``runtime/spin.py``): what opens a window, what ends it,
and what pauses it; and the node's setting.

The rules are checked on a real event loop with an injected clock and an
injected count of context switches, so no test depends on how fast this
machine is; the node tests check which traffic pokes, by counting windows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.runtime import spin
from shoal.runtime.spin import (
    DEFAULT_BUSY_POLL_US,
    MAX_BACKOFF,
    MIN_BACKOFF,
    PREEMPTED_GAP,
    PREEMPTION_SPAN,
    PREEMPTIONS_TO_PAUSE,
    PRESSURE_EVERY,
    PRESSURE_LIMIT,
    RESET_AFTER,
    BusyPoll,
    involuntary_switches,
    read_pressure,
)
from shoal.testing.cluster import wait_until

SECRET = "busy-poll-test-secret-0123456789"
WAIT = 5.0
MAX_TURNS = 1_000


class Clock:
    """A settable clock (seconds)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Pressure:
    """A settable CPU pressure (PSI some avg10, %); None: unknown."""

    def __init__(self) -> None:
        self.level: float | None = 0.0
        self.reads = 0

    def __call__(self) -> float | None:
        self.reads += 1
        return self.level


class Switches:
    """A settable count of involuntary context switches."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> int:
        return self.count


async def turns_until(condition: Callable[[], bool]) -> int:
    """Run loop turns until ``condition`` holds; how many it took (bounded)."""
    for turn in range(MAX_TURNS):
        if condition():
            return turn
        await asyncio.sleep(0)  # one loop turn: the poll callback runs in it
    raise AssertionError(f"condition not met in {MAX_TURNS} loop turns")


async def turns(count: int) -> None:
    """Let the loop run ``count`` turns."""
    for _ in range(count):
        await asyncio.sleep(0)  # one loop turn


def poller(window_us: int = 200, pressure: Pressure | None = None,
           cpu: Clock | None = None) -> tuple[BusyPoll, Clock, Switches]:
    """A started BusyPoll on injected clocks; this thread's CPU time (``cpu``)
    stands still unless the test moves it (time passing is time off the CPU)."""
    clock, switches = Clock(), Switches()
    poll = BusyPoll(window_us, clock=clock, switches=switches, pressure=pressure or Pressure(),
                    cpu_clock=cpu or Clock())
    poll.start(asyncio.get_running_loop())
    return poll, clock, switches


# -- the window (Rules 2 and 3) ----------------------------------------------------


async def test_a_poke_keeps_the_loop_polling_until_the_window_has_passed() -> None:
    poll, clock, _ = poller(200)
    poll.poke()
    assert poll.polling and poll.windows == 1
    await turns(20)  # the poll callback runs and re-schedules in each
    assert poll.polling  # the clock has not moved: the window lasts
    clock.now += 0.000_2
    await turns_until(lambda: not poll.polling)
    assert poll.windows == 1
    assert poll.polled_seconds == pytest.approx(0.000_2)
    assert poll.backoffs == 0


async def test_a_poke_inside_the_window_extends_it_without_a_second_callback() -> None:
    poll, clock, _ = poller(200)
    poll.poke()
    clock.now += 0.000_15
    poll.poke()  # the window now ends 200 µs from the next poll
    await turns(3)
    clock.now += 0.000_15
    await turns(10)
    assert poll.polling and poll.windows == 1
    clock.now += 0.000_05
    await turns_until(lambda: not poll.polling)
    assert poll.windows == 1
    assert poll.polled_seconds == pytest.approx(0.000_35)


async def test_a_window_of_zero_never_polls() -> None:
    poll, _, _ = poller(0)
    poll.poke()
    assert not poll.polling and poll.windows == 0


async def test_stop_ends_the_window_and_later_pokes_do_nothing() -> None:
    poll, _, _ = poller(200)
    poll.poke()
    poll.stop()
    await turns_until(lambda: not poll.polling)
    poll.poke()
    assert not poll.polling and poll.windows == 1


async def test_pokes_before_start_do_nothing() -> None:
    poll = BusyPoll(200, clock=Clock(), switches=Switches(), pressure=Pressure())
    poll.poke()
    assert not poll.polling and poll.windows == 0


# -- contention (Rule 5) -----------------------------------------------------------


async def preempt(poll: BusyPoll, clock: Clock, switches: Switches, times: int) -> None:
    """``times`` preemptions of the open window, 1.5 ms off the CPU each
    (past ``PREEMPTED_GAP``), each with an involuntary switch of its own."""
    for _ in range(times):
        assert poll.polling
        switches.count += 1  # another thread took this one's CPU
        clock.now += 0.001_5
        await turns(1)


async def test_an_occasional_preemption_lets_the_window_go_on() -> None:
    poll, clock, switches = poller(5_000)  # 5 ms: long enough to be checked inside
    poll.poke()
    await preempt(poll, clock, switches, PREEMPTIONS_TO_PAUSE - 1)
    assert poll.polling and poll.backoffs == 0
    clock.now += PREEMPTION_SPAN  # the next one comes more than the span after the first
    poll.poke()
    await preempt(poll, clock, switches, 1)
    assert poll.polling and poll.backoffs == 0


async def test_one_switch_counts_for_one_preemption_only() -> None:
    poll, clock, switches = poller(5_000)
    poll.poke()
    switches.count += 1
    for _ in range(PREEMPTIONS_TO_PAUSE + 1):  # long times off the CPU, one switch in all
        clock.now += 0.001_5  # (blocking calls, say)
        await turns(1)
        poll.poke()
    assert poll.polling and poll.backoffs == 0


async def test_repeated_preemption_pauses_polling_and_pauses_grow_while_it_lasts() -> None:
    poll, clock, switches = poller(5_000)
    pauses = []
    poll.poke()
    for _ in range(5):
        await preempt(poll, clock, switches, PREEMPTIONS_TO_PAUSE - 1)
        switches.count += 1
        clock.now += 0.001_5
        await turns_until(lambda: not poll.polling)
        poll.poke()  # paused: no window opens
        assert not poll.polling
        start = clock.now
        while not poll.polling:  # poke every 2.5 ms until the pause is over
            clock.now += MIN_BACKOFF / 4
            assert clock.now - start <= MAX_BACKOFF + MIN_BACKOFF
            poll.poke()
        pauses.append(clock.now - start)
    assert poll.backoffs == 5 and poll.windows == 6
    assert pauses[0] <= MIN_BACKOFF + MIN_BACKOFF / 4
    assert pauses[-1] > 2 * MIN_BACKOFF  # jittered by at most half, doubling each time


async def test_pauses_start_short_again_after_a_stretch_without_contention() -> None:
    poll, clock, switches = poller(5_000)
    for _ in range(5):  # a long stretch of contention: pauses near the cap
        poll.poke()
        await preempt(poll, clock, switches, PREEMPTIONS_TO_PAUSE - 1)
        switches.count += 1
        clock.now += 0.001_5
        await turns_until(lambda: not poll.polling)
        clock.now += MAX_BACKOFF
    clock.now += RESET_AFTER
    poll.poke()
    await preempt(poll, clock, switches, PREEMPTIONS_TO_PAUSE - 1)
    switches.count += 1
    clock.now += 0.001_5
    await turns_until(lambda: not poll.polling)
    assert poll.backoffs == 6
    start = clock.now
    while not poll.polling:
        clock.now += MIN_BACKOFF / 4
        poll.poke()
    assert clock.now - start <= MIN_BACKOFF + MIN_BACKOFF / 4


async def test_a_short_preemption_pauses_nothing() -> None:
    poll, clock, switches = poller(5_000)
    poll.poke()
    switches.count += 1  # a kernel thread's turn: the next poll comes soon after
    clock.now += 0.000_1
    await turns(3)
    assert poll.polling and poll.backoffs == 0


async def test_a_long_callback_is_not_preemption_even_with_a_switch_in_the_window() -> None:
    cpu = Clock()
    poll, clock, switches = poller(5_000, cpu=cpu)
    poll.poke()
    switches.count += 1  # a kernel thread's turn, somewhere in the window
    clock.now += 0.002  # then a 2 ms callback between two polls, on the CPU all along
    cpu.now += 0.001_9
    await turns(3)
    assert poll.polling and poll.backoffs == 0
    await preempt(poll, clock, switches, PREEMPTIONS_TO_PAUSE - 1)  # off the CPU: preempted
    switches.count += 1
    clock.now += 2 * PREEMPTED_GAP
    await turns_until(lambda: not poll.polling)
    assert poll.backoffs == 1


class CountingClock(Clock):
    """A settable clock that counts its readings."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


async def test_the_cpu_clock_is_read_once_per_preempted_gap_not_at_every_poll() -> None:
    cpu = CountingClock()
    poll, clock, _ = poller(5_000, cpu=cpu)
    poll.poke()
    opened = cpu.reads  # read once as the window opens
    for _ in range(40):  # 40 polls 10 µs apart: 0.4 ms in all, under the gap
        clock.now += 0.000_01
        cpu.now += 0.000_01
        await turns(1)
    assert poll.polling and cpu.reads == opened
    clock.now += PREEMPTED_GAP  # past the gap since the last reading: read again
    cpu.now += PREEMPTED_GAP
    await turns(1)
    assert poll.polling and cpu.reads == opened + 1 and poll.backoffs == 0


async def test_short_stretches_off_the_cpu_add_up_between_two_readings() -> None:
    poll, clock, switches = poller(5_000)  # this thread's CPU time stands still
    poll.poke()
    for _ in range(PREEMPTIONS_TO_PAUSE):
        switches.count += 1
        for _ in range(3):  # three stretches of 0.2 ms, each shorter than the gap
            clock.now += 0.000_2
            await turns(1)
    await turns_until(lambda: not poll.polling)
    assert poll.backoffs == 1


async def test_a_long_gap_without_preemption_pauses_nothing() -> None:
    poll, clock, _ = poller(5_000)
    poll.poke()
    clock.now += 0.002  # a long callback ran between two polls
    await turns(3)
    assert poll.polling and poll.backoffs == 0
    clock.now += 0.005
    await turns_until(lambda: not poll.polling)
    assert poll.backoffs == 0


async def test_no_window_opens_while_the_cpu_pressure_is_past_the_limit() -> None:
    pressure = Pressure()
    pressure.level = PRESSURE_LIMIT + 1  # threads waited for a CPU 11% of the last 10 s
    poll, clock, _ = poller(200, pressure)
    poll.poke()
    assert not poll.polling and poll.windows == 0 and poll.backoffs == 1
    reads = pressure.reads
    clock.now += PRESSURE_EVERY / 2
    pressure.level = 0.0
    poll.poke()  # not read again so soon: still paused, counted once
    assert not poll.polling and pressure.reads == reads and poll.backoffs == 1
    clock.now += PRESSURE_EVERY
    poll.poke()
    assert poll.polling and poll.windows == 1 and pressure.reads == reads + 1


async def test_an_unknown_pressure_does_not_keep_windows_closed() -> None:
    pressure = Pressure()
    pressure.level = None  # a kernel without PSI
    poll, _, _ = poller(200, pressure)
    poll.poke()
    assert poll.polling and poll.backoffs == 0


def test_read_pressure_takes_some_avg10_and_refuses_what_it_cannot_read(
        tmp_path: Path) -> None:
    psi = tmp_path / "cpu.pressure"
    psi.write_text("some avg10=12.50 avg60=3.00 avg300=1.00 total=123\n"
                   "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", encoding="ascii")
    assert read_pressure(psi) == 12.5
    psi.write_text("garbage\n", encoding="ascii")
    assert read_pressure(psi) is None
    assert read_pressure(tmp_path / "missing") is None


def test_involuntary_switches_reads_this_threads_count() -> None:
    first = involuntary_switches()
    assert isinstance(first, int) and first >= 0
    assert involuntary_switches() >= first


# -- the node's setting --------------------------------------------------------------


def test_a_node_polls_150_microseconds_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOAL_BUSY_POLL_US", raising=False)
    node = shoal.Node("n", store="memory://")
    assert DEFAULT_BUSY_POLL_US == 150
    assert node.busy_poll.window == pytest.approx(150e-6)


def test_the_environment_sets_the_window_and_the_argument_wins(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_BUSY_POLL_US", "0")
    assert shoal.Node("n", store="memory://").busy_poll.window == 0
    assert shoal.Node("n", store="memory://", busy_poll_us=40).busy_poll.window == \
        pytest.approx(40e-6)


@pytest.mark.parametrize("value", [-1, 10_001, 1.5, "150", True])
def test_a_bad_window_is_refused_naming_the_argument(value: Any) -> None:
    with pytest.raises(shoal.BadArgument) as info:
        shoal.Node("n", store="memory://", busy_poll_us=value)
    assert info.value.argument == "busy_poll_us"


@pytest.mark.parametrize("text", ["fast", "-5", "20000", "1.5"])
def test_a_bad_environment_value_is_refused_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("SHOAL_BUSY_POLL_US", text)
    with pytest.raises(shoal.BadArgument) as info:
        shoal.Node("n", store="memory://")
    assert info.value.argument == "SHOAL_BUSY_POLL_US"


# -- which traffic pokes (Rule 1) ----------------------------------------------------


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request

    async def handle_cast(self, request: Any) -> None:
        del request


@pytest.fixture
async def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               ) -> AsyncIterator[tuple[shoal.Node, shoal.Node]]:
    # No contention as far as the nodes know (Rule 5 is tested above): on a
    # loaded test machine a pause would keep a poke from opening a window.
    monkeypatch.setattr(spin, "involuntary_switches", lambda: 0)
    monkeypatch.setattr(spin, "pressure_file", lambda: None)
    store = f"sqlite://{tmp_path}/cluster.db"
    # Heartbeats every 50 ms (a quarter of the timeout): many during a test.
    async with shoal.Node("a", store=store, secret=SECRET, heartbeat_timeout=0.2,
                          busy_poll_us=10_000) as a, \
            shoal.Node("b", store=store, secret=SECRET, heartbeat_timeout=0.2,
                       busy_poll_us=10_000) as b:
        yield a, b


async def quiet(*nodes: shoal.Node) -> None:
    """Wait until no window is open on ``nodes`` (10 ms windows end by themselves)."""
    await wait_until(lambda: not any(n.busy_poll.polling for n in nodes), timeout=WAIT)


async def test_a_remote_call_opens_a_window_on_both_nodes(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    pid = await b.spawn(Echo)
    assert await a.call(pid, "connect", timeout=WAIT) == "connect"  # dials
    await quiet(a, b)
    before = a.busy_poll.windows, b.busy_poll.windows
    assert await a.call(pid, "hello", timeout=WAIT) == "hello"
    assert a.busy_poll.windows == before[0] + 1  # sent a CALL (its REPLY came inside)
    assert b.busy_poll.windows == before[1] + 1  # read a CALL (its REPLY went inside)


async def test_heartbeats_alone_never_open_a_window(pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    pid = await b.spawn(Echo)
    await a.call(pid, "connect", timeout=WAIT)
    conn = a._remote.connection("b")
    assert conn is not None
    await quiet(a, b)
    before = a.busy_poll.windows, b.busy_poll.windows
    heartbeats = conn.statistics().heartbeats
    await wait_until(lambda: conn.statistics().heartbeats >= heartbeats + 4, timeout=WAIT)
    assert (a.busy_poll.windows, b.busy_poll.windows) == before
    assert not a.busy_poll.polling and not b.busy_poll.polling


async def test_a_cast_opens_a_window_on_the_node_it_reaches(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    pid = await b.spawn(Echo)
    await a.call(pid, "connect", timeout=WAIT)
    await quiet(a, b)
    before = b.busy_poll.windows
    a.cast(pid, "hi")
    await wait_until(lambda: b.busy_poll.windows == before + 1, timeout=WAIT)


async def test_a_node_that_polls_not_opens_no_window(tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", store=store, secret=SECRET, busy_poll_us=0) as a, \
            shoal.Node("b", store=store, secret=SECRET, busy_poll_us=0) as b:
        pid = await b.spawn(Echo)
        for i in range(3):
            assert await a.call(pid, i, timeout=WAIT) == i
        assert a.busy_poll.windows == b.busy_poll.windows == 0
        assert a.busy_poll.polled_seconds == 0
