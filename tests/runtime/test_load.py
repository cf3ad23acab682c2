"""shoal.testing.load.Load against an empty group: its callers fail at
once (NoMembers never suspends), and they must still yield the event loop,
or the node (and the test) freezes while the timeline fills memory."""

from __future__ import annotations

import asyncio

import pytest

import shoal
from shoal.testing.invariants import Timeline
from shoal.testing.load import FAILURE_PAUSE, Load


# A regression spins the loop, where the signal-based timeout cannot stop it
# (it lands in one caller task); the thread method ends the run loudly instead.
@pytest.mark.timeout(60, method="thread")
async def test_callers_of_an_empty_group_leave_the_loop_free(node: shoal.Node) -> None:
    timeline = Timeline()
    load = Load(node, "nobody", timeline, callers=4, timeout=1.0)
    load.start()
    ticks = 0
    for _ in range(20):  # the loop must keep running other tasks
        await asyncio.sleep(0.01)
        ticks += 1
    stats = await load.stop()
    assert ticks == 20
    assert stats.ok == 0 and stats.failed > 0
    assert stats.failures_by_error.keys() == {"NoMembers"}
    # paced: about callers / FAILURE_PAUSE calls a second at most, not millions
    assert stats.failed <= 4 * (0.2 / FAILURE_PAUSE) * 3
    assert len(timeline.calls) == stats.failed
