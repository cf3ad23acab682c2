"""One group's members as the table stores them: serials in arrays, indexed
by node, and no object per member.

Pure: no IO. Owned by ``table.py`` (its only user), which keeps the
table-wide indexes (node -> its groups, local pid -> its groups) in step
with what the calls here report.

Rules:

- Rule 1: no object per member. A join is one serial in two flat arrays
  (``serials``, and ``owners``: the slot of its incarnation's :class:`Part`)
  and once more in its part. Arrays of machine integers are not containers
  CPython's collector tracks, so a table of 1M members holds a few thousand
  tracked objects, not a million: stored ``Pid`` objects (a tuple subclass,
  which the collector never untracks) made every full collection walk them
  all, 113 ms of CPU at 1M (docs/scale.md). A ``Pid`` is built when one is
  read: a selection, a members list, an event.
- Rule 2: the flat arrays hold one entry per join, order not kept (``pg``
  promises none). They are also the routable list while every node is
  routable (:class:`MemberView` reads them in place), so selection reads
  one index.
- Rule 3: ``parts[node]`` is that node's part for one incarnation; a
  node's other incarnations chain through ``Part.next`` (the replication
  holds one incarnation of a peer, but the table takes any pids). A part's
  serials are sorted, ``at[i]`` the flat index of ``serials[i]``: a pid is
  found by bisection in its own part and removed by swapping the last flat
  entry into its place (O(log n) and a memmove).
- Rule 4: a node's whole part goes in one step (:meth:`Group.drop_node`),
  touching that node's joins and the entries moved into their places only.
- ``local`` holds the local node's pids as ``Pid`` objects, sorted, once
  per join: ``local_first`` selection reads it, and those objects are the
  local processes' own.
- Bounds: a part exists only while it holds a join; a freed part's slot is
  reused, so ``slots`` never outgrows the most parts the group held at
  once; a group with no members is dropped by the table (its Rule 1).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Hashable, Iterable, Iterator, Sequence, Set
from itertools import repeat
from typing import cast, overload

from shoal.pid import Pid

__all__ = ["EMPTY", "Group", "Key", "MemberView", "Part", "make_pids"]

Key = tuple[str, Hashable]
EMPTY: list[Pid] = []  # shared, never mutated
_new = tuple.__new__


def make_pids(node: str, creation: int, serials: Iterable[int]) -> Iterator[Pid]:
    """``Pid(node, creation, s)`` for each serial, built at C speed."""
    return cast(Iterator[Pid], map(_new, repeat(Pid), zip(repeat(node), repeat(creation),
                                                          serials)))


class Part:
    """One incarnation's joins in one group: ``serials`` sorted (a serial
    once per join), ``at[i]`` the flat index of ``serials[i]``."""

    __slots__ = ("at", "creation", "next", "node", "serials", "slot")

    def __init__(self, node: str, creation: int, slot: int) -> None:
        self.node = node
        self.creation = creation
        self.slot = slot
        self.serials = array("q")
        self.at = array("q")
        self.next: Part | None = None  # the same node's next incarnation here


_FREE = Part("", -1, -1)  # what a freed slot holds


class MemberView(Sequence[Pid]):
    """Flat serials and owners read as a sequence of pids (built on read)."""

    __slots__ = ("_owners", "_serials", "_slots")

    def __init__(self, serials: array[int], owners: array[int], slots: list[Part]) -> None:
        self._serials = serials
        self._owners = owners
        self._slots = slots

    def __len__(self) -> int:
        return len(self._serials)

    @overload
    def __getitem__(self, i: int) -> Pid: ...

    @overload
    def __getitem__(self, i: slice) -> list[Pid]: ...

    def __getitem__(self, i: int | slice) -> Pid | list[Pid]:
        if type(i) is int:
            part = self._slots[self._owners[i]]
            return _new(Pid, (part.node, part.creation, self._serials[i]))
        assert isinstance(i, slice)
        return [self[k] for k in range(*i.indices(len(self)))]

    def __eq__(self, other: object) -> bool:  # as a list of the same pids would be
        if isinstance(other, MemberView | list | tuple):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as a list

    def __repr__(self) -> str:
        return f"MemberView({list(self)!r})"

    def __iter__(self) -> Iterator[Pid]:
        slots = self._slots
        for owner, serial in zip(self._owners, self._serials, strict=True):
            part = slots[owner]
            yield _new(Pid, (part.node, part.creation, serial))


class Group:
    """The members of one (scope, group); see the module header."""

    __slots__ = ("free", "key", "local", "owners", "parts", "routable", "rr", "serials",
                 "slots", "version")

    def __init__(self, key: Key) -> None:
        self.key = key  # one tuple per group, shared by the table's indexes
        self.serials = array("q")
        self.owners = array("i")
        self.slots: list[Part] = []
        self.free: list[int] = []
        self.parts: dict[str, Part] = {}
        # Invariant: the local node's pids (sorted, once per join), or EMPTY.
        self.local: list[Pid] = EMPTY
        # Invariant: routable is the members minus pids on unroutable nodes
        # or marked dead, valid while version == the table's route version;
        # None means stale.
        self.routable: Sequence[Pid] | None = None
        self.version = -1
        self.rr = 0

    # -- reads ----------------------------------------------------------------

    def find(self, node: str, creation: int) -> Part | None:
        """The part of incarnation (node, creation), if it has a join here."""
        part = self.parts.get(node)
        while part is not None and part.creation != creation:
            part = part.next
        return part

    def count(self, pid: Pid) -> int:
        """How many joins of ``pid`` this group holds."""
        part = self.find(pid.node, pid.creation)
        if part is None:
            return 0
        held, serial = part.serials, pid.serial
        return bisect_right(held, serial) - bisect_left(held, serial)

    def has(self, pid: Pid) -> bool:
        """Whether ``pid`` joined this group at least once."""
        part = self.find(pid.node, pid.creation)
        if part is None:
            return False
        held, serial = part.serials, pid.serial
        i = bisect_left(held, serial)
        return i < len(held) and held[i] == serial

    def pids(self) -> list[Pid]:
        """Every member, once per join, node by node: the local node's are
        the ``local`` objects themselves, every other pid is built now."""
        local = self.local
        here = local[0].node if local else None
        out: list[Pid] = []
        for node, part in self.parts.items():
            if node == here:
                out.extend(local)
                continue
            chained: Part | None = part
            while chained is not None:
                out.extend(make_pids(node, chained.creation, chained.serials))
                chained = chained.next
        return out

    def pids_of(self, node: str) -> list[Pid]:
        """``node``'s members, every incarnation, once per join, sorted."""
        part = self.parts.get(node)
        several = part is not None and part.next is not None
        out: list[Pid] = []
        while part is not None:
            out.extend(make_pids(node, part.creation, part.serials))
            part = part.next
        if several:
            out.sort()
        return out

    def view(self) -> MemberView:
        """Every member, as the flat arrays hold them (Rule 2)."""
        return MemberView(self.serials, self.owners, self.slots)

    def routable_view(self, unroutable: Set[str], dead: Set[Pid]) -> MemberView:
        """The members minus those on ``unroutable`` nodes or in ``dead``:
        the flat arrays themselves when nothing is skipped."""
        if not unroutable and not dead:
            return self.view()
        dead_on = {p.node for p in dead}
        serials, owners = array("q"), array("i")
        for node, head in self.parts.items():
            part = head if node not in unroutable else None
            while part is not None:
                kept = part.serials if node not in dead_on else [
                    s for s in part.serials if (node, part.creation, s) not in dead]
                serials.extend(kept)
                owners.extend(array("i", (part.slot,)) * len(kept))
                part = part.next
        return MemberView(serials, owners, self.slots)

    # -- writes ---------------------------------------------------------------

    def add(self, pids: Sequence[Pid], local: str) -> tuple[list[str], list[Pid]]:
        """One join per pid. Returns the nodes that had no part here before
        and the pids of node ``local`` among ``pids``."""
        if len(pids) == 1:  # one join at a time: the local API's usual case
            node, creation, serial = pids[0]
            new = [node] if self.add_serials(node, creation, [serial]) else []
            if node != local:
                return new, EMPTY
            self._add_local(pids)
            return new, [pids[0]]
        batches: dict[tuple[str, int], list[int]] = {}
        for node, creation, serial in pids:
            batch = batches.get((node, creation))
            if batch is None:
                batches[node, creation] = [serial]
            else:
                batch.append(serial)
        new = [node for (node, creation), serials in batches.items()
               if self.add_serials(node, creation, serials)]
        mine = [pid for pid in pids if pid.node == local] if any(
            node == local for node, _ in batches) else EMPTY
        if mine:
            self._add_local(mine)
        return new, mine

    def add_serials(self, node: str, creation: int, serials: Sequence[int]) -> bool:
        """One join per serial of incarnation (node, creation) (the local
        node's go through :meth:`add`). Returns whether ``node`` had no
        part here before."""
        first = node not in self.parts
        part = self.find(node, creation)
        if part is None:
            part = self._new_part(node, creation)
        if len(serials) == 1:  # one join: the local API's usual case
            serial, j = serials[0], len(self.serials)
            self.serials.append(serial)
            self.owners.append(part.slot)
            held = part.serials
            if not held or held[-1] <= serial:
                held.append(serial)
                part.at.append(j)
            else:
                i = bisect_right(held, serial)
                held.insert(i, serial)
                part.at.insert(i, j)
            return first
        batch = sorted(serials)
        flat = self.serials
        start = len(flat)
        flat.fromlist(batch)  # fromlist: a third of extend's time from a list
        self.owners.extend(array("i", (part.slot,)) * len(batch))
        held, at = part.serials, part.at
        if not held or held[-1] <= batch[0]:  # the usual case: new serials
            held.fromlist(batch)
            at.fromlist(list(range(start, start + len(batch))))
        else:
            for k, serial in enumerate(batch):
                i = bisect_right(held, serial)
                held.insert(i, serial)
                at.insert(i, start + k)
        return first

    def remove(self, pid: Pid) -> bool:
        """Remove one join of ``pid``; False if it had none. The caller
        checks ``pid.node in parts`` to learn whether the node's part went."""
        node, creation, serial = pid
        part = self.find(node, creation)
        if part is None:
            return False
        held = part.serials
        i = bisect_left(held, serial)
        if i == len(held) or held[i] != serial:
            return False
        j = part.at[i]
        del held[i]
        del part.at[i]
        if not held:
            self._free(part)
        local = self.local
        if local and local[0].node == node:
            del local[bisect_left(local, pid)]
            if not local:
                self.local = EMPTY
        self._take(j)
        return True

    def drop_node(self, node: str) -> list[Pid]:
        """Remove every join of ``node``'s pids; return them (sorted)."""
        gone = self.pids_of(node)
        part = self.parts.pop(node, None)
        if self.local and self.local[0].node == node:
            self.local = EMPTY
        if not self.parts:
            del self.serials[:]
            del self.owners[:]
            self.slots.clear()
            self.free.clear()
            return gone
        while part is not None:
            # Highest index first: the entry swapped into a gap then always
            # comes from past it, so it is never one of this part's.
            for j in sorted(part.at, reverse=True):
                self._take(j)
            self.slots[part.slot] = _FREE
            self.free.append(part.slot)
            part = part.next
        return gone

    # -- upkeep ---------------------------------------------------------------

    def _add_local(self, pids: Sequence[Pid]) -> None:
        local = self.local
        if local is EMPTY:
            local = self.local = []
        if len(pids) == 1:
            insort(local, pids[0])
        else:
            local.extend(pids)
            local.sort()

    def _new_part(self, node: str, creation: int) -> Part:
        slot = self.free.pop() if self.free else len(self.slots)
        part = Part(node, creation, slot)
        if slot == len(self.slots):
            self.slots.append(part)
        else:
            self.slots[slot] = part
        head = self.parts.get(node)
        if head is None:
            self.parts[node] = part
        else:
            part.next, head.next = head.next, part
        return part

    def _free(self, part: Part) -> None:
        self.slots[part.slot] = _FREE
        self.free.append(part.slot)
        head = self.parts[part.node]
        if head is part:
            if part.next is None:
                del self.parts[part.node]
            else:
                self.parts[part.node] = part.next
            return
        while head.next is not part:
            assert head.next is not None
            head = head.next
        head.next = part.next

    def _take(self, j: int) -> None:
        """Remove flat entry ``j``, whose part entry is already gone."""
        serials, owners = self.serials, self.owners
        serial = serials.pop()
        owner = owners.pop()
        n = len(serials)
        if j == n:
            return
        serials[j] = serial
        owners[j] = owner
        part = self.slots[owner]
        k = bisect_left(part.serials, serial)
        at = part.at
        while at[k] != n:  # among equal serials (several joins), the one at n
            k += 1
        at[k] = j
