"""Following the other nodes: the store's watch streams a node reads, and
what it applies from them to its table.

Split out of ``replication.py``, which owns the node's session and its own
writes; this module owns the view of *everyone else*. A node reads one
stream per prefix (``shoal.membership.keys``):

- ``nodes/``: every node's registration (incarnations, addresses);
- ``scopes/<scope>/``: one per scope the node *follows*: ``"default"`` and
  every scope opened with ``node.scope(name)`` (as Erlang's ``pg`` runs a
  scope only on the nodes that start it). Scopes the node never opened cost
  it nothing: the store never sends their keys, nothing is decoded or held.

Rules:

- Rule 1 (no gap): a stream loads a snapshot of its prefix, replaces its
  part of the view with it, then watches from the snapshot's revision (the
  store's Rule 3). A scope opened after start is loaded the same way, in its
  own task; :meth:`Following.loaded` waits for its first snapshot. A scope,
  once followed, is followed until the node stops (scopes are few; nothing
  keyed by peer input).
- Rule 2 (streams are not ordered with each other): a membership key may
  arrive before the ``nodes/`` record of its incarnation, or after that
  record is gone. ``entries`` keeps every bucket seen, whatever its
  incarnation; only the current incarnation's buckets reach the table, and
  a node's arrival, replacement or departure recomputes that node from
  ``entries`` (``_replace``). A departure drops the entries of the
  incarnations it ends, never a newer one's already seen.
- Rule 3 (re-syncs, replaced never merged): a ``nodes/`` re-sync replaces
  the set of nodes; a scope's re-sync replaces that scope's buckets of every
  node. Both read the snapshot aside and then replace one node at a time
  (``resync.py``), each node in one step.
- Rule 4: anything malformed is logged and skipped (G7); an exception while
  applying (a bug) is logged and that stream re-read from a fresh snapshot:
  a stream never stops, since a node that stops following serves a frozen
  view. Our own record and keys are the replication's (its Rules 2b, 5).

Bounds: ``entries`` holds the followed scopes' buckets the store holds (each
pruned by its delete, or with its incarnation); ``streams`` one per
followed scope, opened only by this node's own code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from shoal.errors import StoreError
from shoal.membership.keys import LAYOUT, decode_members, parse_member_key, scope_prefix
from shoal.pid import Pid
from shoal.runtime.node_info import parse_info
from shoal.runtime.outages import store_backoff
from shoal.runtime.peers import PeerInfo, drop_stale
from shoal.runtime.resync import NodeEntries, Slicer, bucket_counts, read_members, read_nodes
from shoal.store.base import Changes, Entry, Event, Snapshot, Store

if TYPE_CHECKING:
    from shoal.membership.table import GroupTable
    from shoal.runtime.cluster import ClusterView
    from shoal.runtime.feed import MembershipFeed
    from shoal.runtime.outages import StoreOutages
    from shoal.runtime.remote import Remote
    from shoal.runtime.writer import Writer

__all__ = ["NODEDOWN", "NODES", "Following", "Owner", "Stream"]

log = logging.getLogger("shoal")

NODEDOWN = "nodedown"
NODES = "nodes/"


class Owner(Protocol):
    """What following needs of the replication that owns the session."""

    @property
    def stopping(self) -> bool:
        """True once the node stops or is fenced: stop applying."""

    @property
    def outages(self) -> StoreOutages:
        """Where store failures are logged, once per outage."""

    @property
    def writer(self) -> Writer:
        """Our own writes: told what the watch passed and what it saw of our keys."""

    def own_record(self, event: Event) -> None:
        """A change of our own ``nodes/<name>`` (Rules 2b and 5 of the replication)."""

    def own_record_loaded(self, entry: Entry | None) -> bool:
        """Our record as a snapshot shows it; True if that fenced the node."""

    def batch_done(self, revision: int, foreign: list[str]) -> None:
        """A watched batch was applied; ``foreign`` are our keys someone else changed."""

    def snapshot_loaded(self, own: dict[str, tuple[bytes, int]], revision: int,
                        prefix: str) -> None:
        """A scope's snapshot showed our keys ``own`` (key -> (value, revision))."""


@dataclass(slots=True, eq=False)
class Stream:
    """One watched prefix: ``nodes/`` (``scope`` None) or one scope's.

    Attributes:
        revision: the store revision applied up to (the next watch starts after it).
        events: watched events applied, in all (what this node pays for it).
    """

    prefix: str
    scope: str | None
    revision: int = 0
    events: int = 0
    loaded: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Following:
    """The view of every other node, kept from the store (see the module header)."""

    def __init__(self, owner: Owner, store: Store, *, name: str, creation: int,
                 table: GroupTable, cluster: ClusterView, remote: Remote,
                 feed: MembershipFeed) -> None:
        self.owner = owner
        self.store = store
        self.name, self.creation = name, creation
        self.table = table  # other nodes' memberships are applied to it
        self.cluster = cluster  # incarnations and routability: written here only
        self.remote = remote
        self.feed = feed  # other nodes' changes go out through it (local=False)
        # Invariant: node -> {member key seen in the store -> its Bucket record},
        # for every other node's non-empty buckets of followed scopes, whatever their
        # incarnation (Rule 2).
        self.entries: NodeEntries = {}
        # Invariant: prefix -> its stream; NODES always, then one per followed scope.
        self.streams: dict[str, Stream] = {NODES: Stream(NODES, None)}
        self._started = False

    # -- which scopes ---------------------------------------------------------------

    def scopes(self) -> list[str]:
        """The scopes followed, sorted."""
        return sorted(s.scope for s in self.streams.values() if s.scope is not None)

    def stream(self, scope: str) -> Stream | None:
        """The stream of ``scope``, if followed."""
        return self.streams.get(scope_prefix(scope))

    def follow(self, scope: str) -> Stream:
        """Follow ``scope`` from now on (idempotent); once started, its
        snapshot is loaded in the background, then its watch (Rule 1)."""
        prefix = scope_prefix(scope)
        stream = self.streams.get(prefix)
        if stream is None:
            stream = self.streams[prefix] = Stream(prefix, scope)
            if self._started and not self.owner.stopping:
                self._run_task(stream)
        return stream

    def is_loaded(self, scope: str) -> bool:
        """Whether ``scope`` is followed and its first snapshot applied."""
        stream = self.streams.get(scope_prefix(scope))
        return stream is not None and stream.loaded.is_set()

    async def loaded(self, scope: str) -> None:
        """Wait until ``scope`` is followed and its first snapshot applied."""
        await self.follow(scope).loaded.wait()

    # -- life -----------------------------------------------------------------------

    async def start(self) -> None:
        """Load every stream (scopes first, so each node is replaced once,
        when ``nodes/`` shows it), then watch each one in its own task."""
        for stream in list(self.streams.values()):
            if stream.scope is not None:
                await self._load(stream)
        await self._load(self.streams[NODES])
        self._started = True
        if self.owner.stopping:
            return  # fenced while loading
        for stream in self.streams.values():
            if stream.task is None:
                self._run_task(stream)

    def tasks(self) -> list[asyncio.Task[None]]:
        """The streams' tasks (to cancel when the node stops or fences)."""
        return [s.task for s in self.streams.values() if s.task is not None]

    def _run_task(self, stream: Stream) -> None:
        stream.task = asyncio.get_running_loop().create_task(
            self._run(stream), name=f"shoal watch {self.name} {stream.prefix}")

    async def _load(self, stream: Stream) -> None:
        await self._resync(stream, await self.store.snapshot(stream.prefix))
        stream.loaded.set()

    async def _run(self, stream: Stream) -> None:
        owner = self.owner
        delays = store_backoff()
        while not owner.stopping:
            try:
                if not stream.loaded.is_set():
                    await self._load(stream)
                async for item in self.store.watch(stream.prefix, stream.revision):
                    if isinstance(item, Changes):
                        await self._apply_batch(stream, item)
                    else:
                        await self._resync(stream, item.snapshot)
                    delays = store_backoff()  # it works again: start over
                    owner.outages.succeeded("store watch")
            except StoreError as exc:
                delay = next(delays)
                owner.outages.failed("store watch", exc, delay)
                await asyncio.sleep(delay)
            except Exception:
                # A bug while applying must not end this task (Rule 4): log
                # it and rebuild this stream's view from a fresh snapshot.
                delay = next(delays)
                log.exception("node %s: applying the store's changes failed; re-reading "
                              "%s in %.2fs", self.name, stream.prefix, delay)
                await asyncio.sleep(delay)
                try:
                    await self._load(stream)
                except Exception:
                    log.exception("node %s: re-reading the store failed; retrying",
                                  self.name)

    async def _apply_batch(self, stream: Stream, item: Changes) -> None:
        slicer = Slicer()
        foreign: list[str] = []
        members = stream.scope is not None
        for event in item.events:
            if self.owner.stopping:
                return  # fenced while applying (Rule 5 of the replication)
            if members:
                self._apply_member(event.key, event.value if event.kind == "put" else None,
                                   event.revision, foreign)
            else:
                self._apply_node(event)
            stream.events += 1
            # One batch can hold thousands of events: applied in one go on a
            # busy host, it held the loop past the session TTL (our keepalive
            # did not run). Others may see part of a revision applied; each
            # event is valid.
            await slicer.pause()
        stream.revision = item.revision
        if members:
            self.owner.writer.watched_to(item.revision, stream.prefix)
        self.owner.batch_done(item.revision, foreign)

    # -- applying one change ------------------------------------------------------------

    def _apply_node(self, event: Event) -> None:
        name = event.key[len(NODES):]
        if name == self.name:
            self.owner.own_record(event)
        elif event.kind == "put":
            info = parse_info(name, event.value)
            if info is not None:
                self._node_seen(info)
        else:
            self._node_gone(name)

    def _apply_member(self, key: str, value: bytes | None, revision: int,
                      foreign: list[str]) -> None:
        parsed = parse_member_key(key)
        if parsed is None:
            log.warning("ignoring malformed membership key %r", key)
            return
        node = parsed.node
        if node == self.name:
            # We are authoritative for our own pids: the table never takes
            # them from the store, but the store must hold them (Rule 2b).
            if parsed.creation == self.creation and self.owner.writer.foreign(
                    key, value, revision):
                foreign.append(key)
            return
        decoded = decode_members(parsed.bucket, value) if value is not None else None
        if value is not None and decoded is None:
            log.warning("ignoring malformed membership value for %r", key)
            return
        counts: Mapping[int, int] = decoded or {}
        held = self.entries.get(node)
        old = held.pop(key, None) if held is not None else None
        if decoded:
            if held is None:
                held = self.entries[node] = {}
            held[key] = (parsed.creation, parsed.scope, parsed.group, *decoded.raw())
        elif held is not None and not held:
            del self.entries[node]
        peer = self.cluster.peer(node)
        if peer is None or peer.creation != parsed.creation:
            return  # not the current incarnation: kept aside until it is
        before: Mapping[int, int] = bucket_counts(old) if old is not None else {}
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
            layout = info.info.get("layout", 1)
            if layout != LAYOUT:
                log.warning("node %s: peer %s (creation %d) writes membership layout %r, "
                            "this node reads layout %d: their groups are not shared until "
                            "both run the same release (docs/decisions.md)", self.name,
                            info.name, info.creation, layout, LAYOUT)
            if old is not None:
                self.remote.node_lost(info.name, "restarted with a new creation")
            self._replace(info.name)
            self.cluster.set_routable(info.name, True)

    def _node_gone(self, name: str) -> None:
        remote = self.remote
        gone = self.cluster.gone(name)
        if gone is None:
            return
        conn = remote.connection(name)
        if conn is None or conn.silent:
            remote.node_lost(name, "its store session ended")
        # else: it still talks to us, so it is stopping in order (G4): its
        # answers to our calls and its Downs come on the connection, and the
        # connection's end fails what is left (on_peer_down). Failing calls
        # now would turn replies already on their way into NodeDown.
        self._drop_through(name, gone.creation)
        self._replace(name)

    def _drop_through(self, name: str, creation: int) -> None:
        """Forget ``name``'s buckets of incarnations up to ``creation``: their
        session ended with them; a newer one's buckets stay (Rule 2)."""
        held = self.entries.get(name)
        if held is None:
            return
        kept = {k: v for k, v in held.items() if v[0] > creation}
        if kept:
            self.entries[name] = kept
        else:
            del self.entries[name]

    def _replace(self, name: str, scope: str | None = None) -> None:
        """Recompute ``name``'s members from ``entries``: in every scope, or
        in ``scope`` only (a scope's re-sync costs that scope, not all)."""
        peer = self.cluster.peer(name)
        creation = peer.creation if peer is not None else None
        wanted = [(bucket[1], bucket[2], creation, bucket_counts(bucket))
                  for bucket in self.entries.get(name, {}).values()
                  if bucket[0] == creation and (scope is None or bucket[1] == scope)]
        self.feed.publish(self.table.replace_node_buckets(name, wanted, NODEDOWN, scope),
                          local=False)

    # -- re-syncs (Rule 3) --------------------------------------------------------------

    async def _resync(self, stream: Stream, snapshot: Snapshot) -> None:
        if stream.scope is None:
            await self._resync_nodes(snapshot)
        else:
            await self._resync_scope(stream, snapshot)
        if not self.owner.stopping:
            stream.revision = snapshot.revision

    async def _resync_nodes(self, snapshot: Snapshot) -> None:
        remote = self.remote
        slicer = Slicer()
        view = await read_nodes(snapshot, self.name, slicer)
        if self.owner.stopping or self.owner.own_record_loaded(view.record):
            return
        before = self.cluster.names()
        seen = view.nodes
        for name in before - set(seen):
            gone = self.cluster.gone(name)
            if gone is not None:
                self._drop_through(name, gone.creation)
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
            if self.owner.stopping:
                return  # fenced meanwhile (Rule 5)
            self._replace(name)
            await slicer.pause()

    async def _resync_scope(self, stream: Stream, snapshot: Snapshot) -> None:
        slicer = Slicer()
        view = await read_members(snapshot, self.name, self.creation, slicer)
        if self.owner.stopping:
            return
        prefix = stream.prefix
        touched: set[str] = set(view.entries)
        for node, held in list(self.entries.items()):
            kept = {k: v for k, v in held.items() if not k.startswith(prefix)}
            if len(kept) != len(held):
                touched.add(node)
                if kept:
                    self.entries[node] = kept
                else:
                    del self.entries[node]
        for node, fresh in view.entries.items():
            self.entries.setdefault(node, {}).update(fresh)
        for node in sorted(touched):
            if self.owner.stopping:
                return  # fenced meanwhile (Rule 5)
            self._replace(node, stream.scope)
            await slicer.pause()
        self.owner.writer.watched_to(snapshot.revision, prefix)
        self.owner.snapshot_loaded(view.own, snapshot.revision, prefix)

    def statistics(self) -> dict[str, Any]:
        """Per stream: its revision and the events it applied (for tests and benches)."""
        return {s.prefix: {"revision": s.revision, "events": s.events}
                for s in self.streams.values()}
