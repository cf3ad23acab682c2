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
  process before any other code on its node runs (G1). Groups are indexed
  by node and each group keeps each node's joins apart (``_group.py``), so
  replacing or dropping one node's view walks that node's joins only: a
  peer's arrival, restart or departure costs what it owns, not what the
  table holds.
- Rule 4: every change returns the membership events it caused, as data;
  the runtime delivers them to subscribers.
- Rule 5: members are stored as serials in arrays, never as ``Pid``
  objects (``_group.py`` Rule 1: a table of 1M members is not 1M objects
  for the garbage collector to walk); every read builds the pids it returns.

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

from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Literal

from shoal.membership._group import EMPTY, Group, Key, make_pids
from shoal.membership.keys import each_join, merge_counts
from shoal.pid import Pid, Reason

__all__ = ["GroupTable", "MembershipEvent"]

LEFT = "left"
_LIST_MAX = 16
_Keys = list[tuple[str, Hashable]] | dict[tuple[str, Hashable], int]
# (scope, group) -> creation -> the serial -> joins maps (store buckets) wanted
_Wanted = dict[Key, dict[int, list[Mapping[int, int]]]]


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


class GroupTable:
    """Membership of every scope and group known to one node.

    Args:
        node: the name of the node owning this table; its pids are local.
    """

    def __init__(self, node: str) -> None:
        self.node = node
        # Invariant: no Group in here has an empty members list (Rule 1).
        self._scopes: dict[str, dict[Hashable, Group]] = {}
        # Invariant: _nodes[node] maps the key of every group where node has
        # a part (a join of any of its pids, any incarnation) to that group;
        # a node with no joins has no entry. Keyed by node so replacing or
        # dropping one node's view walks that node's groups and joins only;
        # it costs one entry per (node, group), nothing per pid.
        self._nodes: dict[str, dict[Key, Group]] = {}
        # Invariant: _local[pid] holds a local pid's joins, as a list of
        # group keys once per join while short, as a dict of join counts
        # once it passes _LIST_MAX entries; a pid with no memberships has no
        # entry. Only for this node's pids (few, and their exit path must
        # cost what the pid owns); a remote pid's groups are found through
        # _nodes and bisection (no per-pid memory: docs/performance.md).
        self._local: dict[Pid, _Keys] = {}
        # Invariant: nodes whose members are not routable (suspected).
        self._unroutable: set[str] = set()
        # Invariant: remote pids whose owner answered "no such process";
        # each one is a member (dropped with its last membership).
        self._dead: set[Pid] = set()
        self._route_version = 0

    # -- reads ----------------------------------------------------------------

    def members(self, scope: str, group: Hashable) -> list[Pid]:
        """All members of a group, once per join (a copy)."""
        entry = self._scopes.get(scope, {}).get(group)
        return entry.pids() if entry else []

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
        if pid.node == self.node:
            return list(dict.fromkeys(self._local.get(pid) or ()))  # dict keys or list
        return [key for key, entry in self._nodes.get(pid.node, {}).items() if entry.has(pid)]

    def count(self, pid: Pid, scope: str, group: Hashable) -> int:
        """How many times ``pid`` joined the group (0 if not a member)."""
        entry = self._scopes.get(scope, {}).get(group)
        return entry.count(pid) if entry is not None else 0

    def pids(self) -> Iterator[Pid]:
        """Every pid with at least one membership."""
        for node in list(self._nodes):
            yield from self.pids_on(node)

    def pids_on(self, node: str) -> list[Pid]:
        """Every pid of ``node`` (any incarnation) with at least one
        membership. Cost: O(that node's joins), not O(table)."""
        if node == self.node:
            return list(self._local)
        groups = self._nodes.get(node)
        if groups is None:
            return []
        return list(dict.fromkeys(pid for entry in groups.values()
                                  for pid in entry.pids_of(node)))

    def nodes(self) -> list[str]:
        """Every node owning at least one member pid (this one included)."""
        return list(self._nodes)

    def is_member(self, pid: Pid) -> bool:
        """Whether the pid is in any group."""
        if pid.node == self.node:
            return pid in self._local
        groups = self._nodes.get(pid.node)
        return groups is not None and any(entry.has(pid) for entry in groups.values())

    def routable(self, scope: str, group: Hashable) -> Sequence[Pid]:
        """Members on routable nodes, as a read-only sequence whose items
        are built when read; valid until the table next changes. Cost: O(1)
        unless membership or routability changed."""
        entry = self._scopes.get(scope, {}).get(group)
        if entry is None:
            return []
        routable = entry.routable
        if entry.version != self._route_version or routable is None:
            routable = self._refresh(entry)
        return routable

    def route(self, scope: str, group: Hashable) -> tuple[Sequence[Pid], list[Pid]]:
        """``(routable(), local_routable())`` in one lookup: selection's hot path."""
        groups = self._scopes.get(scope)
        entry = groups.get(group) if groups is not None else None
        if entry is None:
            return EMPTY, EMPTY
        routable = entry.routable
        if entry.version != self._route_version or routable is None:
            routable = self._refresh(entry)
        return routable, entry.local

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

    def _refresh(self, entry: Group) -> Sequence[Pid]:
        routable = entry.routable_view(self._unroutable, self._dead)
        entry.routable = routable
        entry.version = self._route_version
        return routable

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
        if pid.node == self.node or pid in self._dead:
            return False
        groups = [entry for entry in self._nodes.get(pid.node, {}).values() if entry.has(pid)]
        if not groups:
            return False
        self._dead.add(pid)
        for entry in groups:
            entry.routable = None
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
            entry = groups[group] = Group((scope, group))
        new_nodes, local = entry.add(added, self.node)
        key = entry.key
        for node in new_nodes:
            owned = self._nodes.get(node)
            if owned is None:
                owned = self._nodes[node] = {}
            owned[key] = entry
        index = self._local
        for pid in local:
            keys = index.get(pid)
            if keys is None:
                index[pid] = [key]
            elif isinstance(keys, dict):
                keys[key] = keys.get(key, 0) + 1
            else:
                keys.append(key)
                if len(keys) > _LIST_MAX:
                    index[pid] = _count(keys)
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
        groups = self._scopes.get(scope)
        entry = groups.get(group) if groups is not None else None
        if entry is None:
            return [], list(pids)
        gone: list[Pid] = []
        not_joined: list[Pid] = []
        for pid in pids:
            if not entry.remove(pid):
                not_joined.append(pid)
                continue
            gone.append(pid)
            self._forget_one(entry, pid.node, pid)
        if gone:
            self._removed(entry, gone)
        events = (
            [MembershipEvent(scope=scope, group=group, kind="leave", pids=tuple(gone),
                             reason=reason)]
            if gone
            else []
        )
        return events, not_joined

    def remove_pid(self, pid: Pid, reason: Reason) -> list[MembershipEvent]:
        """Remove every membership of a dead pid (Rule 3)."""
        if pid.node == self.node:
            keys = self._local.get(pid)
            counts = _count(keys) if keys is not None else {}
        else:
            counts = {key: n for key, entry in self._nodes.get(pid.node, {}).items()
                      if (n := entry.count(pid))}
        events = []
        for (scope, group), n in counts.items():
            events.extend(self.leave(scope, group, [pid] * n, reason)[0])
        return events

    def replace_node(
        self, node: str, entries: Iterable[tuple[str, Hashable, Pid, int]], reason: Reason,
        scope: str | None = None,
    ) -> list[MembershipEvent]:
        """Replace everything known about ``node``'s pids with ``entries``
        (scope, group, pid, join count), or only in ``scope`` when given
        (other scopes untouched). The view is replaced wholesale, never
        merged: a re-sync cannot resurrect a group the node left."""
        counts: dict[tuple[Key, int], dict[int, int]] = {}
        for in_scope, group, pid, count in entries:
            if pid.node != node or count <= 0 or (scope is not None and in_scope != scope):
                continue
            slot = counts.setdefault(((in_scope, group), pid.creation), {})
            slot[pid.serial] = slot.get(pid.serial, 0) + count
        wanted: _Wanted = {}
        for (key, creation), slot in counts.items():
            wanted.setdefault(key, {})[creation] = [slot]
        return self._replace(node, wanted, reason, scope)

    def replace_node_buckets(
        self, node: str, buckets: Iterable[tuple[str, Hashable, int, Mapping[int, int]]],
        reason: Reason, scope: str | None = None,
    ) -> list[MembershipEvent]:
        """:meth:`replace_node` from the store's buckets: (scope, group,
        creation, serial -> join count > 0), with no pid built per member."""
        wanted: _Wanted = {}
        for in_scope, group, creation, counts in buckets:
            if scope is None or in_scope == scope:
                wanted.setdefault((in_scope, group), {}).setdefault(creation, []).append(counts)
        return self._replace(node, wanted, reason, scope)

    def _replace(self, node: str, wanted: _Wanted, reason: Reason,
                 scope: str | None) -> list[MembershipEvent]:
        # Only this node's groups and joins are walked (the _nodes index): a
        # peer's arrival, restart or departure costs what it owns, not the table.
        held = self._nodes.get(node, {})
        # A pid that only moves between groups keeps its mark: leaving its
        # last old group below would drop it before the joins re-add it.
        dead = self._dead
        marked = [p for p in self.pids_on(node) if p in dead] if dead else []
        # One leave and one join event per group, not one per pid: replacing
        # a node of thousands of members stays a handful of events.
        events: list[MembershipEvent] = []
        have: dict[Key, dict[int, dict[int, int]]] = {}
        for key, entry in list(held.items()):
            if scope is not None and key[0] != scope:
                continue  # another scope: untouched
            want = wanted.get(key)
            if want is None:  # the whole part goes, in one step
                gone = entry.drop_node(node)
                self._forget_part(entry, node, gone)
                self._removed(entry, gone)
                events.append(MembershipEvent(scope=key[0], group=key[1], kind="leave",
                                              pids=tuple(gone), reason=reason))
                continue
            had: dict[int, dict[int, int]] = {}
            have[key] = had
            extra: list[Pid] = []
            for creation, serials in entry.incarnations(node):
                counts: dict[int, int] = {}
                for serial in serials:
                    counts[serial] = counts.get(serial, 0) + 1
                had[creation] = counts
                wants = merge_counts(want.get(creation, []))
                for serial, n in counts.items():
                    if n > wants.get(serial, 0):
                        extra.extend(make_pids(node, creation,
                                               repeat(serial, n - wants.get(serial, 0))))
            if extra:
                events.extend(self.leave(key[0], key[1], extra, reason)[0])
        for key, want in wanted.items():
            held_now = have.get(key, {})
            batches: list[tuple[int, list[int]]] = []
            for creation, maps in want.items():
                counts = held_now.get(creation, {})
                if counts:  # the node holds some already: only what it lacks
                    serials = [s for s, n in merge_counts(maps).items()
                               for _ in range(n - counts.get(s, 0))]
                else:
                    serials = list(chain.from_iterable(map(each_join, maps)))
                if serials:
                    batches.append((creation, serials))
            if batches:
                events.append(self._join_batches(key, node, batches))
        for pid in marked:
            if pid not in self._dead:
                self.mark_dead(pid)
        return events

    def _join_batches(self, key: Key, node: str,
                      batches: list[tuple[int, list[int]]]) -> MembershipEvent:
        """Join ``node``'s serials (creation, serials) to ``key``'s group:
        :meth:`join` without a pid per member stored or grouped."""
        added = tuple(chain.from_iterable(make_pids(node, creation, serials)
                                          for creation, serials in batches))
        if node == self.node:
            return self.join(key[0], key[1], added)[0]
        groups = self._scopes.setdefault(key[0], {})
        entry = groups.get(key[1])
        if entry is None:
            entry = groups[key[1]] = Group(key)
        new = False
        for creation, serials in batches:
            new = entry.add_serials(node, creation, serials) or new
        if new:
            self._nodes.setdefault(node, {})[entry.key] = entry
        entry.routable = None
        return MembershipEvent(scope=key[0], group=key[1], kind="join", pids=added)

    # -- index upkeep -----------------------------------------------------------

    def _forget_one(self, entry: Group, node: str, pid: Pid) -> None:
        """One join of ``pid`` left ``entry``: update the indexes."""
        if node not in entry.parts:
            self._drop_key(node, entry.key)
        if node == self.node:
            keys = self._local[pid]
            key = entry.key
            if isinstance(keys, dict):
                if keys[key] == 1:
                    del keys[key]
                else:
                    keys[key] -= 1
            else:
                keys.remove(key)
            if not keys:
                del self._local[pid]
        elif pid in self._dead and not self.is_member(pid):
            self._dead.discard(pid)  # its removal arrived: the mark goes with it

    def _forget_part(self, entry: Group, node: str, gone: list[Pid]) -> None:
        """Every join of ``node`` left ``entry``: update the indexes."""
        self._drop_key(node, entry.key)
        if node == self.node:
            for pid in gone:
                self._forget_one(entry, node, pid)
        elif self._dead:
            for pid in dict.fromkeys(gone):
                if pid in self._dead and not self.is_member(pid):
                    self._dead.discard(pid)

    def _drop_key(self, node: str, key: Key) -> None:
        owned = self._nodes.get(node)
        if owned is not None and owned.pop(key, None) is not None and not owned:
            del self._nodes[node]

    def _removed(self, entry: Group, gone: list[Pid]) -> None:
        entry.routable = None
        if not entry.serials:
            scope, group = entry.key
            groups = self._scopes[scope]
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
