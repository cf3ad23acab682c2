"""Messages to a node that wait for a dial to it, in order.

Owns: ``waiting``, the casts, sends, monitors, links and exit signals made
to a node while a dial to it is in progress, and the one task per node that
dials and then sends them. ``Remote`` (``remote.py``) sends through
:meth:`Backlog.send` and bounds what waits (its Rule 5: past
``MAX_BACKLOG`` messages for one node, casts and sends raise
``Overloaded``).

Rules:

1. Order: what waits for a node goes out before any later message to it,
   calls included (``Remote`` flushes it before a CALL): messages from one
   sender to one receiver arrive in the order sent, as in Erlang.
2. Bounds: ``waiting`` holds a list only while a dial is in progress: the
   sender task pops it when the dial ends either way, and :meth:`close`
   clears it; at most one sender task per node, pruned when it ends.
3. A message that cannot be delivered (the dial failed, or the connection
   broke under it) is handed to ``undeliverable``: a monitor or link to an
   unreachable node fires at once (Erlang's rule), anything else is dropped
   with a log line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from shoal.errors import BadArgument, NodeDown, ShoalError
from shoal.runtime.peers import PeerInfo, connection_for
from shoal.transport import ConnectionManager, PeerConnection
from shoal.wire import Message

if TYPE_CHECKING:
    from shoal.runtime.cluster import ClusterView

__all__ = ["Backlog"]

log = logging.getLogger("shoal")


class Backlog:
    """Messages waiting for a dial, per node (see the module header).

    Args:
        cluster: what this node knows of other nodes (their addresses).
        manager: the node's connection manager, once it has one.
        undeliverable: told of every message that cannot be delivered.
    """

    def __init__(self, cluster: ClusterView, manager: Callable[[], ConnectionManager | None],
                 undeliverable: Callable[[Message], None]) -> None:
        self._cluster = cluster
        self._manager = manager
        self._undeliverable = undeliverable
        # Invariant: node -> messages made while a dial to it is in progress,
        # in the order made (rule 1). Read by Remote; changed only here.
        self.waiting: dict[str, list[Message]] = {}
        # Invariant: the task that sends a node's messages once the dial is
        # done; at most one per node, cancelled by close() (rule 2).
        self._senders: dict[str, asyncio.Task[None]] = {}

    def send(self, node: str, msg: Message) -> bool:
        """Send ``msg`` to ``node`` now, or queue it behind a dial (started
        here if needed). Returns whether it went out now."""
        queued = self.waiting.get(node)
        if queued is not None:
            queued.append(msg)  # behind earlier messages still waiting for the dial
            return False
        peer = self._cluster.peer(node)
        manager = self._manager()
        # A node the store has not shown yet (it dialled us first) has one
        # incarnation we know of: its connection's.
        conn = connection_for(manager, node, peer.creation) if peer is not None \
            else manager.get(node) if manager is not None else None
        if conn is None:
            if peer is not None and manager is not None:
                self.waiting[node] = [msg]
                self._start_sender(manager, peer)
            return False
        try:
            conn.send(msg)
        except NodeDown as exc:
            # The transport just disconnected a peer that stopped reading
            # (Remote's Rule 5): this message goes with the connection, whose
            # loss is reported to everything waiting on that node.
            log.info("dropping %s to %s: %s", type(msg).__name__, node, exc)
            self._undeliverable(msg)
            return False
        return True

    def _start_sender(self, manager: ConnectionManager, peer: PeerInfo) -> None:
        sender = self._senders.get(peer.name)
        if sender is not None and not sender.done():
            return  # its dial is still under way: it sends the backlog too
        task = asyncio.get_running_loop().create_task(self._send_later(manager, peer),
                                                      name=f"shoal send to {peer.name}")
        self._senders[peer.name] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._senders.get(peer.name) is done:
                del self._senders[peer.name]

        task.add_done_callback(forget)

    async def _send_later(self, manager: ConnectionManager, peer: PeerInfo) -> None:
        try:
            conn = await manager.connect(peer.name, peer.address, retry_refused=False)
        except ShoalError as exc:
            for msg in self.waiting.pop(peer.name, ()):
                log.info("dropping %s to %s: %s", type(msg).__name__, peer.name, exc)
                self._undeliverable(msg)
            return
        self.flush(peer.name, conn)

    def flush(self, name: str, conn: PeerConnection) -> None:
        """Send what waited for the connection, in order, before anything newer."""
        queued = self.waiting.pop(name, ())
        for i, msg in enumerate(queued):
            try:
                conn.send(msg)
            except NodeDown as exc:  # it broke already: the rest cannot go either
                for lost in queued[i:]:
                    log.info("dropping %s to %s: %s", type(lost).__name__, name, exc)
                    self._undeliverable(lost)
                return
            except BadArgument as exc:  # its sender is long gone: log, keep going
                log.warning("dropping %s to %s: %s", type(msg).__name__, name, exc)

    def close(self) -> None:
        """Stop sending (the node is stopping): what still waits is dropped."""
        for task in self._senders.values():
            task.cancel()
        self.waiting.clear()
