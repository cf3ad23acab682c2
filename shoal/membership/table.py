"""The group table: who is a member of which group, as one node sees it.

Pure: no IO, no event loop. The runtime owns one table per node and is its
only writer; every read (``members``, selection) is a plain lookup.

Rules (after Erlang's ``pg``):

- Rule 1: a group with no members does not exist. There is no create or
  delete; ``members`` of a missing group is empty and ``which_groups`` lists
  only non-empty groups. (A group has no originating node, so a delete could
  not be resolved after a net split; removing the state removes the problem.)
- Rule 2: a pid may join a group several times and is listed once per join;
  a leave removes one join. Members are a multiset: their order is not kept
  (removal is O(1) by swapping the last member into the gap).
- Rule 3: a pid's memberships are removed all at once, in one call, when the
  pid is known dead (``remove_pid``) or when its node's view is replaced
  (``replace_node``). The runtime calls ``remove_pid`` in the exit path of a
  process before any other code on its node runs (G1). Pids are indexed by
  node, so replacing or dropping one node's view walks that node's pids
  only: a peer's arrival, restart or departure costs what it owns, not what
  the table holds (1,000 members leave a 1M-member table in ~4 ms).
- Rule 4: every change returns the membership events it caused, as data;
  the runtime delivers them to subscribers.

*Member* and *routable* differ: a member on a node that is suspected stays
in the table but ``routable`` skips it. So does a member whose owner
answered "no such process" (``mark_dead``): it stays a member until the
owner's removal arrives through the store, but selection never offers it
again (DESIGN.md). Those marks are a subset of the member pids and are
pruned with the pid's last membership (its removal, or its node's view
replaced by a new incarnation's), so they are bounded by the table itself.
Routability is kept here so selection is one cached list read: each group
caches its routable members and rebuilds that cache lazily when
membership, node suspicion or a mark changes.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from shoal.pid import Pid, Reason

__all__ = ["GroupTable", "MembershipEvent"]

LEFT = "left"
_LIST_MAX = 16
_Keys = list[tuple[str, Hashable]] | dict[tuple[str, Hashable], int]
_EMPTY: list[Pid] = []


@dataclass(frozen=True, slots=True, kw_only=True)
class MembershipEvent:
    """One change of one group, as subscribers receive it.

    Attributes:
        scope: the scope of the group.
        group: the group.
        kind: ``"join"`` or ``"leave"``.
        pids: the pids that joined or left (once per join).
        reason: for a leave, ``"left"`` when the pid left on purpose, or its
            exit reason when it exited (or ``"nodedown"`` when its node's
            entries were dropped); ``None`` for a join.
    """

    scope: str
    group: Hashable
    kind: Literal["join", "leave"]
    pids: tuple[Pid, ...]
    reason: Reason | None = None


class _Slots:
    """A list of pids with O(1) append and O(1) removal of one occurrence.

    Removal swaps the last item into the removed one's place, so the order
    of a group's members is not kept (``pg`` promises none either). Without
    the index, dropping a node's 2,000 members from a 40,000-member group
    scanned the list each time: 3.6 s of a blocked node.
    """

    __slots__ = ("items", "pos")

    def __init__(self) -> None:
        # Invariant: items[i] == pid for every i in pos[pid]; pos[pid] is an
        # int for a pid listed once, a list of ints for one listed more.
        self.items: list[Pid] = []
        self.pos: dict[Pid, int | list[int]] = {}

    def append(self, pid: Pid) -> None:
        index = len(self.items)
        self.items.append(pid)
        at = self.pos.get(pid)
        if at is None:
            self.pos[pid] = index
        elif isinstance(at, int):
            self.pos[pid] = [at, index]
        else:
            at.append(index)

    def remove(self, pid: Pid) -> None:
        at = self.pos[pid]
        if isinstance(at, int):
            index = at
            del self.pos[pid]
        else:
            index = at.pop()
            if len(at) == 1:
                self.pos[pid] = at[0]
        items = self.items
        last = items.pop()
        if index == len(items):
            return  # it was the last item
        items[index] = last
        moved = self.pos[last]
        if isinstance(moved, int):
            self.pos[last] = index
        else:
            moved[moved.index(len(items))] = index


class _Group:
    __slots__ = ("joins", "local", "members", "routable", "rr", "version")

    def __init__(self) -> None:
        # Invariant: joins holds one entry per join (order not kept);
        # members is its list, aliased for reads without a call.
        self.joins = _Slots()
        self.members = self.joins.items
        # Invariant: local is the sub-list of members owned by this node. A
        # plain list, removed from by a scan: a node's own members are far
        # fewer than a large group's, and an index here would cost ~70 bytes
        # per membership.
        self.local: list[Pid] = []
        # Invariant: routable is members minus pids on unroutable nodes,
        # valid while version == table._route_version; None means stale.
        self.routable: list[Pid] | None = None
        self.version = -1
        self.rr = 0


class GroupTable:
    """Membership of every scope and group known to one node.

    Args:
        node: the name of the node owning this table; its pids are local.
    """

    def __init__(self, node: str) -> None:
        self.node = node
        # Invariant: no _Group in here has an empty members list (Rule 1).
        self._scopes: dict[str, dict[Hashable, _Group]] = {}
        # Invariant: _by_node[pid.node][pid] holds pid's joins, as a list of
        # (scope, group) once per join while short, as a dict of join counts
        # once it passes _LIST_MAX entries; a pid with no memberships has no
        # entry, a node with no member pids has no dict. Lists because most
        # pids are in few groups and a one-item list is a quarter of a
        # one-item dict (most of a membership's memory); dicts so a pid in
        # thousands of groups costs O(1) per join, not O(groups). Keyed by
        # node first so replacing or dropping one node's view (every
        # incarnation of it) walks that node's pids only, not the table's:
        # the index costs one dict per node, nothing per pid.
        self._by_node: dict[str, dict[Pid, _Keys]] = {}
        # Invariant: nodes whose members are not routable (suspected).
        self._unroutable: set[str] = set()
        # Invariant: remote pids whose owner answered "no such process";
        # every one has an entry in _by_node (dropped with its last membership).
        self._dead: set[Pid] = set()
        self._route_version = 0

    # -- reads ----------------------------------------------------------------

    def members(self, scope: str, group: Hashable) -> list[Pid]:
        """All members of a group, once per join (a copy)."""
        entry = self._scopes.get(scope, {}).get(group)
        return list(entry.members) if entry else []

    def local_members(self, scope: str, group: Hashable) -> list[Pid]:
        """Members of a group owned by this node, once per join (a copy)."""
        entry = self._scopes.get(scope, {}).get(group)
        return list(entry.local) if entry else []

    def which_groups(self, scope: str) -> list[Hashable]:
        """Every non-empty group of a scope."""
        return list(self._scopes.get(scope, ()))

    def scopes(self) -> list[str]:
        """Every scope with at least one group."""
        return list(self._scopes)

    def groups_of(self, pid: Pid) -> list[tuple[str, Hashable]]:
        """The (scope, group) pairs a pid is in (each once)."""
        return list(dict.fromkeys(self._keys(pid) or ()))  # dict keys or list, in order

    def count(self, pid: Pid, scope: str, group: Hashable) -> int:
        """How many times ``pid`` joined the group (0 if not a member)."""
        keys = self._keys(pid)
        if not keys:
            return 0
        if isinstance(keys, dict):
            return keys.get((scope, group), 0)
        return keys.count((scope, group))

    def pids(self) -> Iterator[Pid]:
        """Every pid with at least one membership."""
        for pids in self._by_node.values():
            yield from pids

    def pids_on(self, node: str) -> list[Pid]:
        """Every pid of ``node`` (any incarnation) with at least one
        membership. Cost: O(that node's pids), not O(table)."""
        return list(self._by_node.get(node, ()))

    def nodes(self) -> list[str]:
        """Every node owning at least one member pid (this one included)."""
        return list(self._by_node)

    def is_member(self, pid: Pid) -> bool:
        """Whether the pid is in any group."""
        return self._keys(pid) is not None

    def _keys(self, pid: Pid) -> _Keys | None:
        pids = self._by_node.get(pid.node)
        return pids.get(pid) if pids is not None else None

    def routable(self, scope: str, group: Hashable) -> list[Pid]:
        """Members on routable nodes. The returned list is shared: do not
        mutate it. Cost: O(1) unless membership or routability changed."""
        entry = self._scopes.get(scope, {}).get(group)
        if entry is None:
            return []
        if entry.version != self._route_version or entry.routable is None:
            self._refresh(entry)
        assert entry.routable is not None
        return entry.routable

    def route(self, scope: str, group: Hashable) -> tuple[list[Pid], list[Pid]]:
        """``(routable(), local_routable())`` in one lookup: selection's hot path."""
        groups = self._scopes.get(scope)
        entry = groups.get(group) if groups is not None else None
        if entry is None:
            return _EMPTY, _EMPTY
        if entry.version != self._route_version or entry.routable is None:
            self._refresh(entry)
        return entry.routable, entry.local  # type: ignore[return-value]

    def local_routable(self, scope: str, group: Hashable) -> list[Pid]:
        """Local members (always routable from their own node)."""
        entry = self._scopes.get(scope, {}).get(group)
        return entry.local if entry else []

    def next_round_robin(self, scope: str, group: Hashable) -> int:
        """A rising counter per group, for round-robin selection."""
        entry = self._scopes.get(scope, {}).get(group)
        if entry is None:
            return 0
        entry.rr += 1
        return entry.rr

    def _refresh(self, entry: _Group) -> None:
        if self._unroutable or self._dead:
            bad, dead = self._unroutable, self._dead
            entry.routable = [p for p in entry.members if p.node not in bad and p not in dead]
        else:
            entry.routable = entry.members
        entry.version = self._route_version

    # -- routability ------------------------------------------------------------

    def set_routable(self, node: str, routable: bool) -> bool:
        """Mark a node's members routable or not; return whether it changed.
        Not a membership change: members stay, selection skips them."""
        if routable == (node not in self._unroutable):
            return False
        if routable:
            self._unroutable.discard(node)
        else:
            self._unroutable.add(node)
        self._route_version += 1
        return True

    def is_routable(self, node: str) -> bool:
        """Whether members on ``node`` may be selected."""
        return node not in self._unroutable

    def mark_dead(self, pid: Pid) -> bool:
        """Its owner answered "no such process" for ``pid``: stop offering it
        (every group's routable list skips it) while it stays a member until
        the owner's removal arrives. A local pid or a pid that is no member
        is ignored (the local exit path removes local pids itself).
        Returns whether anything changed."""
        keys = self._keys(pid)
        if keys is None or pid.node == self.node or pid in self._dead:
            return False
        self._dead.add(pid)
        for scope, group in keys:  # list entries or dict keys: (scope, group)
            self._scopes[scope][group].routable = None
        return True

    def is_marked_dead(self, pid: Pid) -> bool:
        """Whether its owner answered "no such process" for ``pid`` and its
        removal has not arrived yet."""
        return pid in self._dead

    # -- writes -----------------------------------------------------------------

    def join(self, scope: str, group: Hashable, pids: Iterable[Pid]) -> list[MembershipEvent]:
        """Add one join per pid. Returns the join event (empty if no pids)."""
        added = tuple(pids)
        if not added:
            return []
        groups = self._scopes.setdefault(scope, {})
        entry = groups.get(group)
        if entry is None:
            entry = groups[group] = _Group()
        key = (scope, group)
        by_node = self._by_node
        for pid in added:
            entry.joins.append(pid)
            node = pid.node
            if node == self.node:
                entry.local.append(pid)
            owned = by_node.get(node)
            if owned is None:
                owned = by_node[node] = {}
            keys = owned.get(pid)
            if keys is None:
                owned[pid] = [key]
            elif isinstance(keys, dict):
                keys[key] = keys.get(key, 0) + 1
            else:
                keys.append(key)
                if len(keys) > _LIST_MAX:
                    owned[pid] = _count(keys)
        entry.routable = None
        return [MembershipEvent(scope=scope, group=group, kind="join", pids=added)]

    def leave(
        self, scope: str, group: Hashable, pids: Iterable[Pid], reason: Reason = LEFT
    ) -> tuple[list[MembershipEvent], list[Pid]]:
        """Remove one join per pid.

        Returns:
            The leave event (if anything left) and the pids that were not
            joined (as ``pg:leave`` reports ``not_joined``).
        """
        key = (scope, group)
        gone: list[Pid] = []
        not_joined: list[Pid] = []
        for pid in pids:
            keys = self._keys(pid)
            if keys is None or key not in keys:
                not_joined.append(pid)
                continue
            self._drop_one(scope, group, pid, keys)
            gone.append(pid)
        events = (
            [MembershipEvent(scope=scope, group=group, kind="leave", pids=tuple(gone),
                             reason=reason)]
            if gone
            else []
        )
        return events, not_joined

    def remove_pid(self, pid: Pid, reason: Reason) -> list[MembershipEvent]:
        """Remove every membership of a dead pid (Rule 3)."""
        keys = self._keys(pid)
        if keys is None:
            return []
        events = []
        for (scope, group), n in _count(keys).items():
            for _ in range(n):
                self._drop_one(scope, group, pid, keys)
            events.append(
                MembershipEvent(scope=scope, group=group, kind="leave", pids=(pid,) * n,
                                reason=reason)
            )
        return events

    def replace_node(
        self, node: str, entries: Iterable[tuple[str, Hashable, Pid, int]], reason: Reason
    ) -> list[MembershipEvent]:
        """Replace everything known about ``node``'s pids with ``entries``
        (scope, group, pid, join count). The view is replaced wholesale,
        never merged: a re-sync cannot resurrect a group the node left."""
        Key = tuple[str, Hashable]
        wanted: dict[Key, dict[Pid, int]] = {}
        for scope, group, pid, count in entries:
            if pid.node != node or count <= 0:
                continue
            slot = wanted.setdefault((scope, group), {})
            slot[pid] = slot.get(pid, 0) + count
        # Only this node's pids are walked (the _by_node index): a peer's
        # arrival, restart or departure costs what it owns, not the table.
        have: dict[Key, dict[Pid, int]] = {}
        held_pids = self._by_node.get(node, {})
        for pid, keys in held_pids.items():
            for key, n in _count(keys).items():
                have.setdefault(key, {})[pid] = n
        # One leave and one join event per group, not one per pid: replacing
        # a node of thousands of members stays a handful of events.
        events: list[MembershipEvent] = []
        # A pid that only moves between groups keeps its mark: leaving its
        # last old group below would drop it before the joins re-add it.
        dead = self._dead
        marked = [pid for pid in held_pids if pid in dead] if dead else []
        for (scope, group), pids in have.items():
            want = wanted.get((scope, group), {})
            extra = [pid for pid, n in pids.items() for _ in range(n - want.get(pid, 0))]
            if extra:
                events.extend(self.leave(scope, group, extra, reason)[0])
        for (scope, group), want in wanted.items():
            held = have.get((scope, group), {})
            missing = [pid for pid, n in want.items() for _ in range(n - held.get(pid, 0))]
            if missing:
                events.extend(self.join(scope, group, missing))
        for pid in marked:
            if self._keys(pid) is not None and pid not in self._dead:
                self.mark_dead(pid)
        return events

    def _drop_one(self, scope: str, group: Hashable, pid: Pid, keys: _Keys) -> None:
        key = (scope, group)
        if isinstance(keys, dict):
            if keys[key] == 1:
                del keys[key]
            else:
                keys[key] -= 1
        else:
            keys.remove(key)
        if not keys:
            pids = self._by_node[pid.node]
            del pids[pid]
            if not pids:
                del self._by_node[pid.node]
            self._dead.discard(pid)  # its removal arrived: the mark goes with it
        groups = self._scopes[scope]
        entry = groups[group]
        entry.joins.remove(pid)
        if pid.node == self.node:
            _remove_last(entry.local, pid)
        entry.routable = None
        if not entry.members:
            del groups[group]
            if not groups:
                del self._scopes[scope]


def _count(keys: _Keys) -> dict[tuple[str, Hashable], int]:
    if isinstance(keys, dict):
        return dict(keys)
    counts: dict[tuple[str, Hashable], int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return counts


def _remove_last(items: list[Pid], pid: Pid) -> None:
    # The tail is where a join/leave pair in quick succession finds it.
    for i in range(len(items) - 1, -1, -1):
        if items[i] == pid:
            del items[i]
            return
