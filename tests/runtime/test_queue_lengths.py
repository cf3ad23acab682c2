"""ClusterView.note_queue_length: the queue length a remote callee reports
with each answer is kept for group members only (``least_loaded`` reads it);
a pid found in no group is remembered as such until the next join, so a
direct call's answer does not search its node's groups each time."""

from __future__ import annotations

from shoal.membership.table import GroupTable
from shoal.pid import Pid
from shoal.runtime.cluster import NOT_MEMBERS_KEPT, ClusterView

SCOPE = "default"


def test_a_non_member_reported_before_it_joined_is_kept_once_it_joins() -> None:
    table = GroupTable("me")
    view = ClusterView(table)
    pid = Pid.of("other", 1, 7)
    view.note_queue_length(pid, 3)
    view.note_queue_length(pid, 4)  # remembered as in no group: still not kept
    assert view.reported_queue_lengths() == {}
    view.members_changed(table.join(SCOPE, "g", [pid]))
    view.note_queue_length(pid, 5)
    assert view.reported_queue_lengths() == {pid: 5}


def test_a_join_of_another_pid_also_lets_a_remembered_non_member_be_kept() -> None:
    # Joins are what the table publishes; any of them empties the memory of
    # non-members, whichever pids it names (the table changes first).
    table = GroupTable("me")
    view = ClusterView(table)
    pid, other = Pid.of("other", 1, 7), Pid.of("other", 1, 8)
    view.note_queue_length(pid, 1)
    events = table.join(SCOPE, "g", [other]) + table.join(SCOPE, "h", [pid])
    view.members_changed(events)
    view.note_queue_length(pid, 2)
    assert view.reported_queue_lengths() == {pid: 2}


def test_a_member_that_leaves_its_last_group_is_forgotten_and_not_kept_again() -> None:
    table = GroupTable("me")
    view = ClusterView(table)
    pid = Pid.of("other", 1, 7)
    view.members_changed(table.join(SCOPE, "g", [pid]))
    view.note_queue_length(pid, 2)
    events, _ = table.leave(SCOPE, "g", [pid])
    view.members_changed(events)
    assert view.reported_queue_lengths() == {}
    view.note_queue_length(pid, 3)
    assert view.reported_queue_lengths() == {}


def test_the_memory_of_non_members_is_bounded() -> None:
    table = GroupTable("me")
    view = ClusterView(table)
    for serial in range(1, 3 * NOT_MEMBERS_KEPT):
        view.note_queue_length(Pid.of("other", 1, serial), 0)
    assert len(view._not_members) <= NOT_MEMBERS_KEPT  # the bound itself
    assert view.reported_queue_lengths() == {}
