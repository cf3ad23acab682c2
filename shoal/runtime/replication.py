"""Replicating group membership through the store.

Each node is authoritative for its own processes (as in Erlang's ``pg``):
it writes its processes' memberships under its own store session, and it
never takes its own entries from the store. Every other node's entries come
from the store's watch into the local table, so reads and selection stay
local. This module owns the session and our own writes; following the
others (one watch per prefix: ``nodes/`` and each scope the node uses) is
``following.py``.

Key layout under the adapter's cluster prefix (``shoal.membership.keys``)::

    nodes/<node>                                       node info (msgpack map)
    scopes/<scope>/<node>/<creation>/<group>/<bucket>  member offsets (msgpack array)

One membership key holds the members of one group among 64 consecutive
serials of one incarnation, so a node starting many processes together
writes (and every peer applies) a few keys, not one per process. A node
reads only the scopes it follows: ``"default"`` and each one opened with
``node.scope(name)``; other scopes' groups are not in its table.

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
  incarnations are written only by ``following.py``).
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
  logged and that stream's view rebuilt from a fresh snapshot of its prefix
  (``following.py``): a watch never stops, since a node that stops
  following serves a frozen view.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from shoal.errors import NameInUse, SessionEnded, ShoalError, StoreError
from shoal.runtime.fencing import stop_serving
from shoal.runtime.following import NODEDOWN, Following
from shoal.runtime.node_info import open_first_session, parse_info
from shoal.runtime.outages import StoreOutages, store_backoff
from shoal.runtime.writer import Writer
from shoal.store.base import Entry, Event, Put, Session, Store

if TYPE_CHECKING:
    from shoal.membership.table import GroupTable
    from shoal.runtime.cluster import ClusterView
    from shoal.runtime.feed import MembershipFeed
    from shoal.runtime.processes import ProcessTable
    from shoal.runtime.remote import Remote

__all__ = ["NODEDOWN", "Replication"]

log = logging.getLogger("shoal")


class Replication:
    """Keeps the node's table in step with the store (see the module header)."""

    def __init__(self, store: Store, *, table: GroupTable, processes: ProcessTable,
                 remote: Remote, cluster: ClusterView, feed: MembershipFeed, ttl: float,
                 info: bytes, scopes: Iterable[str] = ("default",)) -> None:
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
        self.writer = Writer(self, table, self.name)
        # Everyone else's view: the nodes/ stream and one per followed scope.
        self.following = Following(self, store, name=self.name, creation=self.creation,
                                   table=table, cluster=cluster, remote=remote, feed=feed)
        for scope in scopes:
            self.following.follow(scope)
        self.outages = StoreOutages(self.name)  # one log line as the store goes, one as it is back
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self._reopening = asyncio.Lock()
        # Invariant: our session's record if the watched batch being applied
        # deleted it (then restored after it, Rule 2b).
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
        await self.following.start()
        loop = asyncio.get_running_loop()
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
        for task in [*self._tasks, *self.following.tasks(), *self.writer.cancel()]:
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
        tasks = [*self._tasks, *self.following.tasks()]
        for task in tasks:
            task.cancel()
        tasks += self.writer.cancel()
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

    # -- following everyone else (following.py) -----------------------------------------

    def follow(self, scope: str) -> None:
        """Follow ``scope`` from now on (``following.py``; idempotent)."""
        self.following.follow(scope)

    async def loaded(self, scope: str) -> None:
        """Wait until ``scope`` is followed and its membership loaded."""
        await self.following.loaded(scope)

    def own_record(self, event: Event) -> None:
        """A watched change of our own registration: ``_guard_session`` watches
        our session; another incarnation writing it means we lost the name
        (Rule 5), and our live session's record deleted is restored (Rule 2b)."""
        session, holder = self.session, self._record_holder
        self._record_holder = event.session
        if event.kind == "put":
            self._check_holder(event.value)
        elif session is not None and holder == session.id:
            self._record_deleted = (session, event.revision)

    def own_record_loaded(self, entry: Entry | None) -> bool:
        """Our registration as a snapshot shows it; True if that fenced us."""
        self._record_holder = entry.session if entry is not None else None
        return entry is not None and self._check_holder(entry.value)

    def batch_done(self, revision: int, foreign: list[str]) -> None:
        """After a watched batch: restore our deleted record, or write back
        our keys someone else changed (Rule 2b)."""
        deleted, self._record_deleted = self._record_deleted, None
        if deleted is not None:  # the restore tells what happened
            self._tasks = [t for t in self._tasks if not t.done()]
            self._tasks.append(asyncio.get_running_loop().create_task(
                self._restore_record(*deleted)))
        elif foreign:
            self._tasks = [t for t in self._tasks if not t.done()]
            self._tasks.append(asyncio.get_running_loop().create_task(
                self._judge_foreign(foreign, revision)))

    async def _judge_foreign(self, keys: list[str], revision: int) -> None:
        """Log our ``keys`` changed at ``revision`` (already being written
        again) as someone else's doing, unless our session ended then: a
        session's end deletes its record with its keys at one revision, but
        the ``nodes/`` stream may show that after the scope's stream did, so
        the store is asked whether our record outlived that revision."""
        name = f"nodes/{self.name}"
        try:
            entry = (await self.store.snapshot(name)).entries.get(name)
        except StoreError:
            entry = None
        else:
            if entry is None or entry.revision > revision:
                return  # our session ended there (its own log line says so)
        if entry is None or (self.session is not None and entry.session == self.session.id):
            self.reasserting(keys, revision)

    def snapshot_loaded(self, own: dict[str, tuple[bytes, int]], revision: int,
                        prefix: str) -> None:
        """A scope's snapshot showed our keys ``own``: write back what differs."""
        if self.session is not None:  # not at start: nothing written yet
            changed = self.writer.check_snapshot(own, revision, prefix)
            if changed:
                self.reasserting(changed, revision)

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
