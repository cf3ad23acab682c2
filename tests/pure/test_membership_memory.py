"""What a remote membership costs the table: a few array slots, and no
object the garbage collector tracks.

A node seeing a large cluster holds every remote member; with a per-group
dict of positions and a per-pid index of groups that was ~160 bytes per
member besides the pid itself (~540 bytes a member in all, five times
Erlang's pg). A stored ``Pid`` (a tuple subclass, which CPython never
untracks) also made each member a tracked object: a full collection walked
all of them, a 113 ms stall at 1M members (docs/scale.md). bench/memory.py
and bench/scale.py measure the whole path; this checks the table's share
stays what its layout promises (``_group.py``).
"""

from __future__ import annotations

import gc
import tracemalloc

from shoal.membership.table import GroupTable
from shoal.pid import Pid


def _growth(table: GroupTable, joins: list[tuple[str, list[Pid]]]) -> int:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for group, pids in joins:
            table.join("default", group, pids)
        table.routable("default", "g")
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_a_remote_member_costs_the_table_a_few_array_slots() -> None:
    # 20 nodes x 500 members of one group, joined a bucket (64) at a time
    # as the replication applies them; the pids exist before (they are the
    # replication's), so what is measured is the table's own memory.
    pids = [Pid(f"peer{n:02d}", 1000 + n, s) for n in range(20) for s in range(1, 501)]
    joins = [("g", pids[i:i + 64]) for i in range(0, len(pids), 64)]
    table = GroupTable("observer")
    per_member = _growth(table, joins) / len(pids)
    assert len(table.members("default", "g")) == len(pids)
    assert per_member < 40, per_member  # flat serial and owner, the part's serial and position



def _tracked_growth(per_node: int) -> tuple[int, GroupTable]:
    """Tracked objects a table of 20 remote nodes x ``per_node`` members adds,
    its members joined a bucket at a time and re-synced, as the replication does."""
    table = GroupTable("observer")
    gc.collect()
    before = len(gc.get_objects())
    for n in range(20):
        pids = [Pid(f"peer{n:02d}", 1000 + n, s) for s in range(1, per_node + 1)]
        for i in range(0, per_node, 64):
            table.join("default", "g", pids[i:i + 64])
        del pids
    for n in range(20, 30):  # ten more nodes arrive through a re-sync
        table.replace_node_buckets(f"peer{n}", [
            ("default", "h", 1000 + n, dict.fromkeys(range(1, per_node + 1), 1))], "nodedown")
    table.route("default", "g")
    gc.collect()
    return len(gc.get_objects()) - before, table


def test_remote_members_add_no_object_the_garbage_collector_tracks() -> None:
    # Both sizes above a part's packed limit (256 joins): each part holds its
    # two arrays either way (the test below covers parts of ten joins).
    small, _ = _tracked_growth(640)
    large, table = _tracked_growth(6400)  # 192,000 joins instead of 19,200
    assert large - small <= 8, (small, large)  # one Pid per member was +190,000
    # Pids are built where they are read: every API still hands out Pid objects.
    members = table.members("default", "g")
    routable, _ = table.route("default", "g")
    assert len(members) == len(routable) == 20 * 6400
    assert type(members[0]) is Pid and type(routable[len(routable) - 1]) is Pid
    assert sorted(members) == sorted(routable)
    assert table.members("default", "h") == [Pid(f"peer{n}", 1000 + n, s)
                                             for n in range(20, 30) for s in range(1, 6401)]
    events = table.replace_node("peer20", [("default", "g", Pid("peer20", 1020, 7), 1)],
                                "nodedown")
    assert [(e.kind, e.group, len(e.pids)) for e in events] == [
        ("leave", "h", 6400), ("join", "g", 1)]
    assert all(type(p) is Pid for e in events for p in e.pids)
    assert {type(p) for p in table.pids_on("peer01")} == {Pid}


def _tracked_with_parts(groups_per_node: int) -> tuple[int, GroupTable]:
    """Tracked objects a table of 40 remote nodes x ``groups_per_node`` groups of
    ten members adds; the same 100 groups exist either way, re-synced as at start-up."""
    table = GroupTable("observer")
    gc.collect()
    before = len(gc.get_objects())
    for n in range(40):
        table.replace_node_buckets(f"peer{n:02d}", [
            ("default", f"g{(n * groups_per_node + k) % 100}", 1000 + n,
             dict.fromkeys(range(10 * k + 1, 10 * k + 11), 1))
            for k in range(groups_per_node)], "nodedown")
    gc.collect()
    return len(gc.get_objects()) - before, table


def test_many_small_groups_add_no_tracked_object_per_node_and_group() -> None:
    # The 100-groups layout: a (node, group) part of ten members. With an
    # object per part (it and its two arrays) 4,000 parts were 12,000 tracked
    # objects, and start-up full collections walked them all (docs/scale.md).
    few, _ = _tracked_with_parts(5)  # 200 parts
    many, table = _tracked_with_parts(100)  # 4,000 parts
    assert many - few <= 8, (few, many)
    assert sorted(table.members("default", "g7")) == sorted(
        Pid(f"peer{n:02d}", 1000 + n, s) for n in range(40) for s in range(71, 81))
    assert table.which_groups("default") and len(table.pids_on("peer03")) == 1000
    events = table.replace_node("peer03", [("default", "g7", Pid("peer03", 1003, 5), 1)],
                                "nodedown")
    # A leave in each of its 100 groups, and the join in g7.
    assert len(events) == 101 and table.members("default", "g7").count(
        Pid("peer03", 1003, 5)) == 1 and len(table.pids_on("peer03")) == 1
    routable, _ = table.route("default", "g7")
    assert Pid("peer03", 1003, 5) in list(routable) and len(routable) == 391
