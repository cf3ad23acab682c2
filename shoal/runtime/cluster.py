"""The cluster view: what this node knows of the other nodes.

Owns:

- ``_peers``: the latest incarnation of every other node the store showed
  (name -> ``PeerInfo``: creation, address, its ``nodes/`` record). Written
  by replication only (``seen``, ``gone``), as the store's watch reports
  registrations and session ends; read by remote messaging (which
  incarnation a call may go to, which connection is stale) and by redials.
- routability: whether a node's members may be selected. The cached
  routable lists live in the ``GroupTable`` (selection reads them there);
  this part is the only one that changes them (``set_routable``), as the
  transport reports a connection up, silent, alive again or lost, and as
  replication sees a new incarnation.
- per-callee load, for ``least_loaded``: ``_inflight`` (group calls this
  node made and not yet answered, per callee) and ``_queue_lengths`` (the
  queue length a remote member last reported in a reply).

Rules:

- Rule 1: an event about an incarnation older than the one in ``_peers``
  is stale (``is_stale``): it says nothing about the current one.
- Rule 3 (admission): this view is the transport's authority on
  incarnations (its ``PeerAdmission``): a peer that proved the secret is
  admitted only as the creation ``_peers`` shows for its name
  (``admit_now``). A claim not shown yet waits in ``wait_admitted``, the one
  place that waits for the view, woken by every ``seen``; a real new
  incarnation registers before it dials, so its watch event is near.
  Waiters share one event (``_changed``), so nothing grows with claims.
- Rule 2: "I could not reach it" is suspicion, never death: routability
  changes here; only replication's evidence (``gone``, a new creation)
  removes a node's members, and it does so through the group table.
- Bounds: ``_peers`` holds one entry per node the store lists.
  ``_suspect_since`` holds the nodes set unroutable and not routable again
  since (removed when routable again or gone).
  ``_inflight`` holds an entry only while a group call to that callee is
  out (removed at zero, and when a local process dies). ``_queue_lengths``
  keeps remote pids that are members of some group only: entries go when
  the pid leaves its last group (``members_changed``) or its node is lost
  (``node_lost``). ``_not_members`` holds at most ``NOT_MEMBERS_KEPT`` pids
  and is emptied by every join the table publishes (the table changes
  first, so no pid that joined stays in it).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from shoal.pid import Pid

if TYPE_CHECKING:
    from shoal.membership.table import GroupTable, MembershipEvent
    from shoal.runtime.peers import PeerInfo

__all__ = ["ClusterView"]

NOT_MEMBERS_KEPT = 4096
"""Remote pids remembered as in no group, at most (``note_queue_length``)."""


class ClusterView:
    """What this node knows of other nodes (see the module header).

    Args:
        table: the node's group table, whose routable lists this part sets.
    """

    def __init__(self, table: GroupTable) -> None:
        self._table = table
        # Invariant: the latest incarnation of every other node the store showed.
        self._peers: dict[str, PeerInfo] = {}
        # Invariant: every value >= 1 (an entry at zero is removed).
        self._inflight: dict[Pid, int] = {}
        # Invariant: keys are members of some group (Bounds).
        self._queue_lengths: dict[Pid, int] = {}
        # Remote pids found in no group since the last join anywhere (cleared
        # by every join, and when full): a direct call's answer then costs a
        # set lookup, not a search of its node's groups. Invariant: no member.
        self._not_members: set[Pid] = set()
        # Invariant: nodes set unroutable and not routable again since -> when
        # (monotonic seconds); dropped with the node (Bounds).
        self._suspect_since: dict[str, float] = {}
        # Set (and dropped) by the next ``seen``; None while nobody waits (Rule 3).
        self._changed: asyncio.Event | None = None

    # -- incarnations (written by replication) -------------------------------------

    def peer(self, name: str) -> PeerInfo | None:
        """The latest incarnation of ``name`` the store showed, if any."""
        return self._peers.get(name)

    def names(self) -> set[str]:
        """Every other node the store lists now."""
        return set(self._peers)

    def seen(self, info: PeerInfo) -> None:
        """The store shows ``info`` as ``info.name``'s registration."""
        self._peers[info.name] = info
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()  # Rule 3: claims waiting for the view look again

    def gone(self, name: str) -> PeerInfo | None:
        """The store no longer lists ``name``; returns what was known of it."""
        self._suspect_since.pop(name, None)
        return self._peers.pop(name, None)

    def admit_now(self, name: str, creation: int) -> bool | None:
        """Whether a peer claiming ``(name, creation)`` is admitted (Rule 3):
        True when the store shows that creation, False when it shows a
        newer one, None when it does not show the name or only an older one."""
        peer = self._peers.get(name)
        if peer is None or peer.creation < creation:
            return None
        return peer.creation == creation

    async def wait_admitted(self, name: str, creation: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the view to show ``creation``
        as ``name``'s incarnation (Rule 3); False if it does not by then,
        or shows a newer one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (verdict := self.admit_now(name, creation)) is None:
            if self._changed is None:
                self._changed = asyncio.Event()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._changed.wait()
            except TimeoutError:
                return self.admit_now(name, creation) is True
        return verdict

    def is_stale(self, name: str, creation: int) -> bool:
        """Whether an event about ``(name, creation)`` concerns a replaced
        incarnation (Rule 1)."""
        peer = self._peers.get(name)
        return peer is not None and peer.creation > creation

    # -- routability ---------------------------------------------------------------

    def is_routable(self, name: str) -> bool:
        """Whether ``name``'s members may be selected now."""
        return self._table.is_routable(name)

    def set_routable(self, name: str, routable: bool) -> None:
        """Whether ``name``'s members may be selected (Rule 2)."""
        self._table.set_routable(name, routable)
        if routable:
            self._suspect_since.pop(name, None)
        else:
            self._suspect_since.setdefault(name, time.monotonic())

    def suspected(self) -> dict[str, float]:
        """Nodes whose members are not routable now, each with the seconds
        since it became so (suspicion, Rule 2)."""
        now = time.monotonic()
        return {name: round(now - since, 3) for name, since in self._suspect_since.items()}

    # -- load ------------------------------------------------------------------------

    def call_started(self, pid: Pid) -> None:
        """A group call to ``pid`` went out."""
        inflight = self._inflight
        inflight[pid] = inflight.get(pid, 0) + 1

    def call_ended(self, pid: Pid) -> None:
        """A group call to ``pid`` was answered, failed or gave up."""
        inflight = self._inflight
        left = inflight.get(pid, 1) - 1
        if left > 0:
            inflight[pid] = left
        else:
            inflight.pop(pid, None)

    def load(self, pid: Pid, queued: int | None) -> int:
        """Calls this node has out to ``pid`` plus its queue: ``queued`` for
        a local process, else the length it last reported."""
        if queued is None:
            queued = self._queue_lengths.get(pid, 0)
        return self._inflight.get(pid, 0) + queued

    def reported_queue_lengths(self) -> dict[Pid, int]:
        """A copy of the queue lengths remote members last reported."""
        return dict(self._queue_lengths)

    def calls_in_flight(self) -> int:
        """Group calls this node has out now, over every callee."""
        return sum(self._inflight.values())

    def process_dead(self, pid: Pid) -> None:
        """A local process died: no load figure about it is kept."""
        self._inflight.pop(pid, None)

    def note_queue_length(self, pid: Pid, queue_len: int) -> None:
        """Remember what a remote callee reported, if it is a member (only
        members are selected by ``least_loaded``; others would pile up)."""
        lengths = self._queue_lengths
        if pid in lengths:
            lengths[pid] = queue_len
        elif pid not in self._not_members:
            if self._table.is_member(pid):  # pruned when it leaves
                lengths[pid] = queue_len
            else:
                if len(self._not_members) >= NOT_MEMBERS_KEPT:
                    self._not_members.clear()
                self._not_members.add(pid)

    def members_changed(self, events: list[MembershipEvent]) -> None:
        """Forget the queue length of remote pids no longer in any group."""
        if self._not_members and any(event.kind == "join" for event in events):
            self._not_members.clear()  # its invariant: any of them may be a member now
        lengths = self._queue_lengths
        if not lengths:
            return
        is_member = self._table.is_member
        for event in events:
            if event.kind == "leave":
                for pid in event.pids:
                    if pid in lengths and not is_member(pid):
                        del lengths[pid]

    def node_lost(self, name: str) -> None:
        """The connection to ``name`` broke: its reported figures go."""
        lengths = self._queue_lengths
        for pid in [p for p in lengths if p.node == name]:
            del lengths[pid]
