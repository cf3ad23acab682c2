"""When each of this node's memberships began, for ``shoal members --live``.

Owns ``_since``: (scope, group, pid) → the monotonic time of the first join
of that pid to that group that it still holds, for this incarnation's own
pids only. The owner answers "joined N seconds ago" from it (admin op
``members``).

Rules:

- Rule 1: it follows the group table through the membership feed
  (``feed.py``), which hands it every change this node made to its own
  pids (joins, leaves, exits, evictions), after the table made it: a join
  adds the key if absent (a second join of the same pid keeps the first
  time); a leave, an exit or a replaced view drops the key once the table
  holds no join of that pid to that group any more.
- Rule 2: bounded by the memberships themselves: a key exists only while
  the table holds that local membership (Rule 1 removes it with the last
  join), so it never holds more entries than the node's own memberships.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from shoal.pid import Pid

if TYPE_CHECKING:
    from shoal.membership.table import GroupTable, MembershipEvent

__all__ = ["JoinTimes"]


class JoinTimes:
    """Join times of one node's own memberships (see the module header).

    Args:
        node, creation: whose pids are this node's own.
        table: the node's group table (read after each change).
        clock: monotonic seconds.
    """

    def __init__(self, node: str, creation: int, table: GroupTable,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._node, self._creation, self._table, self._clock = node, creation, table, clock
        # Invariant: keys are exactly the local memberships the table holds (Rule 2).
        self._since: dict[tuple[str, Hashable, Pid], float] = {}

    def __len__(self) -> int:
        return len(self._since)

    def members_changed(self, events: list[MembershipEvent]) -> None:
        """Follow the table's changes (Rule 1)."""
        now: float | None = None
        for event in events:
            for pid in set(event.pids):
                if pid.node != self._node or pid.creation != self._creation:
                    continue
                key = (event.scope, event.group, pid)
                if event.kind == "join":
                    if key not in self._since:
                        now = self._clock() if now is None else now
                        self._since[key] = now
                elif self._table.count(pid, event.scope, event.group) == 0:
                    self._since.pop(key, None)

    def seconds_since(self, scope: str, group: Hashable, pid: Pid) -> float | None:
        """Seconds since ``pid`` joined the group (its oldest join held), or
        None if it is not a local member."""
        since = self._since.get((scope, group, pid))
        return None if since is None else max(0.0, self._clock() - since)
