"""Call deadlines (``shoal/runtime/deadlines.py``) on a fake clock: never
early, bounded lateness, and nothing of a call kept once it ended."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import shoal
from shoal.runtime.checks import MAX_TIMEOUT
from shoal.runtime.deadlines import Deadlines
from shoal.testing.cluster import wait_until


class Timer:
    def __init__(self, when: float, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.when, self.callback, self.args = when, callback, args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """The two things Deadlines asks of its loop: ``time`` and ``call_later``."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[Timer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> Timer:
        timer = Timer(self.now + delay, callback, args)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        """Move the clock, running every timer due on the way, in order."""
        end = self.now + seconds
        for _ in range(100_000):
            due = [t for t in self.timers if not t.cancelled and t.when <= end]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            self.timers.remove(timer)
            self.now = max(self.now, timer.when)
            timer.callback(*timer.args)
        self.now = end


def started(clock: FakeClock) -> Deadlines:
    deadlines = Deadlines()
    deadlines.start(clock)  # type: ignore[arg-type]  # the fake has what Deadlines uses
    return deadlines


async def test_a_call_fails_after_its_timeout_never_before_and_at_most_two_ticks_late() -> None:
    clock = FakeClock()
    deadlines = started(clock)
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    deadlines.add(future, 1.0, "target")  # tick: 1/200 of the timeout, 5 ms
    clock.advance(0.999)
    assert not future.done()
    clock.advance(0.011)
    assert future.done()
    error = future.exception()
    assert isinstance(error, shoal.CallTimeout)
    assert error.target == "target" and error.timeout == 1.0


async def test_a_call_removed_when_it_ends_is_not_kept_until_its_deadline() -> None:
    clock = FakeClock()
    deadlines = started(clock)
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(3)]
    joined = [deadlines.add(f, 5.0, n) for n, f in enumerate(futures)]
    clock.advance(0.05)  # several ticks: the three are in a closed generation
    assert deadlines.pending() == 3
    for future, calls in zip(futures[:2], joined, strict=False):
        future.set_result("answered")
        calls.pop(future, None)  # what a caller does when it stops waiting
    assert deadlines.pending() == 1
    clock.advance(5.0)
    assert isinstance(futures[2].exception(), shoal.CallTimeout)
    assert futures[0].result() == futures[1].result() == "answered"
    assert deadlines.pending() == 0
    assert not [t for t in clock.timers if not t.cancelled], "an idle bucket keeps no timer"


async def test_an_answered_call_left_in_its_generation_is_dropped_at_the_next_tick() -> None:
    clock = FakeClock()
    deadlines = started(clock)
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    deadlines.add(future, 5.0, "target")
    future.set_result("answered")  # its caller never removes it
    clock.advance(0.025)  # one tick of a 5 s bucket
    assert deadlines.pending() == 0
    assert future.result() == "answered"


@pytest.mark.parametrize("timeout", [5, 0.0001, MAX_TIMEOUT])
async def test_only_checked_float_timeouts_are_cached_for_the_hot_path(timeout: Any) -> None:
    clock = FakeClock()
    deadlines = started(clock)
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    deadlines.add(future, timeout, "target")
    for key in deadlines.by_timeout:
        assert type(key) is float and 0 < key <= MAX_TIMEOUT


async def test_the_last_timeout_object_is_remembered_until_its_bucket_goes_idle() -> None:
    clock = FakeClock()
    deadlines = started(clock)
    loop = asyncio.get_running_loop()
    timeout = 1.0
    first: asyncio.Future[Any] = loop.create_future()
    calls = deadlines.add(first, timeout, "target")
    assert deadlines.last_timeout is timeout
    assert deadlines.last_bucket is deadlines.by_timeout[timeout]
    assert deadlines.last_bucket is not None and deadlines.last_bucket.current is calls
    # An int or a bool equal to the cached float finds its bucket, but is not
    # taken for the checked float (the hot paths compare by identity).
    deadlines.add(loop.create_future(), 1, "target")
    deadlines.add(loop.create_future(), True, "target")
    assert deadlines.last_timeout is timeout
    clock.advance(5.0)  # every call failed, every bucket idle and forgotten
    assert deadlines.pending() == 0
    assert deadlines.last_bucket is None
    assert deadlines.last_timeout != deadlines.last_timeout  # a NaN of its own: no caller's
    assert isinstance(first.exception(), shoal.CallTimeout)


async def test_a_call_with_the_timeout_of_a_bucket_gone_idle_still_times_out(
        node: shoal.Node) -> None:
    # The hot path takes the last timeout's bucket by identity: once that
    # bucket went idle it must arm a new one, not join the idle one.
    pid = await node.spawn(Holder)
    timeout = 0.05
    assert await node.call(pid, "echo", timeout) == "echo"
    bucket = node._deadlines.last_bucket
    assert bucket is not None
    await wait_until(lambda: bucket.timer is None, what="the bucket going idle")
    with pytest.raises(shoal.CallTimeout):
        await node.call(pid, "hold", timeout)


class Holder(shoal.GenServer):
    """Echoes, except "hold": never answered."""

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return shoal.NOREPLY if request == "hold" else request
