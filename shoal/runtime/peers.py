"""Other nodes as this node knows them: their incarnations and the
connections that belong to them, and the redial of a broken connection.

Rules:

- Rule 1: a connection belongs to the incarnation (name, creation) it was
  handshaken with. Nothing for another creation travels on it
  (``connection_for``); once the store shows a newer creation for a name,
  the connection to the older one is aborted (``drop_stale``), and
  transport events about a replaced creation (``ClusterView.is_stale``) say nothing
  about the current one.
- Rule 2: ``Redials`` keeps one redial task per node whose connection broke
  while the store still lists it (pruned when the task ends, all cancelled
  by ``close``), so a connection that broke while the node lives (a network
  blip) comes back: nothing else would dial it, since selection skips its
  unroutable members.
- Rule 3: an on-demand dial (``Redials.connect``, for a call to a node not
  connected yet) waits at most the heartbeat timeout, not the call's whole
  deadline: a node that does not finish a handshake by then is treated as a
  silent one (``suspect``: unroutable, redialled in the background until a
  connection succeeds) and the call fails ``NodeDown`` not started, so a
  group call tries another member (G3) instead of spending its deadline on
  a node behind a partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from shoal._backoff import backoff_delays
from shoal.errors import NodeDown, NoSuchProcess, ShoalError
from shoal.pid import Pid
from shoal.transport import ConnectionManager, PeerConnection, Refused

__all__ = ["PeerInfo", "Redials", "connection_for", "drop_stale"]

log = logging.getLogger("shoal")

REDIAL_FIRST, REDIAL_MAX = 0.05, 1.0  # seconds between redials, before jitter


class PeerInfo:
    """What this node knows of another node from the store."""

    __slots__ = ("address", "creation", "info", "name")

    def __init__(self, name: str, creation: int, address: tuple[str, int],
                 info: dict[str, Any]) -> None:
        self.name = name
        self.creation = creation
        self.address = address
        self.info = info


def connection_for(manager: ConnectionManager | None, node: str,
                   creation: int) -> PeerConnection | None:
    """The open connection to incarnation ``creation`` of ``node``, if any
    (Rule 1). One to an older incarnation is aborted on the way."""
    conn = manager.get(node) if manager is not None else None
    if conn is None or conn.peer_creation == creation:
        return conn
    drop_stale(manager, node, creation)
    return None


def drop_stale(manager: ConnectionManager | None, node: str, creation: int) -> None:
    """Abort the connection to ``node`` if it belongs to an incarnation
    older than ``creation`` (the store shows the newer one)."""
    conn = manager.get(node) if manager is not None else None
    if conn is not None and conn.peer_creation is not None and conn.peer_creation < creation:
        log.info("closing the connection to node %s (creation %d): creation %d holds "
                 "the name now", node, conn.peer_creation, creation)
        conn.abort(f"replaced by creation {creation}")


class Redials:
    """Redial tasks of one node's ``Remote`` (Rule 2).

    Args:
        peer: the store's view of another node, by name (the cluster view's).
        manager: returns the connection manager (None while not distributed).
        probe: asks the store to check for dead owners (after a failed dial).
        suspect: told of a node whose on-demand dial took longer than
            ``dial_bound`` seconds, with why (Rule 3).
        dial_bound: the longest wait of an on-demand dial (the heartbeat timeout).
    """

    def __init__(self, peer: Callable[[str], PeerInfo | None],
                 manager: Callable[[], ConnectionManager | None],
                 probe: Callable[[], None], *, suspect: Callable[[str, str], None],
                 dial_bound: float) -> None:
        self._peer = peer
        self._manager = manager
        self._probe = probe
        self._suspect = suspect
        self._dial_bound = dial_bound
        # Invariant: one task per node name, removed when it ends.
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    def start(self, name: str) -> None:
        """Keep dialling ``name`` until connected or the store drops it."""
        if name in self._tasks or self._manager() is None or self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._redial(name),
                                                      name=f"shoal redial {name}")
        self._tasks[name] = task
        task.add_done_callback(lambda _: self._tasks.pop(name, None))

    def _wanted(self, name: str) -> PeerInfo | None:
        peer = self._peer(name)
        manager = self._manager()
        if peer is None or manager is None or self._closed \
                or connection_for(manager, name, peer.creation) is not None:
            return None  # its session ended (dead), or it is connected again
        return peer

    async def _redial(self, name: str) -> None:
        delays = backoff_delays(initial=REDIAL_FIRST, maximum=REDIAL_MAX)
        while self._wanted(name) is not None:
            await asyncio.sleep(next(delays))  # backoff between attempts
            peer = self._wanted(name)
            manager = self._manager()
            if peer is None or manager is None:
                return
            try:
                await manager.connect(name, peer.address, timeout=2.0, retry_refused=False)
            except ShoalError:
                self._probe()
                continue
            return

    async def connect(self, pid: Pid, timeout: float) -> PeerConnection:
        """The connection to ``pid``'s incarnation, dialled now if needed
        (Rule 3 bounds the wait).

        Raises:
            NodeDown: (not started) it is not known yet, refused us, could
                not be reached in time, or another incarnation answered.
            NoSuchProcess: ``pid`` belongs to an earlier incarnation.
        """
        peer = self._peer(pid.node)
        if peer is None or peer.creation < pid.creation:
            raise NodeDown(pid.node, "not known to this node (yet)", not_started=True)
        if peer.creation != pid.creation:
            raise NoSuchProcess(pid)  # an earlier incarnation: dead by definition
        manager = self._manager()
        conn = connection_for(manager, pid.node, pid.creation)
        if conn is not None:
            return conn
        if manager is None:
            raise NodeDown(pid.node, "this node is not distributed", not_started=True)
        bound = min(timeout, self._dial_bound)
        try:
            # A node listens before it registers in the store, so a refused
            # connect means this incarnation is gone: fail now (the request
            # provably did not start; a group call moves on, G3) instead of
            # redialling a dead address until the deadline.
            conn = await manager.connect(pid.node, peer.address, timeout=bound,
                                         retry_refused=False, incarnation=peer.creation)
        except Refused as exc:
            # It is up and refused our credentials: say so (nothing was sent),
            # and leave the store alone (nothing died).
            raise NodeDown(pid.node, str(exc), not_started=True, refused=True) from None
        except ShoalError as exc:
            # Could not reach it: ask the store whether its owner died (G2).
            self._probe()
            detail = exc.detail if isinstance(exc, NodeDown) else str(exc)
            if bound < timeout:
                self._suspect(pid.node, detail)
            raise NodeDown(pid.node, detail, not_started=True) from None
        if conn.peer_creation != pid.creation:  # another incarnation answered
            drop_stale(manager, pid.node, pid.creation)
            raise NodeDown(pid.node, f"creation {conn.peer_creation} answered, not "
                           f"{pid.creation}", not_started=True)
        return conn

    def close(self) -> None:
        """Stop redialling (the node is stopping)."""
        self._closed = True
        for task in list(self._tasks.values()):
            task.cancel()
