"""Messaging between nodes: remote calls, casts, sends, monitors, links.

``Remote`` is the runtime's side of the transport: it implements the
transport's ``PeerHandler`` callbacks and turns local operations on remote
pids into wire messages. What peers send is handled by its part
``inbound.Inbound``, which also enforces that a peer speaks only for itself.
It is built by the node with the process table, the cluster view
(``cluster.py``: which incarnation of each node is current, routability,
reported queue lengths), the node's deadlines and a way to ask the store
to probe: it never calls the node itself.

Owns: ``pending`` (calls out, bounded by the callers waiting), ``monitors``
(monitors local watchers hold on remote targets), the bound of the per-node
backlog (``MAX_BACKLOG``; ``backlog.py`` holds it and its sender tasks),
redials, and ``holds``
(what other nodes hold on ours, capped per node: ``holds.py``).

Rules:

- Rule 1 (incarnations): a pid whose creation differs from the creation this
  node knows for its node is dead by definition: calls to it fail at once
  with ``NoSuchProcess``, and messages about it are dropped. The transport
  already refuses connections from an older incarnation. A connection
  belongs to one incarnation (``peers.py``, Rule 1).
- Rule 2 (delivery): a call that could not be sent (no connection, refused)
  raises ``NodeDown(not_started=True)``; a call sent on a connection that
  then broke raises ``NodeDown(not_started=False)``: delivery unknown (G3).
- Rule 3 (node loss): when the connection to a node breaks, its members
  become unroutable at once (this part tells the cluster view), calls in
  flight to it fail, monitors on its pids fire ``Down`` with
  ``"noconnection"``, links to its pids deliver an exit signal
  ``"noconnection"``, and the store is asked to probe, so the node's
  session ends as soon as its death is provable (G2). An idle close (BYE
  "idle", ``idle.py``) is not a loss when nothing spans the connection.
- Rule 4 (silence): a node silent for the heartbeat timeout is unroutable
  until bytes arrive again; silence is suspicion, not death: its members
  stay members and calls in flight wait for their deadline, but one made with
  ``fail_if_silent`` (idempotent group calls) fails ``NodeDown`` then, to move on.
- Rule 5 (bounds): a node that does not read what this node sends it
  (its connection is *congested*: ``max_unsent`` bytes wait, rule 5 of the
  transport's ``_peer.py``) gets no new calls, casts or sends: they raise
  ``Overloaded`` (not started; a group call moves on). Answers this node
  owes it (replies, failures, Down, exit signals) are still queued, and the
  transport disconnects the peer if it stays congested; an answer that
  cannot be queued any more is dropped with that disconnect, so the far
  side's call fails ``NodeDown``. Messages waiting for a dial (the backlog)
  are bounded too: past ``MAX_BACKLOG`` messages for one node, casts and
  sends to it raise ``Overloaded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal import wire
from shoal.errors import (
    BadArgument,
    CallTimeout,
    NodeDown,
    NoSuchProcess,
    Overloaded,
)
from shoal.pid import NOCONNECTION, NOPROC, SHUTDOWN, Pid, Reason
from shoal.runtime.backlog import Backlog
from shoal.runtime.holds import Holds
from shoal.runtime.idle import PEER_IDLE, IdleConnections
from shoal.runtime.inbound import AdminHandler, Inbound
from shoal.runtime.notices import Down, Ref
from shoal.runtime.peers import PeerInfo, Redials
from shoal.runtime.process import current_process
from shoal.runtime.replies import stand_in_reason, wire_reason
from shoal.runtime.spin import BusyPoll
from shoal.transport import ConnectionManager, PeerConnection
from shoal.wire import (
    Cast,
    Demonitor,
    Link,
    Message,
    Monitor,
    Send,
    Unlink,
)

if TYPE_CHECKING:
    from shoal.runtime.cluster import ClusterView
    from shoal.runtime.deadlines import Deadlines
    from shoal.runtime.processes import ProcessTable

__all__ = ["PeerInfo", "Remote"]

log = logging.getLogger("shoal")

MAX_BACKLOG = 10_000  # messages waiting for the dial to one node (Rule 5)
_current_process = current_process.get  # bound once (the hot path)


class Remote:
    """Cross-node messaging for one node (see the module header).

    Args:
        processes: the node's process table (deliveries, links, refs).
        cluster: what the node knows of other nodes.
        deadlines: the node's call deadlines.
        probe_store: asks the store to check whether a node's owner died.
        heartbeat_timeout: the transport's, for the log.
        busy_poll: the node's busy poll, poked by call traffic (``spin.py``; default: off).
    """

    def __init__(self, processes: ProcessTable, cluster: ClusterView, deadlines: Deadlines,
                 *, probe_store: Callable[[], None], heartbeat_timeout: float,
                 busy_poll: BusyPoll | None = None) -> None:
        self._processes = processes
        self.busy_poll = BusyPoll(0) if busy_poll is None else busy_poll
        self.cluster = cluster
        self._deadlines = deadlines
        self._probe_store = probe_store
        self._heartbeat_timeout = heartbeat_timeout
        # Serial 0 names the node itself: no process gets a DOWN for it.
        self.self_pid = Pid(processes.name, processes.creation, 0)
        self.manager: ConnectionManager | None = None
        # Invariant: calls sent and not yet answered: ref -> (future, callee,
        # the connection the CALL went out on; only it may answer).
        self.pending: dict[int, tuple[asyncio.Future[Any], Pid, PeerConnection]] = {}
        self._fail_if_silent: set[int] = set()  # refs of pending (Rule 4), pruned with it
        self.redials = Redials(cluster.peer, lambda: self.manager, probe_store,
                               suspect=self._suspect, dial_bound=heartbeat_timeout)
        self._next_ref = 1
        self._loop: asyncio.AbstractEventLoop  # set by start()
        # Monitors held by local watchers on remote targets: wire ref -> (ref, watcher, target).
        self.monitors: dict[int, tuple[Ref, Pid, Pid]] = {}
        # Messages to nodes a dial is in progress for (backlog.py).
        self._backlog = Backlog(cluster, lambda: self.manager, self._undeliverable)
        # Monitors and links other nodes hold on our processes: bounded, pruned.
        self.holds = Holds()
        self.idle = IdleConnections(self, processes)  # closes idle connections (idle.py)
        self._inbound = Inbound(self, processes)
        # The transport's on_message, bound to its handler (inbound.py): no
        # frame of this object's on the hot path.
        self.on_message: Callable[[PeerConnection, Message], None] = self._inbound.on_message
        self.message_handlers = self._inbound.by_type  # each kind, without on_message

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """The node's loop (its futures and clock), kept once: asking for
        the running loop costs a ``getpid`` system call each time."""
        self._loop = loop
        self._inbound.start(loop)
        self.busy_poll.start(loop)

    def serve_admin(self, admin: AdminHandler) -> None:
        """Answer admin requests (CALLs to serial 0) with ``admin``; count into its counters."""
        self._inbound.admin, self._inbound.counters = admin, admin.counters

    # -- sending ------------------------------------------------------------------

    def connection(self, node: str) -> PeerConnection | None:
        """The open connection to ``node``, if any (whatever its incarnation)."""
        manager = self.manager
        return manager.get(node) if manager is not None else None

    async def call(self, pid: Pid, request: Any, timeout: float, *,
                   fail_if_silent: bool = False) -> Any:
        """A call to a pid of another node (``Node.call``; Rule 4: ``fail_if_silent``).

        ``Messaging.call`` sends through :meth:`start_call` and awaits the
        future itself (one coroutine frame less on the hot path); this is
        the whole call, dial included, for everything else."""
        sent = self.start_call(pid, request, timeout, fail_if_silent)
        if sent is None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            conn = await self.redials.connect(pid, timeout)
            timeout = deadline - loop.time()
            if timeout <= 0:
                raise CallTimeout(pid, timeout)
            sent = self.start_call(pid, request, timeout, fail_if_silent, conn)
            assert sent is not None  # given its connection, start_call sends or raises
        ref, future, calls = sent
        try:
            return await future
        finally:
            self.forget(ref)
            calls.pop(future, None)  # its deadline entry (deadlines.py Rule 5)

    def start_call(self, pid: Pid, request: Any, timeout: float, fail_if_silent: bool,
                   conn: PeerConnection | None = None,
                   ) -> tuple[int, asyncio.Future[Any], dict[asyncio.Future[Any], Any]] | None:
        """Send a CALL on the open connection to ``pid``'s incarnation (or on
        ``conn``, the one :meth:`call` dialled) and return its ref, the future
        its answer (or its deadline) settles and the deadline generation it
        joined; None when there is no such connection yet (:meth:`call`
        dials). The caller awaits the future,
        calls :meth:`forget` with the ref unless an answer settled it (an
        answer removes it from ``pending``), and removes the future from the
        generation when it stops waiting (``deadlines.py`` Rule 5).

        Raises:
            Overloaded: the node does not read what this node sends it (Rule 5).
            BadArgument: the request cannot be encoded.
            NodeDown: the connection cannot take the CALL (not started).
        """
        if conn is None:
            node = pid.node
            manager = self.manager
            conn = manager.get(node) if manager is not None else None
            if conn is None or conn.peer_creation != pid.creation:
                return None
            peer = self.cluster.peer(node)
            if peer is None or peer.creation != pid.creation:
                return None
        if self._backlog.waiting and pid.node in self._backlog.waiting:
            self._backlog.flush(pid.node, conn)  # earlier casts/sends go first
        if conn.congested:
            raise self._overloaded(pid, conn)
        ref = self._next_ref
        self._next_ref = ref + 1
        me = _current_process()
        future: asyncio.Future[Any] = self._loop.create_future()
        conn.send_call(ref, me.pid if me is not None else None, pid, request,
                       int(timeout * 1000.0))  # float * float: specialized
        self.pending[ref] = (future, pid, conn)
        self.busy_poll.poke()  # its answer is read without a wake-up (spin.py)
        deadlines = self._deadlines
        bucket = deadlines.last_bucket if timeout is deadlines.last_timeout else None
        if bucket is not None and bucket.timer is not None:
            calls = bucket.current  # Deadlines.add, inlined (the hot path; keep in step)
            calls[future] = pid
        else:
            calls = deadlines.add(future, timeout, pid)
        if fail_if_silent:
            self._fail_if_silent.add(ref)
        return ref, future, calls

    def forget(self, ref: int) -> None:
        """Drop a call this node stopped waiting for (answered, timed out,
        cancelled): a late answer to it is dropped."""
        self.pending.pop(ref, None)
        self._fail_if_silent.discard(ref)

    async def alive(self, pid: Pid, timeout: float) -> bool:
        """Ask the owner of a remote pid whether it is alive (see
        ``Node.ask_alive``): MONITOR it, then CALL the owner's serial 0 (never
        a process) as a barrier. The owner handles both in order, so its DOWN
        for a dead target arrives before the barrier's FAIL noproc; no DOWN
        by then means the target was alive, and the monitor is removed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            conn = await self.redials.connect(pid, timeout)
        except NoSuchProcess:
            return False  # an earlier incarnation: dead by definition
        if self._backlog.waiting and pid.node in self._backlog.waiting:
            self._backlog.flush(pid.node, conn)
        ref = self._processes.new_ref()
        watcher = self.self_pid  # no process: a DOWN for it reaches nobody
        self.monitors[ref.serial] = (ref, watcher, pid)
        try:
            conn.send(Monitor(ref=ref.serial, watcher=watcher, target=pid))
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise CallTimeout(pid, timeout)
            try:
                await self.call(Pid(pid.node, pid.creation, 0), None, remaining)
            except NoSuchProcess:
                pass  # the barrier's expected answer
            except CallTimeout:
                raise CallTimeout(pid, timeout) from None
            return ref.serial in self.monitors  # a DOWN removed it: dead
        finally:
            if self.monitors.pop(ref.serial, None) is not None and conn.is_open:
                with contextlib.suppress(NodeDown, Overloaded):
                    conn.send(Demonitor(ref=ref.serial, watcher=watcher, target=pid))

    def _overloaded(self, pid: Pid, conn: PeerConnection) -> Overloaded:
        limit = self.manager.config.max_unsent if self.manager is not None else 0
        return Overloaded(pid, limit, f"node {pid.node} is not reading: {conn.unsent} bytes "
                                      f"wait to be sent to it (bound {limit})")

    def _send_request(self, pid: Pid, msg: Message) -> None:
        """A cast or send: refused, not queued, when the node does not read
        or too much already waits for its dial (Rule 5)."""
        backlog = self._backlog.waiting.get(pid.node)
        if backlog is not None and len(backlog) >= MAX_BACKLOG:
            raise Overloaded(pid, MAX_BACKLOG, f"{len(backlog)} messages wait for the "
                                               f"connection to node {pid.node}")
        conn = self.connection(pid.node)
        if conn is not None and conn.congested:
            raise self._overloaded(pid, conn)
        self._send(pid.node, msg)

    def _send(self, node: str, msg: Message) -> bool:
        return self._backlog.send(node, msg)  # now, or behind a dial (backlog.py)

    def _undeliverable(self, msg: Message) -> None:
        # Erlang's rule: a monitor or link to an unreachable node fires at once.
        if isinstance(msg, Monitor):
            self._remote_down(msg.ref, msg.target, NOCONNECTION)
        elif isinstance(msg, Link):
            proc = self._processes.live(msg.a)
            if proc is not None:
                proc.links.discard(msg.b)
                proc.exit_signal(msg.b, NOCONNECTION)

    def cast(self, pid: Pid, request: Any) -> None:
        if self._known(pid):
            self._send_request(pid, Cast(to=pid, request=request))

    def send(self, pid: Pid, message: Any) -> None:
        if self._known(pid):
            self._send_request(pid, Send(to=pid, message=message))

    def _known(self, pid: Pid) -> bool:
        peer = self.cluster.peer(pid.node)
        return peer is not None and peer.creation == pid.creation

    def monitor(self, ref: Ref, watcher: Pid, target: Pid) -> None:
        if not self._known(target):
            self.deliver_down(ref, watcher, target, NOPROC if self._stale(target)
                              else NOCONNECTION)
            return
        self.monitors[ref.serial] = (ref, watcher, target)
        self._send(target.node, Monitor(ref=ref.serial, watcher=watcher, target=target))

    def demonitor(self, ref: Ref) -> None:
        entry = self.monitors.pop(ref.serial, None)
        if entry is not None:
            _, watcher, target = entry
            self._send(target.node, Demonitor(ref=ref.serial, watcher=watcher, target=target))

    def link(self, local: Pid, remote: Pid) -> None:
        proc = self._processes.live(local)
        if proc is None:
            return
        if not self._known(remote):
            proc.exit_signal(remote, NOPROC if self._stale(remote) else NOCONNECTION)
            return
        proc.links.add(remote)
        self._send(remote.node, Link(a=local, b=remote))

    def unlink(self, local: Pid, remote: Pid) -> None:
        if self._known(remote):
            self._send(remote.node, Unlink(a=local, b=remote))

    def exit(self, sender: Pid, target: Pid, reason: Reason) -> None:
        if self._known(target):
            self._send(target.node, wire.Exit(sender=sender, to=target, reason=reason))

    def _stale(self, pid: Pid) -> bool:
        return self.cluster.is_stale(pid.node, pid.creation)

    # -- notifications from the local exit path -----------------------------------

    def process_dead(self, pid: Pid, reason: Reason, watchers: list[tuple[Ref, Pid]],
                     links: list[Pid]) -> None:
        """Tell remote watchers and linked processes that ``pid`` exited.

        Part of the exit path, so it never raises: a reason that cannot
        travel is replaced by a stated stand-in (``wire_reason``).
        """
        sent = wire_reason(reason)
        for ref, watcher in watchers:
            self._send_signal(watcher.node, wire.Down,
                              {"ref": ref.serial, "target": pid, "watcher": watcher}, sent)
        for other in links:
            self._send_signal(other.node, wire.Exit, {"sender": pid, "to": other}, sent)

    def _send_signal(self, node: str, kind: type[wire.Down] | type[wire.Exit],
                     fields: dict[str, Any], reason: Reason) -> None:
        """Send a DOWN or EXIT from the exit path; if this connection cannot
        carry the reason (its frame limit is below the reason's size), send
        the stand-in instead."""
        try:
            self._send(node, kind(**fields, reason=reason))
        except BadArgument as bad:
            log.warning("exit reason for %s replaced by a stand-in: %s", node, bad)
            self._send(node, kind(**fields, reason=stand_in_reason(str(bad))))

    # -- PeerHandler ----------------------------------------------------------------

    def on_peer_up(self, peer_name: str, creation: int, connection: PeerConnection) -> None:
        peer = self.cluster.peer(peer_name)
        if peer is not None and peer.creation > creation:
            # An incarnation the store says was replaced (Rule 1).
            connection.abort(f"creation {peer.creation} holds the name")
            return
        log.info("connected to node %s (creation %d): its members are routable",
                 peer_name, creation, extra=_event("peer_connected", peer_name, creation,
                                                   "connection authenticated"))
        self.cluster.set_routable(peer_name, True)

    def on_peer_silent(self, peer_name: str, creation: int) -> None:
        if self.cluster.is_stale(peer_name, creation):
            return
        log.info("node %s (creation %d) is silent for the heartbeat timeout (%gs): its "
                 "members are unroutable until it answers", peer_name, creation,
                 self._heartbeat_timeout, extra=_event(
                     "peer_suspect", peer_name, creation,
                     f"silent for the heartbeat timeout ({self._heartbeat_timeout:g}s)"))
        self.cluster.set_routable(peer_name, False)
        # An answered call leaves pending before its caller forgets the ref.
        entries = [self.pending.get(ref) for ref in self._fail_if_silent]
        for future, pid, _ in [entry for entry in entries if entry is not None]:
            if pid.node == peer_name and not future.done():
                future.set_exception(NodeDown(peer_name, "fell silent mid-call", not_started=False))

    def _suspect(self, peer_name: str, why: str) -> None:
        """A dial to it did not complete within the heartbeat timeout: treat
        it as silent (unroutable, redialled in the background) until a
        connection succeeds (peers.py Rule 3)."""
        if self.cluster.is_routable(peer_name):
            log.info("node %s did not answer a dial within the heartbeat timeout (%gs): its "
                     "members are unroutable until a dial succeeds (%s)", peer_name,
                     self._heartbeat_timeout, why,
                     extra=_event("peer_suspect", peer_name, None, f"dial failed: {why}"))
            self.cluster.set_routable(peer_name, False)
        self.redials.start(peer_name)

    def on_peer_alive(self, peer_name: str, creation: int) -> None:
        if self.cluster.is_stale(peer_name, creation):
            return
        log.info("node %s (creation %d) answers again: its members are routable",
                 peer_name, creation, extra=_event("peer_back", peer_name, creation,
                                                   "answers again"))
        self.cluster.set_routable(peer_name, True)

    def on_peer_down(self, peer_name: str, creation: int, reason: str) -> None:
        if self.cluster.is_stale(peer_name, creation):
            # Its calls in flight failed when the new creation showed up.
            log.info("connection to node %s (creation %d, replaced) closed: %s",
                     peer_name, creation, reason)
            return
        if self.idle.closed_quietly(peer_name, reason):
            return  # closed in order as idle, nothing across it: nothing is lost (idle.py)
        log.info("connection to node %s (creation %d) lost: %s", peer_name, creation, reason,
                 extra=_event("peer_down", peer_name, creation, reason))
        self.cluster.set_routable(peer_name, False)
        # BYE "shutdown" promises that the peer answered every call it read
        # on this connection (docs/protocol.md): calls still unanswered were
        # never read, so they provably did not start and may go elsewhere.
        clean = reason in (f"peer closed: {SHUTDOWN}", PEER_IDLE)  # idle.py Rule 4: likewise
        self.node_lost(peer_name, f"connection lost: {reason}", not_started=clean)
        self._probe_store()
        self.redials.start(peer_name)

    def close(self) -> None:
        """Stop redialling and sending (the node is stopping): what still
        waits for a dial is dropped."""
        self.redials.close()
        self.idle.close()
        self._backlog.close()

    def node_lost(self, name: str, detail: str, *, not_started: bool = False) -> None:
        """Fail everything in flight towards ``name`` (Rule 3)."""
        for future, pid, _ in list(self.pending.values()):
            if pid.node == name and not future.done():
                future.set_exception(NodeDown(name, detail, not_started=not_started))
        for serial, (mref, watcher, target) in list(self.monitors.items()):
            if target.node == name:
                del self.monitors[serial]
                self.deliver_down(mref, watcher, target, NOCONNECTION)
        self.cluster.node_lost(name)
        # Links to its pids break with "noconnection"; monitors its
        # processes held on ours are gone.
        self.holds.drop_node(name)
        for proc in self._processes.all():
            for mref in [r for r, w in proc.monitored_by.items() if w.node == name]:
                del proc.monitored_by[mref]
            for pid in [p for p in proc.links if p.node == name]:
                proc.links.discard(pid)
                proc.exit_signal(pid, NOCONNECTION)

    def deliver_down(self, ref: Ref, watcher: Pid, target: Pid, reason: Reason) -> None:
        """Give a local watcher the Down of its monitor on a remote target."""
        proc = self._processes.live(watcher)
        if proc is not None:
            proc.monitoring.pop(ref, None)
            proc.notify(Down(ref=ref, pid=target, reason=reason))

    def _remote_down(self, serial: int, target: Pid, reason: Reason) -> None:
        entry = self.monitors.pop(serial, None)
        if entry is not None:
            ref, watcher, _ = entry
            self.deliver_down(ref, watcher, target, reason)



def _event(event: str, peer: str, creation: int | None, reason: str) -> dict[str, Any]:
    """A peer event's fields for structured logs (``shoal/cli/logformat.py``)."""
    return {"shoal_event": {"event": event, "peer": peer, "peer_creation": creation,
                            "reason": reason}}
