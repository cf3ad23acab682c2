"""JoinTimes (runtime/join_times.py): seconds since each local membership
began, following the group table; bounded by the memberships themselves."""

from __future__ import annotations

from shoal.membership.table import GroupTable
from shoal.pid import Pid
from shoal.runtime.join_times import JoinTimes
from shoal.testing.clock import ManualClock


async def test_join_times_follow_the_table_and_vanish_with_the_last_join() -> None:
    clock = ManualClock()
    table = GroupTable("n1")
    times = JoinTimes("n1", 7, table, clock=clock)
    me, other_node, old_me = Pid("n1", 7, 1), Pid("n2", 3, 1), Pid("n1", 6, 2)
    times.members_changed(table.join("s", "g", [me, other_node, old_me]))
    assert len(times) == 1  # only this incarnation's own pids
    await clock.advance(5.0)
    times.members_changed(table.join("s", "g", [me]))  # a second join keeps the first time
    assert times.seconds_since("s", "g", me) == 5.0
    times.members_changed(table.join("s", "h", [me]))
    assert len(times) == 2
    events, _ = table.leave("s", "g", [me])
    times.members_changed(events)
    assert times.seconds_since("s", "g", me) is not None  # one join still held
    events, _ = table.leave("s", "g", [me])
    times.members_changed(events)
    assert times.seconds_since("s", "g", me) is None
    times.members_changed(table.remove_pid(me, "normal"))  # an exit drops the rest
    assert len(times) == 0 and times.seconds_since("s", "h", me) is None
