"""Replicating group membership through the store.

Each node is authoritative for its own processes (as in Erlang's ``pg``):
it writes its processes' memberships under its own store session, and it
never takes its own entries from the store. Every other node's entries come
from the store's watch into the local table, so reads and selection stay
local.

Key layout under the adapter's cluster prefix (``shoal.membership.keys``)::

    nodes/<node>                                       node info (msgpack map)
    members/<node>/<creation>/<scope>/<group>/<bucket> member offsets (msgpack array)

One membership key holds the members of one group among 64 consecutive
serials of one incarnation, so a node starting many processes together
writes (and every peer applies) a few keys, not one per process.

Rules:

- Rule 1: a node's view is *replaced*, never merged: on a re-sync, or when
  a node shows up with a new creation, its members are recomputed from the
  store's entries of that incarnation alone (pg2 merged, and resurrected
  groups after net splits). A re-sync runs in slices that yield to the loop
  (``resync.py``): the snapshot is decoded aside, then nodes are replaced
  one at a time, each in one step; callers meet each node's old or new
  view, never half of one, and none of the old once it returns.
- Rule 2b: our own keys (this incarnation) come back from the watch too;
  one changed by someone else (an operator's ``etcdctl del``, a script) is
  written again at once, with a warning naming the keys and the revision
  (the writer's Rule 4). Our own table never takes them from the store.
- Rule 2: only positive evidence of death removes a member: the owner
  deleted the key (it left or exited), the owner's session ended (its
  ``nodes/`` key was deleted), or its node came back with a new creation.
  A broken connection only makes members unroutable (``cluster.py``, whose
  incarnations are written only here).
- Rule 3: writes are coalesced: joins and leaves mark buckets dirty; the
  :class:`~shoal.runtime.writer.Writer` writes them in batches, a few
  transactions in flight on disjoint keys. ``flush`` waits until everything
  marked before it was written. A store that cannot be reached is retried
  with backoff while the local table keeps serving; a session that ended is
  re-opened and every local membership rewritten (this node holds the truth).
- Rule 5 (fencing): a node whose session ended while a *newer incarnation*
  holds its name (the store shows ``nodes/<name>`` with another creation,
  or re-opening finds the name taken) no longer owns that name. It fences
  itself at once: it stops following and writing, stops serving
  (``fencing.py``) and never opens a session or writes a membership
  again. ``wait_fenced`` lets the host process exit (``shoal run`` exits 3).
- Rule 4: anything malformed read from the store is logged and skipped,
  never executed (G7). An exception while applying a change (a bug) is
  logged and the whole view rebuilt from a fresh snapshot: the watch never
  stops, since a node that stops following serves a frozen view.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shoal.errors import NameInUse, SessionEnded, ShoalError, StoreError
from shoal.membership.keys import MemberKey, decode_members, parse_member_key
from shoal.pid import Pid
from shoal.runtime.fencing import stop_serving
from shoal.runtime.node_info import open_first_session, parse_info
from shoal.runtime.outages import StoreOutages, store_backoff
from shoal.runtime.peers import PeerInfo, drop_stale
from shoal.runtime.resync import Slicer, read_snapshot
from shoal.runtime.writer import Writer
from shoal.store.base import Changes, Event, Put, Session, Snapshot, Store

if TYPE_CHECKING:
    from shoal.membership.table import GroupTable
    from shoal.runtime.cluster import ClusterView
    from shoal.runtime.feed import MembershipFeed
    from shoal.runtime.processes import ProcessTable
    from shoal.runtime.remote import Remote

__all__ = ["NODEDOWN", "Replication"]

log = logging.getLogger("shoal")

NODEDOWN = "nodedown"
class Replication:
    """Keeps the node's table in step with the store (see the module header)."""

    def __init__(self, store: Store, *, table: GroupTable, processes: ProcessTable,
                 remote: Remote, cluster: ClusterView, feed: MembershipFeed, ttl: float,
                 info: bytes) -> None:
        self.name, self.creation = processes.name, processes.creation
        self.table = table  # other nodes' memberships are applied to it
        self.processes = processes  # killed if the node fences itself
        self.remote = remote
        self.cluster = cluster  # incarnations and routability: written here only
        self.feed = feed  # other nodes' changes go out through it (local=False)
        self.store = store
        self.ttl = ttl
        self.info = info
        self.session: Session | None = None
        # Invariant: node -> {member key seen in the store -> (its parts, serial -> count)},
        # for every other node's non-empty buckets, whatever their incarnation.
        self.entries: dict[str, dict[str, tuple[MemberKey, Mapping[int, int]]]] = {}
        self.writer = Writer(self, table, self.name)
        self.outages = StoreOutages(self.name)  # one log line as the store goes, one as it is back
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self._reopening = asyncio.Lock()
        self.revision = 0
        # Invariant: own keys found changed by someone else in the watched
        # batch being applied (Rule 2b), logged and cleared after it; and our
        # session's record if that batch deleted it (then restored after it).
        self._foreign: list[str] = []
        self._record_deleted: tuple[Session, int] | None = None
        # Invariant: the session of the last put of our nodes/<name> the view
        # holds (a delete names no session: store Rule 3b, so this tells whose it was).
        self._record_holder: str | None = None
        # Invariant: None until fenced, then why (Rule 5); set once.
        self.fenced: str | None = None
        self._fenced_event = asyncio.Event()

    # -- life -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the session, load the snapshot and follow the watch.

        Raises:
            NameInUse: a live node holds this node's name.
            StoreUnavailable: the store cannot be reached.
        """
        self.session = await open_first_session(self.store, self.name, self.info,
                                                  self.ttl)
        snapshot = await self.store.snapshot("")
        await self._resync(snapshot)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._follow(), name=f"shoal watch {self.name}"))
        self._tasks.append(loop.create_task(self._guard_session(),
                                            name=f"shoal session {self.name}"))

    async def wait_fenced(self) -> str:
        """Wait until this node fences itself (Rule 5); return why."""
        await self._fenced_event.wait()
        assert self.fenced is not None
        return self.fenced

    def fence(self, why: str) -> None:
        """Stop serving at once and for good: this incarnation no longer owns
        its name (Rule 5). Idempotent."""
        if self.fenced is not None:
            return
        self.fenced = why
        self._stopping = True
        me = asyncio.current_task()
        for task in [*self._tasks, *self.writer.cancel()]:
            if task is not me:
                task.cancel()
        self.writer.release_waiters()
        closing = stop_serving(self.processes, self.remote, why)  # fencing.py
        if closing is not None:
            self._tasks.append(closing)
        self._fenced_event.set()

    def _check_holder(self, value: bytes | None) -> bool:
        """Fence if ``nodes/<our name>`` holds another incarnation; True if so."""
        info = parse_info(self.name, value)
        if info is None or info.creation == self.creation:
            return False
        self.fence(f"its store session ended and creation {info.creation} holds the name "
                   f"now (at {info.address[0]}:{info.address[1]})")
        return True

    async def _name_taken(self) -> bool:
        """Whether a newer incarnation holds our name (then fenced); False
        when the store cannot tell now."""
        name = f"nodes/{self.name}"
        try:
            entry = (await self.store.snapshot(name)).entries.get(name)
        except StoreError:
            return False
        return entry is not None and self._check_holder(entry.value)

    async def stop(self) -> None:
        """Stop following and end the session (its keys vanish at once)."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        tasks = [*self._tasks, *self.writer.cancel()]
        # Their own cancellation is expected; a cancel of stop() itself propagates.
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.session is not None:
            try:
                await self.session.close()
            except ShoalError as exc:
                log.warning("node %s: could not close its store session: %s",
                            self.name, exc)
        self.writer.release_waiters()

    # -- writing our own memberships ----------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True once the node stops or is fenced: nothing more is written."""
        return self._stopping

    async def reopen(self, ended: Session | None) -> None:
        """Our session ``ended`` under us: open a new one and rewrite everything."""
        async with self._reopening:
            # The writer (a write found the session gone) and _guard_session
            # (wait_ended returned) both notice the same end; whoever comes
            # second finds the session already replaced. Opening again would
            # meet our own new session holding the name (NameInUse) and
            # retry forever, with every write and flush waiting behind it.
            if self.session is not ended:
                return
            if self.fenced is None:
                await self._open_again()

    async def _open_again(self) -> None:
        delays = store_backoff()
        while not self._stopping:
            try:
                self.session = await self.store.open_session(self.name, self.info, self.ttl)
                break
            except StoreError as exc:
                # Our name is taken: by a newer incarnation (fence, Rule 5),
                # or by our own ended session not yet cleared (retry).
                if isinstance(exc, NameInUse) and await self._name_taken():
                    return
                delay = next(delays)
                self.outages.failed("store session re-open", exc, delay)
                await asyncio.sleep(delay)
        if self.fenced is not None:
            return
        self.outages.succeeded("store session re-open")
        # The old session's keys went with it; write back every bucket we hold.
        rewritten = self.writer.rewrite_all()
        log.warning("node %s: store session re-opened; %d memberships rewritten",
                    self.name, rewritten, extra={"shoal_event": {
                        "event": "store_session_reopened", "rewritten": rewritten,
                        "reason": "the previous session ended"}})

    async def _guard_session(self) -> None:
        while not self._stopping:
            session = self.session
            if session is None:
                return
            reason = await session.wait_ended()
            if self._stopping:
                return
            if session is self.session:
                log.warning("node %s: store session ended (%s)", self.name, reason,
                            extra={"shoal_event": {"event": "store_session_lost",
                                                   "reason": reason}})
                if await self._name_taken():
                    return
                await self.reopen(session)
                self.writer.kick()

    # -- following everyone else ------------------------------------------------------

    async def _follow(self) -> None:
        delays = store_backoff()
        while not self._stopping:
            try:
                async for item in self.store.watch("", self.revision):
                    if isinstance(item, Changes):
                        loop = asyncio.get_running_loop()
                        slicer = Slicer()
                        for event in item.events:
                            if self._stopping:
                                return  # fenced while applying (Rule 5)
                            self._apply(event)
                            # One batch can hold thousands of events: applied in
                            # one go on a busy host, it held the loop past the
                            # session TTL (our keepalive did not run). Others may
                            # see part of a revision applied; each event is valid.
                            await slicer.pause()
                        self.revision = item.revision
                        self.writer.watched_to(item.revision)
                        deleted, self._record_deleted = self._record_deleted, None
                        if deleted is not None:  # the restore tells what happened
                            self._tasks = [t for t in self._tasks if not t.done()]
                            self._tasks.append(loop.create_task(self._restore_record(*deleted)))
                        elif self._foreign:
                            self.reasserting(self._foreign, item.revision)
                        self._foreign = []
                    else:
                        await self._resync(item.snapshot)
                    delays = store_backoff()  # it works again: start over
                    self.outages.succeeded("store watch")
            except StoreError as exc:
                delay = next(delays)
                self.outages.failed("store watch", exc, delay)
                await asyncio.sleep(delay)
            except Exception:
                # A bug while applying changes must not end this task: a node
                # that stops following the store serves a frozen view. Log it
                # and rebuild the whole view from a fresh snapshot (Rule 1).
                delay = next(delays)
                log.exception("node %s: applying the store's changes failed; "
                              "re-reading the whole view in %.2fs", self.name, delay)
                await asyncio.sleep(delay)
                try:
                    await self._resync(await self.store.snapshot(""))
                except Exception:
                    log.exception("node %s: re-reading the store failed; retrying",
                                  self.name)

    def _apply(self, event: Event) -> None:
        key = event.key
        if key.startswith("members/"):
            self._apply_member(key, event.value if event.kind == "put" else None,
                               event.revision)
        elif key.startswith("nodes/"):
            name = key[len("nodes/"):]
            if name == self.name:
                # Our own registration: _guard_session watches our session;
                # another incarnation writing it means we lost the name, and
                # our live session's record deleted is restored (Rule 2b).
                session, holder = self.session, self._record_holder
                self._record_holder = event.session
                if event.kind == "put":
                    self._check_holder(event.value)
                elif session is not None and holder == session.id:
                    self._record_deleted = (session, event.revision)
                return
            if event.kind == "put":
                info = parse_info(name, event.value)
                if info is not None:
                    self._node_seen(info)
            else:
                self._node_gone(name)

    def reasserting(self, keys: list[str], revision: int) -> bool:
        """Log that our ``keys`` were changed by someone else at ``revision``
        and are written again (Rule 2b); False if we no longer write."""
        if self._stopping:
            return False
        shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
        log.warning("node %s: its membership keys were changed by someone else at revision "
                    "%d; writing them again: %s", self.name, revision, shown)
        return True

    async def _restore_record(self, session: Session, revision: int) -> None:
        """Our session's ``nodes/<name>`` was deleted: put it back, rewrite every
        membership (peers dropped them; Rule 2b). Where the record guards the
        session (etcd) the session ended with it: the re-open registers us again.
        A session that *expired* (we hung past the lease) is nobody else's doing."""
        try:
            await session.apply([Put(key=f"nodes/{self.name}", value=self.info)])
        except SessionEnded:
            if not session.ended or await session.wait_ended() != "expired":
                self._record_deleted_by_someone(revision)
            await self.reopen(session)
            return
        except StoreError as exc:
            log.warning("node %s: could not restore its registration (%s)", self.name, exc)
            return
        self._record_deleted_by_someone(revision)
        self.writer.rewrite_all()
        self.writer.kick()

    def _record_deleted_by_someone(self, revision: int) -> None:
        log.warning("node %s: its registration nodes/%s was deleted by someone else at "
                    "revision %d; writing it and its memberships again",
                    self.name, self.name, revision)

    def _apply_member(self, key: str, value: bytes | None, revision: int) -> None:
        parsed = parse_member_key(key)
        if parsed is None:
            log.warning("ignoring malformed membership key %r", key)
            return
        node = parsed.node
        if node == self.name:
            # We are authoritative for our own pids: the table never takes
            # them from the store, but the store must hold them (Rule 2b).
            if parsed.creation == self.creation and self.writer.foreign(
                    key, value, revision):
                self._foreign.append(key)
            return
        counts: Mapping[int, int] = {}
        if value is not None:
            decoded = decode_members(parsed.bucket, value)
            if decoded is None:
                log.warning("ignoring malformed membership value for %r", key)
                return
            counts = decoded
        held = self.entries.get(node)
        old = held.pop(key, None) if held is not None else None
        if counts:
            if held is None:
                held = self.entries[node] = {}
            held[key] = (parsed, counts)
        peer = self.cluster.peer(node)
        if peer is None or peer.creation != parsed.creation:
            return  # not the current incarnation: kept aside until it is
        before = old[1] if old is not None else {}
        creation = parsed.creation
        joined: list[Pid] = []
        left: list[Pid] = []
        for serial, count in counts.items():
            delta = count - before.get(serial, 0)
            if delta:
                (joined if delta > 0 else left).extend(
                    [Pid(node, creation, serial)] * abs(delta))
        for serial, count in before.items():
            if serial not in counts:
                left.extend([Pid(node, creation, serial)] * count)
        table = self.table
        if left:
            events, _ = table.leave(parsed.scope, parsed.group, left)
            self.feed.publish(events, local=False)
        if joined:
            self.feed.publish(table.join(parsed.scope, parsed.group, joined), local=False)

    def _node_seen(self, info: PeerInfo) -> None:
        old = self.cluster.peer(info.name)
        if old is not None and old.creation > info.creation:
            return  # an older incarnation's registration arriving late
        self.cluster.seen(info)
        # A connection to an older incarnation carries nothing for this one.
        drop_stale(self.remote.manager, info.name, info.creation)
        if old is None or old.creation != info.creation:
            if old is not None:
                self.remote.node_lost(info.name, "restarted with a new creation")
            self._replace(info.name)
            self.cluster.set_routable(info.name, True)

    def _node_gone(self, name: str) -> None:
        remote = self.remote
        if self.cluster.gone(name) is None:
            return
        conn = remote.connection(name)
        if conn is None or conn.silent:
            remote.node_lost(name, "its store session ended")
        # else: it still talks to us, so it is stopping in order (G4): its
        # answers to our calls and its Downs come on the connection, and the
        # connection's end fails what is left (on_peer_down). Failing calls
        # now would turn replies already on their way into NodeDown.
        self.entries.pop(name, None)
        self._replace(name)

    def _replace(self, name: str) -> None:
        peer = self.cluster.peer(name)
        creation = peer.creation if peer is not None else None
        wanted = [(parts.scope, parts.group, Pid(name, creation, serial), count)
                  for parts, counts in self.entries.get(name, {}).values()
                  if parts.creation == creation
                  for serial, count in counts.items()]
        self.feed.publish(self.table.replace_node(name, wanted, NODEDOWN), local=False)

    async def _resync(self, snapshot: Snapshot) -> None:
        """Replace the whole view of every other node (Rule 1), in slices
        that yield to the loop (``resync.py``: read aside, then replaced one
        node at a time, each node in one step)."""
        remote = self.remote
        slicer = Slicer()
        view = await read_snapshot(snapshot, self.name, self.creation, slicer)
        if self._stopping:
            return
        record = view.record
        self._record_holder = record.session if record is not None else None
        if record is not None and self._check_holder(record.value):
            return
        before = self.cluster.names()
        self.entries = view.entries
        seen = view.nodes
        for name in before - set(seen):
            self.cluster.gone(name)
            conn = remote.connection(name)
            if conn is None or conn.silent:  # as in _node_gone: it may still answer
                remote.node_lost(name, "gone from the store")
        for name, info in seen.items():
            old = self.cluster.peer(name)
            if old is not None and old.creation != info.creation:
                remote.node_lost(name, "restarted with a new creation")
            self.cluster.seen(info)
            drop_stale(remote.manager, name, info.creation)
        table_nodes = set(self.table.nodes()) - {self.name}
        for name in before | set(seen) | table_nodes:
            if self._stopping:
                return  # fenced meanwhile (Rule 5)
            self._replace(name)
            await slicer.pause()
        self.revision = snapshot.revision
        self.writer.watched_to(snapshot.revision)
        if self.session is not None:  # not at start: nothing written yet
            changed = self.writer.check_snapshot(view.own, snapshot.revision)
            if changed:
                self.reasserting(changed, snapshot.revision)
