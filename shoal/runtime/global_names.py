"""Cluster-wide registered names (Erlang's ``global``), held in the store.

``GlobalNames`` is a component of :class:`~shoal.runtime.node.Node`, which
delegates ``register_global``, ``unregister_global`` and ``whereis_global``
to it; ``names.py`` looks ``shoal.Global`` names up through it. The key
layout and the pure view are in ``shoal/membership/names.py``.

Owns: ``_view`` (every name the store holds, as this node last saw it: a
``NameView`` fed by its own watch of ``names/``, and by this node's own
registrations and releases at once), ``_own`` (the names this node's
processes hold: name -> holder, the session that created the key and its
revision) with its index ``_by_pid``, and the release tasks.

Rules:

- Rule 1: the store decides. A registration is a ``Create`` of
  ``names/<name>`` under this node's session: the first create wins, so
  exactly one holder exists cluster-wide whenever the store answers; the
  loser gets ``NameInUse`` naming the winner's pid.
- Rule 2: a name goes with its holder: in the synchronous half of the exit
  path (``process_exiting``) it leaves ``_own`` and the view at once, and
  its key is deleted in the background, under the session that created it
  (retried with the store's backoff until done or that session ended: an
  ended session's keys are gone already, and a newer session must never
  delete a key another node may have created since). When the node's
  session ends (a kill -9 of the node: by probe or TTL on SQLite, by lease
  expiry on etcd; or fencing) the store deletes every name it held at once.
- Rule 3: ``whereis_global`` is a local read of the view (as Erlang's
  ``global:whereis_name`` reads its table): it never answers a pid of this
  node that is not alive; a pid of another node it answers until the
  store's delete arrives here (a call to it then raises ``NoSuchProcess``).
- Rule 4: a name of ours whose key changed without our release (our
  session ended under us, or an operator deleted or overwrote the key) is
  lost: it leaves ``_own`` with a warning, and the process keeps running
  without it; it is not re-taken, as another node may hold it by then.
- Bounds: the view holds one entry per name in the store, pruned by the
  store's deletes; ``_own`` one per name a live local process holds, pruned
  in its exit path; one release task per released name, each ending when
  its delete is done or its session ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shoal.errors import (
    BadArgument,
    KeyExists,
    NameInUse,
    NoSuchProcess,
    SessionEnded,
    ShoalError,
    StoreError,
)
from shoal.membership.names import (
    PREFIX,
    NameView,
    decode_holder,
    encode_holder,
    name_key,
    parse_name_key,
)
from shoal.pid import Pid, check_registered_name
from shoal.runtime.checks import check_live_local_pid
from shoal.runtime.outages import store_backoff
from shoal.store.base import Changes, Create, Delete, Event, Session, Snapshot, Store

if TYPE_CHECKING:
    from shoal.runtime.outages import StoreOutages
    from shoal.runtime.processes import ProcessTable

__all__ = ["GlobalNames", "NameSession"]

log = logging.getLogger("shoal")


class NameSession(Protocol):
    """What global names need of the replication that owns the node's session."""

    @property
    def session(self) -> Session | None:
        """The node's current store session (None before the first is open)."""

    @property
    def outages(self) -> StoreOutages:
        """Where store failures are logged, once per outage."""


@dataclass(frozen=True, slots=True)
class _Held:
    pid: Pid
    session: Session  # the session that created the key: the only one to delete it
    revision: int


class GlobalNames:
    """Cluster-wide names held by this node's processes, and the view of all
    (see the module header).

    Args:
        processes: the node's process table.
    """

    def __init__(self, processes: ProcessTable) -> None:
        self.node = processes.name
        self._processes = processes
        self._view = NameView()
        # Invariant: _own[name].pid is a live local process and _by_pid
        # indexes exactly _own's pairs (Rule 2 drops both in the exit path).
        self._own: dict[str, _Held] = {}
        self._by_pid: dict[Pid, set[str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._store: Store | None = None
        self._holder: NameSession | None = None
        self._revision = 0
        self._stopping = False

    # -- life -------------------------------------------------------------------------

    async def start(self, store: Store, holder: NameSession) -> None:
        """Load the names the store holds and follow its changes.

        Raises:
            StoreUnavailable: the store cannot be reached.
        """
        self._store, self._holder = store, holder
        self._replace(await store.snapshot(PREFIX))
        self._spawn(self._follow(store), f"shoal global names {self.node}")

    async def stop(self) -> None:
        """Stop following and releasing (the session's end takes the keys)."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the API ----------------------------------------------------------------------

    async def register(self, name: str, pid: Pid) -> None:
        """Register ``pid`` under ``name`` across the cluster (Erlang's
        ``global:register_name/2``): a ``Create`` of ``names/<name>`` under
        this node's store session, so the first registration wins (Rule 1).
        The name is released when the process exits, with
        ``unregister_global``, or when this node's store session ends.

        Args:
            name: a non-empty str of at most 255 characters, without ``/``.
            pid: a live process of this node (a process may hold several).

        Raises:
            BadArgument: ``name`` is not such a str, or ``pid`` is not a
                Pid of this node.
            NoSuchProcess: ``pid`` is not alive (or exited meanwhile; then
                the name was released again).
            NameInUse: a process holds ``name`` (the message names it).
            StoreError: the store cannot be reached (StoreUnavailable) or
                the node's session ended (SessionEnded); nothing was held.
        """
        check_registered_name("name", name)
        check_live_local_pid(pid, self.node, self._processes.live,
                             "register a process of another node from its own node")
        held = self._own.get(name)
        if held is not None:
            raise NameInUse(name, str(held.pid), kind="global name")
        session = self._session()
        try:
            revision = await session.apply([Create(key=name_key(name),
                                                   value=encode_holder(pid))])
        except KeyExists as exc:
            holder = decode_holder(exc.value)
            raise NameInUse(name, str(holder) if holder is not None
                            else f"store session {exc.session}", kind="global name") from None
        if self._processes.live(pid) is None or self._stopping:
            self._release(name, session)  # it exited while the store answered
            raise NoSuchProcess(pid)
        self._own[name] = _Held(pid, session, revision)
        self._by_pid.setdefault(pid, set()).add(name)
        self._view.put(name, pid, revision)

    async def unregister(self, name: str) -> None:
        """Release a name a process of this node holds; the process keeps
        running (Erlang's ``global:unregister_name/1``, for names held here).

        The name leaves this node's view at once; returns once the store
        deleted it. If the store cannot be reached the delete is retried in
        the background (until done or the session ends) and this raises.

        Raises:
            BadArgument: ``name`` is not a name a process of this node holds.
            StoreUnavailable: the store did not answer (released locally;
                the store's copy goes later, as described).
        """
        held = self._own.get(name) if type(name) is str else None
        if held is None:
            raise BadArgument("name", name, "a global name held by a process of this node")
        self._drop(name, held)
        try:
            await held.session.apply([Delete(key=name_key(name))])
        except SessionEnded:
            return  # the key went with the session
        except StoreError:
            self._release(name, held.session)
            raise

    def whereis(self, name: str) -> Pid | None:
        """The pid registered cluster-wide as ``name``, from this node's view
        of the store, or None (Rule 3: never a local pid that is not alive).

        Raises:
            BadArgument: ``name`` is not a str.
        """
        if type(name) is not str:
            raise BadArgument("name", name, "a str")
        pid = self._view.get(name)
        if pid is not None and pid.node == self.node and self._processes.live(pid) is None:
            return None
        return pid

    def registered(self) -> list[str]:
        """Every global name in this node's view of the store, sorted."""
        return self._view.names()

    def process_exiting(self, pid: Pid) -> None:
        """Called in the synchronous half of ``pid``'s exit path (Rule 2)."""
        for name in self._by_pid.get(pid, set()).copy():
            held = self._own[name]
            self._drop(name, held)
            self._release(name, held.session)

    # -- inside -------------------------------------------------------------------------

    def _session(self) -> Session:
        session = self._holder.session if self._holder is not None else None
        if session is None or self._stopping:
            raise ShoalError(f"node {self.node!r} is not running: global names need its "
                             "store session")
        return session

    def _drop(self, name: str, held: _Held) -> None:
        del self._own[name]
        names = self._by_pid[held.pid]
        names.discard(name)
        if not names:
            del self._by_pid[held.pid]
        self._view.forget(name, held.pid)

    def _spawn(self, coro: Any, what: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=what)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _release(self, name: str, session: Session) -> None:
        if not self._stopping and not session.ended:
            self._spawn(self._delete(name, session), f"shoal release {name}")

    async def _delete(self, name: str, session: Session) -> None:
        delays = store_backoff()
        while not session.ended:
            try:
                await session.apply([Delete(key=name_key(name))])
                return
            except SessionEnded:
                return  # its keys went with it
            except StoreError as exc:
                delay = next(delays)
                if self._holder is not None:
                    self._holder.outages.failed("global name release", exc, delay)
                await asyncio.sleep(delay)

    async def _follow(self, store: Store) -> None:
        delays = store_backoff()
        while not self._stopping:
            try:
                async for item in store.watch(PREFIX, self._revision):
                    if isinstance(item, Changes):
                        for event in item.events:
                            self._apply(event)
                        self._revision = item.revision
                    else:
                        self._replace(item.snapshot)
                    delays = store_backoff()
            except StoreError as exc:
                delay = next(delays)
                if self._holder is not None:
                    self._holder.outages.failed("global names watch", exc, delay)
                await asyncio.sleep(delay)
            except Exception:
                # A bug while applying must not end this task: a node that
                # stops following serves a frozen view. Re-read everything.
                delay = next(delays)
                log.exception("node %s: applying the store's global names failed; "
                              "re-reading them in %.2fs", self.node, delay)
                await asyncio.sleep(delay)
                with contextlib.suppress(StoreError):
                    self._replace(await store.snapshot(PREFIX))

    def _apply(self, event: Event) -> None:
        name = parse_name_key(event.key)
        if name is None:
            return
        held = self._own.get(name)
        if event.kind == "put":
            holder = decode_holder(event.value)
            if holder is None:
                log.warning("node %s: skipped a malformed global name record %r at "
                            "revision %d", self.node, event.key, event.revision)
                return
            self._view.put(name, holder, event.revision)
            if held is not None and holder != held.pid and event.revision > held.revision:
                self._lost(name, held, f"its key was overwritten at revision {event.revision}")
        else:
            self._view.delete(name, event.revision)
            if held is not None and event.revision > held.revision:
                self._lost(name, held, f"its key was deleted at revision {event.revision} "
                           "(this node's store session ended, or someone removed it)")

    def _replace(self, snapshot: Snapshot) -> None:
        self._view.replace((key, entry.value, entry.revision)
                           for key, entry in snapshot.entries.items())
        self._revision = snapshot.revision
        for name, held in list(self._own.items()):
            if self._view.get(name) != held.pid and held.revision <= snapshot.revision:
                self._lost(name, held, f"the store no longer holds it at revision "
                           f"{snapshot.revision}")
            elif self._view.get(name) is None:
                self._view.put(name, held.pid, held.revision)  # written after the snapshot

    def _lost(self, name: str, held: _Held, why: str) -> None:
        """Rule 4."""
        self._drop(name, held)
        log.warning("node %s: process %s lost its global name %r: %s; it keeps running "
                    "without it", self.node, held.pid, name, why)
