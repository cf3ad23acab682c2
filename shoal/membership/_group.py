"""One group's members as the table stores them: serials in arrays, indexed
by node, and no object per member.

Pure: no IO. Owned by ``table.py`` (its only user), which keeps the
table-wide indexes (node -> its groups, local pid -> its groups) in step
with what the calls here report.

Rules:

- Rule 1: no object per member. A join is one serial in two flat arrays
  (``serials``, and ``owners``: the slot of its incarnation's part) and
  once more in its part. The collector sees a few arrays per group, never
  their integers, so a table of 1M members holds a few thousand
  tracked objects, not a million: stored ``Pid`` objects (a tuple subclass,
  which the collector never untracks) made every full collection walk them
  all, 113 ms of CPU at 1M (docs/scale.md). A ``Pid`` is built when one is
  read: a selection, a members list, an event.
- Rule 2: the flat arrays hold one entry per join, order not kept (``pg``
  promises none). They are also the routable list while every node is
  routable (:class:`MemberView` reads them in place), so selection reads
  one index.
- Rule 3: no tracked object per small part. A part (one incarnation's
  joins here) is a slot in the group's columns: ``nodes``, ``creations``,
  ``nexts`` (the same node's next incarnation's slot, -1 for none: the
  replication holds one incarnation of a peer, but the table takes any
  pids), ``held`` (its serials, sorted) and ``ats`` (``ats[i]`` the flat
  index of ``held[i]``). A part of up to ``SMALL`` joins keeps the last
  two as machine integers packed in ``bytes`` (which the collector never
  tracks), copied to arrays to change and packed again (O(SMALL)); a
  larger part keeps two arrays, changed in place, so the collector sees at
  most two objects per ``SMALL`` joins. An object per part (a part and its
  two arrays: ``array`` is tracked) made 100 groups of ten members per
  node 300,000 tracked objects at 1M, and start-up full collections of
  63-183 ms over them (docs/scale.md). ``parts[node]`` is the slot of
  that node's first incarnation. A pid is found by bisection in its own
  part and removed by swapping the last flat entry into its place:
  O(log n), a memmove, and the repacking of the small parts touched (once
  per part for a node's removal).
- Rule 4: a node's whole part goes in one step (:meth:`Group.drop_node`),
  touching that node's joins and the entries moved into their places only.
- ``local`` holds the local node's pids as ``Pid`` objects, sorted, once
  per join: ``local_first`` selection reads it, and those objects are the
  local processes' own.
- Bounds: a part exists only while it holds a join; a freed part's slot is
  reused, so the columns never outgrow the most parts the group held at
  once; a group with no members is dropped by the table (its Rule 1).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Hashable, Iterable, Iterator, Sequence, Set
from itertools import repeat
from typing import cast, overload

from shoal.pid import Pid

__all__ = ["EMPTY", "Group", "Key", "MemberView", "make_pids"]

Key = tuple[str, Hashable]
EMPTY: list[Pid] = []  # shared, never mutated
_new = tuple.__new__


def make_pids(node: str, creation: int, serials: Iterable[int]) -> Iterator[Pid]:
    """``Pid(node, creation, s)`` for each serial, built at C speed."""
    return cast(Iterator[Pid], map(_new, repeat(Pid), zip(repeat(node), repeat(creation),
                                                          serials)))


SMALL = 256  # the most joins a part keeps packed in bytes (Rule 3)


def _ints(held: bytes | array[int]) -> Sequence[int]:
    """A part's serials or positions read as machine integers, not copied."""
    return memoryview(held).cast("q") if isinstance(held, bytes) else held


class MemberView(Sequence[Pid]):
    """Flat serials and owners read as a sequence of pids (built on read)."""

    __slots__ = ("_creations", "_nodes", "_owners", "_serials")

    def __init__(self, serials: array[int], owners: array[int], nodes: list[str],
                 creations: array[int]) -> None:
        self._serials = serials
        self._owners = owners
        self._nodes = nodes  # each part's node and incarnation, by its slot
        self._creations = creations

    def __len__(self) -> int:
        return len(self._serials)

    @overload
    def __getitem__(self, i: int) -> Pid: ...

    @overload
    def __getitem__(self, i: slice) -> list[Pid]: ...

    def __getitem__(self, i: int | slice) -> Pid | list[Pid]:
        if type(i) is int:
            owner = self._owners[i]
            return _new(Pid, (self._nodes[owner], self._creations[owner], self._serials[i]))
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
        nodes, creations = self._nodes, self._creations
        for owner, serial in zip(self._owners, self._serials, strict=True):
            yield _new(Pid, (nodes[owner], creations[owner], serial))


class Group:
    """The members of one (scope, group); see the module header."""

    __slots__ = ("ats", "creations", "free", "held", "key", "local", "nexts", "nodes",
                 "owners", "parts", "routable", "rr", "serials", "version")

    def __init__(self, key: Key) -> None:
        self.key = key  # one tuple per group, shared by the table's indexes
        self.serials = array("q")
        self.owners = array("i")
        # The parts, one column per field, indexed by slot (Rule 3).
        self.nodes: list[str] = []
        self.creations = array("q")
        self.nexts = array("i")
        self.held: list[bytes | array[int]] = []
        self.ats: list[bytes | array[int]] = []
        self.free: list[int] = []
        self.parts: dict[str, int] = {}
        # Invariant: the local node's pids (sorted, once per join), or EMPTY.
        self.local: list[Pid] = EMPTY
        # Invariant: routable is the members minus pids on unroutable nodes
        # or marked dead, valid while version == the table's route version;
        # None means stale.
        self.routable: Sequence[Pid] | None = None
        self.version = -1
        self.rr = 0

    # -- reads ----------------------------------------------------------------

    def find(self, node: str, creation: int) -> int:
        """The slot of incarnation (node, creation)'s part, or -1 if it has
        no join here."""
        slot = self.parts.get(node, -1)
        creations, nexts = self.creations, self.nexts
        while slot >= 0 and creations[slot] != creation:
            slot = nexts[slot]
        return slot

    def incarnations(self, node: str) -> Iterator[tuple[int, Sequence[int]]]:
        """(creation, its serials sorted) of each of ``node``'s parts here."""
        slot = self.parts.get(node, -1)
        while slot >= 0:
            yield self.creations[slot], _ints(self.held[slot])
            slot = self.nexts[slot]

    def count(self, pid: Pid) -> int:
        """How many joins of ``pid`` this group holds."""
        slot = self.find(pid.node, pid.creation)
        if slot < 0:
            return 0
        held, serial = _ints(self.held[slot]), pid.serial
        return bisect_right(held, serial) - bisect_left(held, serial)

    def has(self, pid: Pid) -> bool:
        """Whether ``pid`` joined this group at least once."""
        slot = self.find(pid.node, pid.creation)
        if slot < 0:
            return False
        held, serial = _ints(self.held[slot]), pid.serial
        i = bisect_left(held, serial)
        return i < len(held) and held[i] == serial

    def pids(self) -> list[Pid]:
        """Every member, once per join, node by node: the local node's are
        the ``local`` objects themselves, every other pid is built now."""
        local = self.local
        here = local[0].node if local else None
        out: list[Pid] = []
        for node in self.parts:
            if node == here:
                out.extend(local)
                continue
            for creation, serials in self.incarnations(node):
                out.extend(make_pids(node, creation, serials))
        return out

    def pids_of(self, node: str) -> list[Pid]:
        """``node``'s members, every incarnation, once per join, sorted."""
        out: list[Pid] = []
        several = False
        for creation, serials in self.incarnations(node):
            several = bool(out)
            out.extend(make_pids(node, creation, serials))
        if several:
            out.sort()
        return out

    def view(self) -> MemberView:
        """Every member, as the flat arrays hold them (Rule 2)."""
        return MemberView(self.serials, self.owners, self.nodes, self.creations)

    def routable_view(self, unroutable: Set[str], dead: Set[Pid]) -> MemberView:
        """The members minus those on ``unroutable`` nodes or in ``dead``:
        the flat arrays themselves when nothing is skipped."""
        if not unroutable and not dead:
            return self.view()
        dead_on = {p.node for p in dead}
        serials, owners = array("q"), array("i")
        for node, head in self.parts.items():
            slot = head if node not in unroutable else -1
            while slot >= 0:
                creation, raw = self.creations[slot], self.held[slot]
                kept = len(_ints(raw))
                if node in dead_on:
                    alive = [s for s in _ints(raw) if (node, creation, s) not in dead]
                    serials.fromlist(alive)
                    kept = len(alive)
                elif isinstance(raw, bytes):
                    serials.frombytes(raw)
                else:
                    serials.extend(raw)
                owners.extend(array("i", (slot,)) * kept)
                slot = self.nexts[slot]
        return MemberView(serials, owners, self.nodes, self.creations)

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
        slot = self.find(node, creation)
        if slot < 0:
            slot = self._new_part(node, creation)
        flat = self.serials
        start = len(flat)
        held, at = self._open(slot)
        if len(serials) == 1:  # one join: the local API's usual case
            serial = serials[0]
            flat.append(serial)
            self.owners.append(slot)
            if not held or held[-1] <= serial:
                held.append(serial)
                at.append(start)
            else:
                i = bisect_right(held, serial)
                held.insert(i, serial)
                at.insert(i, start)
            self._close(slot, held, at)
            return first
        batch = sorted(serials)
        flat.fromlist(batch)  # fromlist: a third of extend's time from a list
        self.owners.extend(array("i", (slot,)) * len(batch))
        if not held or held[-1] <= batch[0]:  # the usual case: new serials
            held.fromlist(batch)
            at.fromlist(list(range(start, start + len(batch))))
        else:
            for k, serial in enumerate(batch):
                i = bisect_right(held, serial)
                held.insert(i, serial)
                at.insert(i, start + k)
        self._close(slot, held, at)
        return first

    def remove(self, pid: Pid) -> bool:
        """Remove one join of ``pid``; False if it had none. The caller
        checks ``pid.node in parts`` to learn whether the node's part went."""
        node, creation, serial = pid
        slot = self.find(node, creation)
        if slot < 0:
            return False
        found = _ints(self.held[slot])
        i = bisect_left(found, serial)
        if i == len(found) or found[i] != serial:
            return False
        if len(found) == 1:
            j = _ints(self.ats[slot])[0]
            self._free(slot)
        else:
            held, at = self._open(slot)
            j = at[i]
            del held[i]
            del at[i]
            self._close(slot, held, at)
        local = self.local
        if local and local[0].node == node:
            del local[bisect_left(local, pid)]
            if not local:
                self.local = EMPTY
        pending: dict[int, array[int]] = {}
        self._take(j, pending)
        self._write(pending)
        return True

    def drop_node(self, node: str) -> list[Pid]:
        """Remove every join of ``node``'s pids; return them (sorted)."""
        gone = self.pids_of(node)
        slot = self.parts.pop(node, -1)
        if self.local and self.local[0].node == node:
            self.local = EMPTY
        if not self.parts:
            for column in (self.serials, self.owners, self.nodes, self.creations, self.nexts,
                           self.held, self.ats, self.free):
                del column[:]
            return gone
        pending: dict[int, array[int]] = {}  # the positions changed, written once
        while slot >= 0:
            at = pending.pop(slot, None)
            # Highest index first: the entry swapped into a gap then always
            # comes from past it, so it is never one of this part's.
            for j in sorted(_ints(self.ats[slot]) if at is None else at, reverse=True):
                self._take(j, pending)
            following = self.nexts[slot]
            self._clear(slot)
            slot = following
        self._write(pending)
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

    def _new_part(self, node: str, creation: int) -> int:
        if self.free:
            slot = self.free.pop()
            self.nodes[slot], self.creations[slot] = node, creation
        else:
            slot = len(self.nodes)
            self.nodes.append(node)
            self.creations.append(creation)
            self.nexts.append(-1)
            self.held.append(b"")
            self.ats.append(b"")
        head = self.parts.get(node, -1)
        if head < 0:
            self.parts[node] = slot
            self.nexts[slot] = -1
        else:
            self.nexts[slot], self.nexts[head] = self.nexts[head], slot
        return slot

    def _clear(self, slot: int) -> None:
        self.nodes[slot] = ""
        self.held[slot] = self.ats[slot] = b""
        self.nexts[slot] = -1
        self.free.append(slot)

    def _free(self, slot: int) -> None:
        node, nexts = self.nodes[slot], self.nexts
        head = self.parts[node]
        if head == slot:
            if nexts[slot] < 0:
                del self.parts[node]
            else:
                self.parts[node] = nexts[slot]
        else:
            while nexts[head] != slot:
                head = nexts[head]
            nexts[head] = nexts[slot]
        self._clear(slot)

    def _take(self, j: int, pending: dict[int, array[int]]) -> None:
        """Remove flat entry ``j``, whose part entry is already gone; the
        moved entry's new position goes into ``pending`` (see _write)."""
        serials, owners = self.serials, self.owners
        serial = serials.pop()
        owner = owners.pop()
        n = len(serials)
        if j == n:
            return
        serials[j] = serial
        owners[j] = owner
        at = pending.get(owner)
        if at is None:
            stored = self.ats[owner]
            if isinstance(stored, bytes):  # a small part: changed in a copy
                at = pending[owner] = array("q", stored)
            else:
                at = stored
        k = bisect_left(_ints(self.held[owner]), serial)
        while at[k] != n:  # among equal serials (several joins), the one at n
            k += 1
        at[k] = j

    def _open(self, slot: int) -> tuple[array[int], array[int]]:
        """The part's serials and positions as arrays to change in place
        (a copy of a small part's), stored back by :meth:`_close`."""
        held, at = self.held[slot], self.ats[slot]
        if isinstance(held, bytes):
            return array("q", held), array("q", at)
        assert isinstance(at, array)
        return held, at

    def _close(self, slot: int, held: array[int], at: array[int]) -> None:
        if len(held) <= SMALL:  # packed: no object the collector tracks
            self.held[slot], self.ats[slot] = held.tobytes(), at.tobytes()
        else:
            self.held[slot], self.ats[slot] = held, at

    def _write(self, pending: dict[int, array[int]]) -> None:
        """Store the positions :meth:`_take` changed, one bytes per part."""
        for slot, at in pending.items():
            self.ats[slot] = at.tobytes()
