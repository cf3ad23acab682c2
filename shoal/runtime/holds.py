"""What other nodes hold on this node's processes: their monitors and links.

Owns: per remote node, the monitors its processes set up on ours (MONITOR)
and the links they made with ours (LINK), as ``(local pid, key)`` entries.
The processes' own tables (``monitored_by``, ``links``) stay the truth for
delivering ``Down`` and exit signals; this part only bounds and prunes what
peers can make this node hold (STYLE.md rule 20; pg.erl drops a scope's
entries with the node that owned them).

Rules:

1. Bounded: one node holds at most ``MAX_MONITORS_PER_NODE`` monitors and
   ``MAX_LINKS_PER_NODE`` links on this node's processes. Past it, a MONITOR
   is answered at once with ``Down`` reason ``"system_limit"`` and a LINK
   with an exit signal ``"system_limit"`` (as a monitor or link to a dead
   pid is answered with ``"noproc"``): the watcher learns that it watches
   nothing, rather than waiting for a ``Down`` that would never come. The
   first refusal per node is logged at WARNING.
2. Pruned: a node's entries go when its connection is lost or its
   incarnation ends (``drop_node``, from ``Remote.node_lost``),
   when the local process dies, and when the peer demonitors, unlinks or
   sends the exit signal that ends the link. Entries are sets, so a removal
   that finds nothing is harmless, and a node's whole share leaves at once.
3. Entries naming a node other than the sender's are refused before they
   get here (``inbound.py`` rule 1), so every entry is counted against the
   node that made it.
"""

from __future__ import annotations

import logging

from shoal.pid import Pid
from shoal.runtime.notices import Ref

__all__ = ["MAX_LINKS_PER_NODE", "MAX_MONITORS_PER_NODE", "SYSTEM_LIMIT", "Holds"]

log = logging.getLogger("shoal")

MAX_MONITORS_PER_NODE = 100_000
MAX_LINKS_PER_NODE = 100_000
SYSTEM_LIMIT = "system_limit"
"""The reason of the ``Down`` or exit signal that answers a refused monitor or link."""


class Holds:
    """Monitors and links other nodes hold on this node's processes (see the header)."""

    def __init__(self) -> None:
        # Invariant: node -> its monitors on our processes: (target, ref), ref.node == node.
        self._monitors: dict[str, set[tuple[Pid, Ref]]] = {}
        # Invariant: node -> its links with our processes: (local, remote), remote.node == node.
        self._links: dict[str, set[tuple[Pid, Pid]]] = {}
        # Invariant: nodes already warned about for a refusal, until dropped.
        self._warned: set[str] = set()

    def add_monitor(self, target: Pid, ref: Ref) -> bool:
        """Count a monitor a remote watcher sets up on a local ``target``.

        Returns:
            False when its node already holds the most it may (nothing counted).
        """
        held = self._monitors.setdefault(ref.node, set())
        if (target, ref) in held:
            return True
        if len(held) >= MAX_MONITORS_PER_NODE:
            self._refused(ref.node, "monitors", MAX_MONITORS_PER_NODE)
            return False
        held.add((target, ref))
        return True

    def drop_monitor(self, target: Pid, ref: Ref) -> None:
        """Forget a monitor (demonitored, fired, or its target died)."""
        held = self._monitors.get(ref.node)
        if held is not None:
            held.discard((target, ref))
            if not held:
                del self._monitors[ref.node]

    def add_link(self, local: Pid, remote: Pid) -> bool:
        """Count a link a remote process makes with a local one.

        Returns:
            False when its node already holds the most it may (nothing counted).
        """
        held = self._links.setdefault(remote.node, set())
        if (local, remote) in held:
            return True
        if len(held) >= MAX_LINKS_PER_NODE:
            self._refused(remote.node, "links", MAX_LINKS_PER_NODE)
            return False
        held.add((local, remote))
        return True

    def drop_link(self, local: Pid, remote: Pid) -> None:
        """Forget a link (unlinked, exit signal, or the local process died)."""
        held = self._links.get(remote.node)
        if held is not None:
            held.discard((local, remote))
            if not held:
                del self._links[remote.node]

    def drop_node(self, node: str) -> None:
        """Forget everything ``node`` held: its connection or incarnation ended."""
        self._monitors.pop(node, None)
        self._links.pop(node, None)
        self._warned.discard(node)

    def count(self, node: str) -> tuple[int, int]:
        """How many monitors and links ``node`` holds on this node's processes."""
        return len(self._monitors.get(node, ())), len(self._links.get(node, ()))

    def _refused(self, node: str, what: str, limit: int) -> None:
        if node not in self._warned:
            self._warned.add(node)
            log.warning("node %s holds %d %s on this node's processes, the most one node "
                        "may; refusing more with %r", node, limit, what, SYSTEM_LIMIT)
