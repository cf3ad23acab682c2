"""The membership feed: where every change to the node's group table goes.

Owns nothing but the wiring: each change the table reports (a list of
``MembershipEvent``) is handed, in one synchronous step, to

- the subscribers (``subscriptions.SubscriptionHub``: processes and iterators
  watching a group or a scope);
- the store writer (``writer.Writer``), for this node's own changes only
  (``local=True``: joins, leaves and exits of local processes), never for
  changes that came from the store's watch;
- the cluster view (``cluster.ClusterView``), which forgets the reported
  queue length of a remote pid that left its last group;
- the join times of local memberships (``join_times.JoinTimes``), for this
  node's own changes only (a re-sync of other nodes' members costs it nothing).

Rules:

- Rule 1: publishing never awaits, so a process's exit path (G1) and a
  join reach every reader before the next ``await`` on the node.
- Rule 2: before the node started (no writer yet) and after its
  replication is gone, local changes are in the table only; ``replicated``
  then answers True at once, as there is no store to wait for.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from shoal.membership.table import MembershipEvent

__all__ = ["MembershipFeed"]


class Subscribers(Protocol):
    def publish(self, events: list[MembershipEvent]) -> None: ...


class LoadFigures(Protocol):
    def members_changed(self, events: list[MembershipEvent]) -> None: ...


class StoreWriter(Protocol):
    def local_changes(self, events: Iterable[MembershipEvent]) -> None: ...

    async def flush(self, timeout: float | None = None) -> bool: ...


class MembershipFeed:
    """Hands the group table's changes to their readers (see the module header).

    Args:
        subscribers: the node's subscription hub.
        load: the cluster view (it prunes per-member figures).
        joined: the join times of local memberships.
    """

    def __init__(self, subscribers: Subscribers, load: LoadFigures,
                 joined: LoadFigures | None = None) -> None:
        self._subscribers = subscribers
        self._load = load
        self._joined = joined
        self._writer: StoreWriter | None = None

    def start(self, writer: StoreWriter) -> None:
        """The node opened its store session: its own changes go to ``writer``."""
        self._writer = writer

    def publish(self, events: list[MembershipEvent], *, local: bool = True) -> None:
        """Hand ``events`` on (Rule 1); ``local`` when this node made them."""
        if events:
            self._subscribers.publish(events)
            if local and self._writer is not None:
                self._writer.local_changes(events)
            self._load.members_changed(events)
            if local and self._joined is not None:  # only its own pids have join times
                self._joined.members_changed(events)

    async def replicated(self, timeout: float) -> bool:
        """Wait until this node's changes so far are in the store (Rule 2):
        False if ``timeout`` passed first."""
        if self._writer is None:
            return True
        return await self._writer.flush(timeout)
