"""What a remote membership costs the table: its pid and three slots.

A node seeing a large cluster holds every remote member; with a per-group
dict of positions and a per-pid index of groups that was ~160 bytes per
member besides the pid itself (~540 bytes a member in all, five times
Erlang's pg). bench/memory.py measures the whole path; this checks the
table's share stays what its layout promises (``_group.py``).
"""

from __future__ import annotations

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


def test_a_remote_member_costs_the_table_three_slots_beside_its_pid() -> None:
    # 20 nodes x 500 members of one group, joined a bucket (64) at a time
    # as the replication applies them; the pids exist before (they are the
    # replication's), so what is measured is the table's own memory.
    pids = [Pid(f"peer{n:02d}", 1000 + n, s) for n in range(20) for s in range(1, 501)]
    joins = [("g", pids[i:i + 64]) for i in range(0, len(pids), 64)]
    table = GroupTable("observer")
    per_member = _growth(table, joins) / len(pids)
    assert len(table.members("default", "g")) == len(pids)
    assert per_member < 40, per_member  # members, the node's part, its positions: 8 B each

