"""Messages from peers: what this node takes from another node, and its answers.

Owns: the handling of every message an authenticated peer sends after the
handshake (the transport's ``on_message``, delegated here by ``Remote``):
deliveries to local processes, answers to this node's calls, monitors and
links set up from other nodes. ``Remote`` owns the tables (``pending``,
``monitors``); this part reads them and only removes what a message
legitimately completes.

Rules:

1. An authenticated peer speaks only for itself (STYLE.md rule 21; Erlang's
   runtime refuses a link or exit signal whose sender is not on the
   connection's node). A connection belongs to one incarnation, and
   "itself" is the processes of its node name with that creation or an
   earlier one (an incarnation may answer for its predecessors' pids, which
   are dead: a MONITOR or LINK naming one is answered ``noproc``), never a
   later one:

   - a REPLY or FAIL is taken only from the connection its CALL went out
     on (``pending`` records it), and a FAIL only when it names the callee;
     one for a ref this node is not waiting for on that connection is
     dropped (a late answer after a timeout looks the same, and is harmless);
   - a DOWN only from the monitored pid's node, for a monitor its watcher
     holds on that target;
   - CALL's sender, MONITOR's and DEMONITOR's watcher, LINK's and UNLINK's
     ``a`` and EXIT's sender must be pids of the sending node.

   A message that breaks the rule is dropped. The first on a connection is
   logged at WARNING with the peer's name, later ones at DEBUG: logs grow
   with connections, not with what a peer chooses to send. Casts and sends
   dropped at a full mailbox are logged as a count, once per
   ``DROP_LOG_INTERVAL``, for the same reason.
2. Answers (FAIL ``noproc``, DOWN ``noproc``, EXIT ``noproc``) go back on the
   connection the message came on, only while it is open: a BYE or a bad
   frame later in the same read closed it before the message was handled,
   and nobody would read the answer (rule 6 of the transport's ``_peer``).
3. Unknown message types raise (the codec yields only the types below).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from shoal import wire
from shoal.errors import BadArgument, NodeDown, Overloaded
from shoal.pid import NOPROC, Pid, Reason
from shoal.runtime.counters import Counters
from shoal.runtime.holds import SYSTEM_LIMIT, Holds
from shoal.runtime.notices import Ref
from shoal.runtime.process import CALL, CAST, INFO, RUNNING, Caller, Process
from shoal.runtime.replies import fail_error, reply_slot
from shoal.runtime.spin import BusyPoll
from shoal.transport import PeerConnection
from shoal.wire import (
    Bye,
    Call,
    Cast,
    Demonitor,
    Fail,
    Link,
    Message,
    Monitor,
    Reply,
    Send,
    Unlink,
)

if TYPE_CHECKING:
    from shoal.runtime.cluster import ClusterView

__all__ = ["AdminHandler", "Inbound", "LocalProcesses", "RemoteTables"]

log = logging.getLogger("shoal")

DROP_LOG_INTERVAL = 10.0  # seconds between log lines about casts dropped at full mailboxes

_new_caller = object.__new__  # builds a Caller without running its __init__ (_on_call)


def _speaks_for(peer: PeerConnection, pid: Pid) -> bool:
    """Whether ``pid`` is one the incarnation at the other end of ``peer`` may
    speak for: its own, or an earlier incarnation's of its name (rule 1)."""
    creation = peer.peer_creation
    return pid.node == peer.peer_node and creation is not None and pid.creation <= creation


class RemoteTables(Protocol):
    """What ``Remote`` shares with this part: its tables and one delivery."""

    pending: dict[int, tuple[asyncio.Future[Any], Pid, PeerConnection]]
    monitors: dict[int, tuple[Ref, Pid, Pid]]
    busy_poll: BusyPoll

    def deliver_down(self, ref: Ref, watcher: Pid, target: Pid, reason: Reason) -> None: ...

    @property
    def cluster(self) -> ClusterView: ...

    @property
    def holds(self) -> Holds: ...


class LocalProcesses(Protocol):
    """What this part needs of its node: its processes (``get`` finds one
    that is exiting too; ``live`` only one that runs)."""

    def get(self, pid: Pid, /) -> Process | None: ...

    def live(self, pid: Pid) -> Process | None: ...


class AdminHandler(Protocol):
    """Who serves admin requests (CALLs to serial 0, ``admin.py``), and the
    node's counters (remote calls served are counted there)."""

    counters: Counters

    def accepts(self, msg: Call) -> bool: ...

    def handle(self, peer: PeerConnection, msg: Call) -> None: ...


class Inbound:
    """Handles what authenticated peers send (see the module header).

    Args:
        remote: the tables of calls and monitors this node has out.
        processes: the node's processes, which receive.
    """

    def __init__(self, remote: RemoteTables, processes: LocalProcesses) -> None:
        self.remote = remote
        self._processes = processes
        # Invariant: connections that already had a refused message logged at
        # WARNING; weak, so a closed connection leaves the set with its object.
        self._warned: weakref.WeakSet[PeerConnection] = weakref.WeakSet()
        # Casts and sends dropped at full mailboxes since the last log line.
        self._dropped = 0
        self._drop_logged_at = -DROP_LOG_INTERVAL
        # Serves admin requests once the node set it (Remote.serve_admin).
        self.admin: AdminHandler | None = None
        # Where remote calls served are counted (the node's, from serve_admin).
        self.counters = Counters()
        # The process table's lookup and the loop's clock, bound once (hot path).
        self._get: Callable[[Pid], Process | None] = processes.get
        # Call traffic keeps the loop polling for a while (spin.py Rule 1).
        self._poke: Callable[[], None] = remote.busy_poll.poke
        self._time: Callable[[], float] = time.monotonic  # the loop's, from start()
        # The transport's message_handlers (MessageSink): each kind goes to
        # its handler as it is decoded, without on_message's dispatch frame.
        self.by_type: dict[type[Message], Callable[[PeerConnection, Any], None]] = {
            Call: self._on_call, Reply: self._on_answer, Fail: self._on_answer,
            Cast: self._on_cast, Send: self._on_cast, Monitor: self._on_monitor,
            Demonitor: self._on_demonitor, wire.Down: self._on_down, Link: self._on_link,
            Unlink: self._on_unlink, wire.Exit: self._on_exit}

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take deadlines of calls served from ``loop``'s clock (the node's)."""
        self._time = loop.time

    def on_message(self, peer: PeerConnection, msg: Message) -> None:
        handler = self.by_type.get(type(msg))
        if handler is not None:
            handler(peer, msg)
        elif type(msg) is not Bye:  # BYE: the transport reports the peer down right after
            raise BadArgument("msg", msg, "a known wire message")  # rule 3

    # -- rule 1 ---------------------------------------------------------------------

    def _refuse(self, peer: PeerConnection, msg: Message, why: str) -> None:
        level = logging.DEBUG if peer in self._warned else logging.WARNING
        self._warned.add(peer)
        log.log(level, "dropped %s from node %s (creation %s) at %s: %s",
                type(msg).__name__, peer.peer_node, peer.peer_creation, peer.peer_address, why)

    # -- rule 2 ---------------------------------------------------------------------

    @staticmethod
    def _answer(peer: PeerConnection, msg: Message) -> None:
        if peer.is_open:
            # NodeDown: the transport disconnected it just now, as a peer that
            # does not read (it owes the answer to nobody).
            with contextlib.suppress(NodeDown):
                peer.send(msg)

    # -- calls ----------------------------------------------------------------------

    def _on_call(self, peer: PeerConnection, msg: Call) -> None:
        # Callables held in attributes are called through locals on the hot
        # paths: 3.11 specializes that call, not a method call of one.
        poke, get = self._poke, self._get
        poke()
        sender = msg.sender
        if sender is not None and not _speaks_for(peer, sender):
            self._refuse(peer, msg, f"its sender {sender} is not a process of that node")
            return
        proc = get(msg.to)
        if proc is None or proc.state > RUNNING:  # not LocalProcesses.live (inlined)
            admin = self.admin
            if msg.to.serial == 0 and admin is not None and admin.accepts(msg):
                admin.handle(peer, msg)
                return
            self._answer(peer, Fail(ref=msg.ref, kind="noproc", pid=msg.to, detail=None,
                                    queue_len=0))
            return
        clock = self._time
        timeout_ms = msg.timeout_ms
        # The caller stops listening at its deadline: past it, the request is
        # dropped unrun (the process sees the slot as done). Until it is
        # answered or its deadline passes, the connection is not idle (idle.py).
        deadline = clock() + timeout_ms / 1000 if timeout_ms else 0.0
        if deadline > peer.calls_until or not deadline:
            peer.calls_until = deadline or math.inf
        # Process.deliver, inlined (the hot path; keep the copies in step): the
        # process runs (checked above), so only its bound can refuse.
        mailbox = proc.mailbox
        limit = proc.limit
        if limit is not None and len(mailbox) >= limit:
            self._answer(peer, Fail(ref=msg.ref, kind="overloaded", pid=msg.to,
                                    detail=limit, queue_len=proc.queue_len()))
            return
        peer.serving += 1  # until the slot is done (replies.py)
        # Caller(sender, slot, timeout) without its __init__ frame, as
        # Messaging.call builds a local one (every slot is set here).
        caller = _new_caller(Caller)
        caller.pid = sender
        caller.answer = reply_slot(peer, msg.ref, msg.to, proc, deadline, clock, self._poke)
        caller.timeout = timeout_ms / 1000
        mailbox.append((CALL, msg.request, caller))
        waiter = proc.waiter
        if waiter is not None:
            proc.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        self.counters.served += 1

    def _on_answer(self, peer: PeerConnection, msg: Reply | Fail) -> None:
        poke = self._poke  # a local: see _on_call
        poke()
        pending = self.remote.pending
        entry = pending.get(msg.ref)
        if entry is None:
            return  # the caller gave up (timed out): a late answer is dropped
        future, pid, conn = entry
        if conn is not peer:
            self._refuse(peer, msg, f"ref {msg.ref} is a call that went out on "
                                    "another connection")
            return
        if type(msg) is Fail and msg.pid != pid:
            # A FAIL names the callee: "no such process" about any other pid
            # would have this node forget a process the peer does not own.
            self._refuse(peer, msg, f"ref {msg.ref} went to {pid}, not {msg.pid}")
            return
        del pending[msg.ref]
        self.remote.cluster.note_queue_length(pid, msg.queue_len)  # cluster.py
        if not future.done():
            if isinstance(msg, Reply):
                future.set_result(msg.value)
            else:
                future.set_exception(fail_error(msg))

    def _on_cast(self, peer: PeerConnection, msg: Cast | Send) -> None:
        self._poke()
        proc = self._processes.live(msg.to)
        if proc is None:
            return  # casts and sends to dead pids are dropped, as in Erlang
        try:
            if isinstance(msg, Cast):
                proc.deliver(CAST, msg.request, None)
            else:
                proc.deliver(INFO, msg.message, None)
        except Overloaded as exc:
            # One line per DROP_LOG_INTERVAL, not one per cast: a flood of
            # casts to a full mailbox must not become a flood of log lines.
            self._dropped += 1
            now = time.monotonic()
            if now >= self._drop_logged_at + DROP_LOG_INTERVAL:
                log.warning("dropped %d cast(s)/send(s) from other nodes to full mailboxes "
                            "(latest to %s: %s)", self._dropped, msg.to, exc.detail)
                self._dropped, self._drop_logged_at = 0, now

    # -- monitors -------------------------------------------------------------------

    def _on_monitor(self, peer: PeerConnection, msg: Monitor) -> None:
        watcher = msg.watcher
        if not _speaks_for(peer, watcher):
            self._refuse(peer, msg, f"its watcher {watcher} is not a process of that node")
            return
        target = self._processes.live(msg.target)
        if target is None:
            self._answer(peer, wire.Down(ref=msg.ref, target=msg.target, watcher=watcher,
                                        reason=NOPROC))
            return
        ref = Ref(watcher.node, watcher.creation, msg.ref)
        if not self.remote.holds.add_monitor(target.pid, ref):  # holds.py rule 1
            self._answer(peer, wire.Down(ref=msg.ref, target=msg.target, watcher=watcher,
                                        reason=SYSTEM_LIMIT))
            return
        target.monitored_by[ref] = watcher

    def _on_demonitor(self, peer: PeerConnection, msg: Demonitor) -> None:
        watcher = msg.watcher
        if not _speaks_for(peer, watcher):
            self._refuse(peer, msg, f"its watcher {watcher} is not a process of that node")
            return
        target = self._processes.live(msg.target)
        if target is not None:
            ref = Ref(watcher.node, watcher.creation, msg.ref)
            target.monitored_by.pop(ref, None)
            self.remote.holds.drop_monitor(target.pid, ref)

    def _on_down(self, peer: PeerConnection, msg: wire.Down) -> None:
        monitors = self.remote.monitors
        entry = monitors.get(msg.ref)
        if entry is None:
            return  # demonitored, or already fired (its node was lost): dropped
        ref, watcher, target = entry
        if target != msg.target or watcher != msg.watcher or not _speaks_for(peer, target):
            self._refuse(peer, msg, f"monitor {msg.ref} is not one on a process of that node")
            return
        del monitors[msg.ref]
        self.remote.deliver_down(ref, watcher, target, msg.reason)

    # -- links ----------------------------------------------------------------------

    def _on_link(self, peer: PeerConnection, msg: Link) -> None:
        if not _speaks_for(peer, msg.a):
            self._refuse(peer, msg, f"{msg.a} is not a process of that node")
            return
        proc = self._processes.live(msg.b)
        if proc is None:
            self._answer(peer, wire.Exit(sender=msg.b, to=msg.a, reason=NOPROC))
            return
        if msg.a not in proc.links and not self.remote.holds.add_link(proc.pid, msg.a):
            self._answer(peer, wire.Exit(sender=msg.b, to=msg.a, reason=SYSTEM_LIMIT))
            return  # holds.py rule 1
        proc.links.add(msg.a)

    def _on_unlink(self, peer: PeerConnection, msg: Unlink) -> None:
        if not _speaks_for(peer, msg.a):
            self._refuse(peer, msg, f"{msg.a} is not a process of that node")
            return
        proc = self._processes.live(msg.b)
        if proc is not None:
            proc.links.discard(msg.a)
            self.remote.holds.drop_link(proc.pid, msg.a)

    def _on_exit(self, peer: PeerConnection, msg: wire.Exit) -> None:
        sender = msg.sender
        if not _speaks_for(peer, sender):
            self._refuse(peer, msg, f"its sender {sender} is not a process of that node")
            return
        proc = self._processes.live(msg.to)
        if proc is not None:
            proc.links.discard(sender)
            self.remote.holds.drop_link(proc.pid, sender)
            proc.exit_signal(sender, msg.reason)
