"""Closing idle peer connections, and telling such a close from a lost peer.

A node that once called every node of a large cluster would otherwise keep
a connection to each, and heartbeat on each, for ever. Owns: which
connections are idle, closing them, and whether a connection's end was an
idle close (``closed_quietly``, asked by ``Remote.on_peer_down``).

Rules:

1. Idle means: for ``idle_timeout`` seconds no message but heartbeats went
   either way on the connection (the transport's statistics count
   heartbeats apart), no call sent on it is unanswered (``Remote.pending``),
   no CALL read on it is being served (``serving``: until its answer, or
   the latest caller's deadline, ``calls_until``), and no monitor or link
   spans it in either direction (this node's monitors on the peer's pids
   and its processes' links to them; the peer's monitors and links on
   ours, ``holds.py``). One timer per node checks every ``idle_timeout / 4``:
   a connection closes between 1 and 1.25 ``idle_timeout`` after its last
   message. A silent peer's connection is left to the heartbeat's rules
   (it is suspected, not idle). ``None`` turns it off (connections stay).
2. An idle connection is closed in order with BYE ``"idle"`` (docs/protocol.md
   3.2), forgotten by the transport at once and lingering until the peer
   closes (:data:`LINGER`): like ``"shutdown"`` it promises that every CALL the sender read on
   it was answered (or its caller's deadline passed); it also promises that
   the sender holds no monitor or link across it. Heartbeats end with the
   connection.
3. An idle close, by either side, is no loss: members stay routable, no
   ``Down`` or exit signal fires, the store is not asked to probe, nothing
   is redialled. The next call, cast, send, monitor or link dials again.
4. A message that crossed the peer's BYE was never read there. If this node
   holds anything towards the peer when the close is reported (a call whose
   CALL crossed the BYE, a monitor or link just made), the close is handled
   as a loss (``remote.py`` Rule 3): monitors and links fire
   ``"noconnection"``, as on any loss, and those calls fail with
   ``NodeDown(not_started=True)`` (provably not started), which
   ``Messaging.call`` answers by sending the call once more, on a new
   connection, within its deadline (``crossed_idle_close``). A cast or send
   that crossed the BYE is lost, as on any connection that drops.
5. Bounded: one entry per open connection, rebuilt at every check.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

from shoal.errors import NodeDown

if TYPE_CHECKING:
    from shoal.pid import Pid
    from shoal.runtime.holds import Holds
    from shoal.runtime.notices import Ref
    from shoal.runtime.processes import ProcessTable
    from shoal.transport import ConnectionManager, PeerConnection

__all__ = ["DEFAULT_IDLE_TIMEOUT", "IDLE", "PEER_IDLE", "IdleConnections", "crossed_idle_close"]

log = logging.getLogger("shoal")

IDLE = "idle"
"""The BYE reason of an idle close, and the closing side's close reason."""
PEER_IDLE = f"peer closed: {IDLE}"
"""The close reason on the side that received BYE ``"idle"``."""
DEFAULT_IDLE_TIMEOUT = 300.0
LINGER = 5.0
"""Seconds a closed idle connection waits for the peer to close its side
(it does on reading the BYE): a frame that crossed the BYE is read and
dropped, instead of meeting a TCP reset that could hide the BYE."""


def crossed_idle_close(error: NodeDown) -> bool:
    """Whether a call failed only because its CALL crossed the callee node's
    BYE "idle" (Rule 4): never read, so it may be sent again."""
    return error.not_started and error.detail == f"connection lost: {PEER_IDLE}"


class RemoteTables(Protocol):
    """What this part reads of ``Remote``: its tables and its manager."""

    pending: dict[int, tuple[asyncio.Future[Any], Pid, PeerConnection]]
    monitors: dict[int, tuple[Ref, Pid, Pid]]
    manager: ConnectionManager | None

    @property
    def holds(self) -> Holds: ...


class IdleConnections:
    """Closes this node's idle connections (see the module header)."""

    def __init__(self, remote: RemoteTables, processes: ProcessTable) -> None:
        self._remote = remote
        self._processes = processes
        self.timeout: float | None = None
        # Invariant: open connection -> (its count of non-heartbeat messages,
        # loop time since when that count is unchanged); rebuilt by _check.
        self._seen: dict[PeerConnection, tuple[int, float]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def start(self, timeout: float | None) -> None:
        """Close connections idle for ``timeout`` seconds from now on (None: never)."""
        self.timeout = timeout
        if timeout is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(timeout / 4, self._check)

    def close(self) -> None:
        """Stop checking (the node is stopping)."""
        self.timeout = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._seen.clear()

    def closed_quietly(self, node: str, reason: str) -> bool:
        """Whether a connection to ``node`` that ended with ``reason`` was an
        idle close with nothing across it (Rules 3 and 4)."""
        return (reason in (IDLE, PEER_IDLE) and node not in self._held()
                and self._remote.holds.count(node) == (0, 0))

    def _held(self) -> set[str]:
        """Nodes this node has calls in flight to, monitors on, or links with."""
        remote = self._remote
        nodes = {pid.node for _, pid, _ in remote.pending.values()}
        nodes.update(target.node for _, _, target in remote.monitors.values())
        for proc in self._processes.all():
            nodes.update(pid.node for pid in proc.links)
        return nodes

    def _check(self) -> None:
        self._timer = None
        timeout, manager = self.timeout, self._remote.manager
        if timeout is None or manager is None:
            return
        try:
            self._close_idle(timeout, manager)
        finally:
            if self.timeout is not None:
                self._timer = asyncio.get_running_loop().call_later(timeout / 4, self._check)

    def _close_idle(self, timeout: float, manager: ConnectionManager) -> None:
        now = asyncio.get_running_loop().time()
        seen: dict[PeerConnection, tuple[int, float]] = {}
        held: set[str] | None = None  # computed once, only if something looks idle
        for node, conn in manager.peers().items():
            stats = conn.statistics()
            count = stats.messages_sent + stats.messages_received - stats.heartbeats
            last = self._seen.get(conn)
            since = last[1] if last is not None and last[0] == count else now
            if now - since >= timeout and not stats.silent \
                    and (conn.serving <= 0 or now >= stats.calls_until):
                if held is None:
                    held = self._held()
                if node not in held and self._remote.holds.count(node) == (0, 0):
                    log.info("closing the idle connection to node %s (nothing for %.0fs)",
                             node, now - since)
                    manager.close_idle(conn, IDLE, linger=LINGER)
                    continue
            seen[conn] = (count, since)
        self._seen = seen
