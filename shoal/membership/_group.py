"""One group's members as the table stores them: compact, indexed by node.

Pure: no IO. Owned by ``table.py`` (its only user), which keeps the
table-wide indexes (node -> its groups, local pid -> its groups) in step
with what the calls here report.

Rules:

- Rule 1: ``members`` holds one entry per join, order not kept (``pg``
  promises none). It is also the routable list while every node is
  routable, so selection reads one list.
- Rule 2: ``parts[node]`` holds that node's joins (every incarnation)
  sorted, and beside each the index of that join in ``members``. A pid is
  found by bisection in its own node's part and removed by swapping the
  last member into its place: O(log n) and a memmove, and no dict entry or
  int object per member. (A per-group dict of positions plus a per-pid
  index of groups cost ~160 bytes per remote member; this costs ~25:
  docs/performance.md, bench/memory.py.)
- Rule 3: a node's whole part goes in one step (:meth:`Group.drop_node`),
  touching that node's joins and the members moved into their places only.
- Bounds: a part exists only while its node has a join here; a group with
  no members is dropped by the table (its Rule 1).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Sequence

from shoal.pid import Pid

__all__ = ["EMPTY", "Group", "Key", "Part"]

Key = tuple[str, Hashable]
EMPTY: list[Pid] = []  # shared, never mutated


class Part:
    """One node's joins in one group: ``pids`` sorted, ``at[i]`` the index
    of ``pids[i]`` in the group's ``members``."""

    __slots__ = ("at", "pids")

    def __init__(self) -> None:
        self.pids: list[Pid] = []
        self.at = array("q")


class Group:
    """The members of one (scope, group); see the module header."""

    __slots__ = ("key", "local", "members", "parts", "routable", "rr", "version")

    def __init__(self, key: Key) -> None:
        self.key = key  # one tuple per group, shared by the table's indexes
        self.members: list[Pid] = []
        self.parts: dict[str, Part] = {}
        # Invariant: the local node's part's pids (sorted), or EMPTY.
        self.local: list[Pid] = EMPTY
        # Invariant: routable is members minus pids on unroutable nodes or
        # marked dead, valid while version == the table's route version;
        # None means stale.
        self.routable: list[Pid] | None = None
        self.version = -1
        self.rr = 0

    def count(self, pid: Pid) -> int:
        """How many joins of ``pid`` this group holds."""
        part = self.parts.get(pid.node)
        if part is None:
            return 0
        pids = part.pids
        return bisect_right(pids, pid) - bisect_left(pids, pid)

    def has(self, pid: Pid) -> bool:
        """Whether ``pid`` joined this group at least once."""
        part = self.parts.get(pid.node)
        if part is None:
            return False
        pids = part.pids
        i = bisect_left(pids, pid)
        return i < len(pids) and pids[i] == pid

    def add(self, pids: Sequence[Pid], local: str) -> tuple[list[str], list[Pid]]:
        """One join per pid. Returns the nodes that had no part here before
        and the pids of node ``local`` among ``pids``."""
        if len(pids) == 1:  # one join at a time: the local API's usual case
            return self._add_one(pids[0], local)
        batches: dict[str, list[Pid]] = {}
        for pid in pids:
            batch = batches.get(pid.node)
            if batch is None:
                batches[pid.node] = [pid]
            else:
                batch.append(pid)
        members, parts = self.members, self.parts
        new: list[str] = []
        for node, batch in batches.items():
            part = parts.get(node)
            if part is None:
                part = parts[node] = Part()
                new.append(node)
                if node == local:
                    self.local = part.pids
            batch.sort()
            start = len(members)
            members.extend(batch)
            held, at = part.pids, part.at
            if not held or held[-1] <= batch[0]:  # the usual case: new serials
                held.extend(batch)
                at.extend(range(start, start + len(batch)))
            else:
                for k, pid in enumerate(batch):
                    i = bisect_right(held, pid)
                    held.insert(i, pid)
                    at.insert(i, start + k)
        return new, batches.get(local, EMPTY)

    def _add_one(self, pid: Pid, local: str) -> tuple[list[str], list[Pid]]:
        node = pid.node
        members = self.members
        part = self.parts.get(node)
        new: list[str] = []
        if part is None:
            part = self.parts[node] = Part()
            new.append(node)
            if node == local:
                self.local = part.pids
        held = part.pids
        if not held or held[-1] <= pid:
            held.append(pid)
            part.at.append(len(members))
        else:
            i = bisect_right(held, pid)
            held.insert(i, pid)
            part.at.insert(i, len(members))
        members.append(pid)
        return new, [pid] if node == local else EMPTY

    def remove(self, pid: Pid) -> bool:
        """Remove one join of ``pid``; False if it had none. The caller
        checks ``pid.node in parts`` to learn whether the part went."""
        node = pid.node
        part = self.parts.get(node)
        if part is None:
            return False
        held = part.pids
        i = bisect_left(held, pid)
        if i == len(held) or held[i] != pid:
            return False
        j = part.at[i]
        del held[i]
        del part.at[i]
        if not held:
            del self.parts[node]
            if self.local is held:
                self.local = EMPTY
        self._take(j)
        return True

    def drop_node(self, node: str) -> list[Pid]:
        """Remove every join of ``node``'s pids; return them (sorted)."""
        part = self.parts.pop(node, None)
        if part is None:
            return []
        if self.local is part.pids:
            self.local = EMPTY
        if not self.parts:
            self.members.clear()
        else:
            # Highest index first: the member swapped into a gap then always
            # comes from past it, so it is never one of this part's.
            for j in sorted(part.at, reverse=True):
                self._take(j)
        return part.pids

    def _take(self, j: int) -> None:
        """Remove ``members[j]``, whose part entry is already gone."""
        members = self.members
        last = members.pop()
        n = len(members)
        if j == n:
            return
        members[j] = last
        part = self.parts[last.node]
        k = bisect_left(part.pids, last)
        at = part.at
        while at[k] != n:  # among equal pids (several joins), the one at n
            k += 1
        at[k] = j
