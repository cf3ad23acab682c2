"""MemoryStore: the store contract inside one process.

Owns an in-memory implementation of :mod:`shoal.store.base` for tests and
single-process use. Several *clients* (``another_client()``) share one
backend, so a test can play several nodes against the same data.

Rules:

- Rule 1: every change goes through ``_Backend.commit``, which assigns the
  next revision, appends to the change log and wakes every watcher. Nothing
  else mutates ``entries``.
- Rule 2: the change log is bounded (``log_limit`` events) and is always cut
  at a revision boundary, so a watcher either gets all events of a revision
  or a :class:`Resync`.
- Rule 2b: durable records (store Rule 7) live in ``records``, one deque
  per kind, apart from the entries: no session owns them, no watcher sees
  them; an append drops the oldest beyond its ``keep``.
- Rule 3: time comes only from the injected ``clock`` and ``sleep`` (TTL
  deadlines, keepalives, the background expiry loop), so tests drive expiry
  with a manual clock instead of sleeping.

Why so plain: everything runs on one event loop, so a write is a critical
section by construction; no locks are needed.
"""

from __future__ import annotations

import asyncio
import bisect
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence

from shoal.errors import BadArgument, KeyExists, NameInUse, SessionEnded, StoreUnavailable
from shoal.store._session import SessionCore
from shoal.store._validate import (
    check_count,
    check_info,
    check_name,
    check_ops,
    check_prefix,
    check_record,
    check_revision,
    check_ttl,
    node_key,
)
from shoal.store.base import (
    RECORD_KEEP,
    Changes,
    Clock,
    Create,
    Delete,
    Entry,
    Event,
    Op,
    Put,
    Record,
    Resync,
    Sleep,
    Snapshot,
    WatchItem,
)

__all__ = ["MemorySession", "MemoryStore"]

_MAX_BATCH_EVENTS = 1000


class _Backend:
    """The data all clients of one MemoryStore share."""

    def __init__(self, clock: Clock, sleep: Sleep, log_limit: int) -> None:
        self.clock = clock
        self.sleep = sleep
        self.log_limit = log_limit
        self.revision = 0
        # Invariant: ``log`` holds every event with revision > ``compacted``, in order.
        self.compacted = 0
        self.log: list[Event] = []
        self.entries: dict[str, Entry] = {}
        # Invariant: owned[s] is exactly the set of keys whose entry has session s.
        self.owned: dict[str, set[str]] = {}
        self.live: dict[str, MemorySession] = {}
        self.names: dict[str, str] = {}
        self.waiters: set[asyncio.Event] = set()
        # Invariant: records[k] holds the newest records of kind k, oldest first.
        self.records: dict[str, deque[Record]] = {}
        self.record_seq = 0

    def commit(self, ops: Sequence[Op], session: str) -> int:
        for op in ops:
            held = self.entries.get(op.key) if isinstance(op, Create) else None
            if held is not None:  # Rule 6: the whole batch is refused
                raise KeyExists(op.key, held.value, held.session)
        rev = self.revision + 1
        events: list[Event] = []
        for op in ops:
            old = self.entries.get(op.key)
            if old is not None:
                self.owned.get(old.session, set()).discard(op.key)
            if isinstance(op, Put | Create):
                self.entries[op.key] = Entry(
                    key=op.key, value=op.value, session=session, revision=rev
                )
                self.owned.setdefault(session, set()).add(op.key)
                events.append(
                    Event(kind="put", key=op.key, value=op.value, session=session, revision=rev)
                )
            elif old is not None:
                del self.entries[op.key]
                events.append(
                    Event(kind="delete", key=op.key, value=None, session=None, revision=rev)
                )
        if not events:
            return self.revision
        self.revision = rev
        self.log.extend(events)
        if len(self.log) > self.log_limit:
            self.compact(self.log_limit)
        for waiter in self.waiters:
            waiter.set()
        return rev

    def compact(self, keep: int) -> None:
        cut = max(0, len(self.log) - keep)
        while 0 < cut < len(self.log) and self.log[cut].revision == self.log[cut - 1].revision:
            cut += 1
        if cut == len(self.log):
            self.compacted = self.revision
        elif cut:
            self.compacted = self.log[cut - 1].revision
        del self.log[:cut]

    def end(self, session: MemorySession, reason: str) -> None:
        if self.live.get(session.id) is not session:
            return
        del self.live[session.id]
        del self.names[session.name]
        keys = sorted(self.owned.get(session.id, ()))
        self.commit([Delete(key=k) for k in keys], session.id)
        self.owned.pop(session.id, None)
        session.mark_ended(reason)

    def expire_due(self) -> None:
        now = self.clock()
        for session in [s for s in self.live.values() if s.deadline < now]:
            self.end(session, "expired")


class MemorySession(SessionCore):
    """A session of a :class:`MemoryStore`; see :class:`shoal.store.base.Session`."""

    _kind = "memory"

    def __init__(self, backend: _Backend, name: str, ttl: float) -> None:
        super().__init__(uuid.uuid4().hex, name, ttl)
        self._backend = backend
        # Invariant: the session is expired once clock() passes _deadline.
        self._deadline = backend.clock() + ttl

    @property
    def deadline(self) -> float:
        """When (on the store's clock) the session expires unless kept alive."""
        return self._deadline

    async def apply(self, ops: Sequence[Op]) -> int:
        """Apply puts, creates and deletes atomically at one revision.

        Args:
            ops: Put/Create/Delete operations, each key at most once.

        Returns:
            The revision of the change (the current one when nothing changed).

        Raises:
            BadArgument: ``ops`` is malformed (see ``shoal.store._validate``).
            KeyExists: a Create's key exists; nothing was applied.
            SessionEnded: the session has ended, or its TTL has passed.
        """
        batch = check_ops(ops)
        if self._reason is None and self._backend.clock() > self._deadline:
            self._backend.end(self, "expired")
        if self._reason is not None:
            raise SessionEnded(f"session {self._id} ({self._name}) ended: {self._reason}")
        return self._backend.commit(batch, self._id)

    async def close(self) -> None:
        """End the session now; its keys disappear at one revision. Idempotent."""
        self._backend.end(self, "closed")

    async def _keep_alive(self) -> None:
        while self._reason is None:
            await self._backend.sleep(self._ttl / 3)
            if self._reason is None:
                self._deadline = self._backend.clock() + self._ttl


class MemoryStore:
    """The store contract in memory, for tests and single-process use.

    Args:
        clock: monotonic time source in seconds (inject a manual clock in tests).
        sleep: the matching sleep coroutine function.
        log_limit: how many change events to retain; a watcher further
            behind gets a :class:`Resync`.
        probe_interval: seconds between background expiry checks.

    Raises:
        BadArgument: ``log_limit < 1`` or ``probe_interval <= 0``.
    """

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        log_limit: int = 10_000,
        probe_interval: float = 0.1,
        _backend: _Backend | None = None,
    ) -> None:
        if isinstance(log_limit, bool) or not isinstance(log_limit, int) or log_limit < 1:
            raise BadArgument("log_limit", log_limit, "an int >= 1")
        self._probe_interval = check_ttl(probe_interval)
        self._b = _backend or _Backend(clock, sleep, log_limit)
        self._sessions: set[MemorySession] = set()
        self._wakes: set[asyncio.Event] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    def another_client(self) -> MemoryStore:
        """A second client on the same data, as another node would be.

        Returns:
            A MemoryStore sharing this one's entries, sessions and clock.
            Closing it ends only the sessions opened through it.
        """
        return MemoryStore(
            clock=self._b.clock,
            sleep=self._b.sleep,
            log_limit=self._b.log_limit,
            probe_interval=self._probe_interval,
            _backend=self._b,
        )

    def compact(self, keep: int = 0) -> None:
        """Forget all but the last ``keep`` change events (whole revisions).

        Args:
            keep: how many events to retain.
        """
        self._b.compact(keep)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("memory store client is closed")

    async def open_session(self, name: str, info: bytes, ttl: float) -> MemorySession:
        """Open a session and store ``info`` under ``nodes/<name>``.

        Args:
            name: unique node name (non-empty, no ``/``).
            info: opaque bytes describing the node.
            ttl: seconds without keepalive after which the session expires.

        Returns:
            The live session; a background task refreshes it every ttl/3.

        Raises:
            BadArgument: an argument is malformed.
            NameInUse: a live session holds ``name``.
            StoreUnavailable: this client is closed.
        """
        check_name(name)
        check_info(info)
        seconds = check_ttl(ttl)
        self._check_open()
        self._b.expire_due()
        holder = self._b.names.get(name)
        if holder is not None:
            raise NameInUse(name, f"session {holder}")
        session = MemorySession(self._b, name, seconds)
        self._b.live[session.id] = session
        self._b.names[name] = session.id
        self._b.commit([Put(key=node_key(name), value=info)], session.id)
        self._sessions.add(session)
        session.start_keepalive()
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(
                self._reap(), name="shoal-memory-reaper"
            )
        return session

    async def _reap(self) -> None:
        while not self._closed:
            await self._b.sleep(self._probe_interval)
            self._b.expire_due()

    async def snapshot(self, prefix: str) -> Snapshot:
        """Every entry under ``prefix`` and the current revision.

        Args:
            prefix: key prefix ("" for all).

        Returns:
            A consistent snapshot.

        Raises:
            BadArgument: ``prefix`` is not a str.
            StoreUnavailable: this client is closed.
        """
        check_prefix(prefix)
        self._check_open()
        return self._snapshot_now(prefix)

    def _snapshot_now(self, prefix: str) -> Snapshot:
        entries = {k: e for k, e in self._b.entries.items() if k.startswith(prefix)}
        return Snapshot(entries=entries, revision=self._b.revision)

    def watch(self, prefix: str, revision: int) -> AsyncIterator[WatchItem]:
        """Changes under ``prefix`` strictly after ``revision``, in order.

        Args:
            prefix: key prefix ("" for all).
            revision: the revision the caller's view is at.

        Returns:
            An async iterator of :class:`Changes` and :class:`Resync`; it ends
            when this client closes.

        Raises:
            BadArgument: ``prefix`` or ``revision`` is malformed.
            StoreUnavailable: this client is closed.
        """
        check_prefix(prefix)
        check_revision(revision)
        self._check_open()
        return self._watch(prefix, revision)

    async def _watch(self, prefix: str, revision: int) -> AsyncIterator[WatchItem]:
        b = self._b
        wake = asyncio.Event()
        b.waiters.add(wake)
        self._wakes.add(wake)
        try:
            pos = revision
            while not self._closed:
                if pos < b.compacted:
                    snap = self._snapshot_now(prefix)
                    pos = snap.revision
                    yield Resync(snapshot=snap)
                    continue
                if pos < b.revision:
                    start = bisect.bisect_right(b.log, pos, key=lambda e: e.revision)
                    end = min(len(b.log), start + _MAX_BATCH_EVENTS)
                    while end < len(b.log) and b.log[end].revision == b.log[end - 1].revision:
                        end += 1
                    chunk = b.log[start:end]
                    pos = chunk[-1].revision
                    events = tuple(e for e in chunk if e.key.startswith(prefix))
                    if events:
                        yield Changes(events=events, revision=events[-1].revision)
                    continue
                wake.clear()
                await wake.wait()
        finally:
            b.waiters.discard(wake)
            self._wakes.discard(wake)

    async def append_record(self, kind: str, value: bytes, *, keep: int = RECORD_KEEP) -> int:
        """Append a durable record; keep the newest ``keep`` of its kind
        (store Rule 7). Returns its sequence number.

        Raises:
            BadArgument: ``kind``, ``value`` or ``keep`` is malformed.
            StoreUnavailable: this client is closed.
        """
        check_record(kind, value)
        check_count("keep", keep)
        self._check_open()
        self._b.record_seq += 1
        log = self._b.records.setdefault(kind, deque())
        log.append(Record(kind=kind, seq=self._b.record_seq, value=value))
        while len(log) > keep:
            log.popleft()
        return self._b.record_seq

    async def records(self, kind: str, limit: int) -> list[Record]:
        """The newest ``limit`` records of ``kind``, newest first.

        Raises:
            BadArgument: ``kind`` or ``limit`` is malformed.
            StoreUnavailable: this client is closed.
        """
        check_record(kind, b"")
        check_count("limit", limit)
        self._check_open()
        log = self._b.records.get(kind, deque())
        return [log[i] for i in range(len(log) - 1, max(-1, len(log) - 1 - limit), -1)]

    async def probe(self) -> None:
        """End every session whose TTL has passed, now.

        Raises:
            StoreUnavailable: this client is closed.
        """
        self._check_open()
        self._b.expire_due()

    async def close(self) -> None:
        """End this client's sessions, stop its watches and tasks. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for session in list(self._sessions):
            self._b.end(session, "closed")
        tasks = [t for s in self._sessions if (t := s.keepalive_task) is not None]
        if self._reaper is not None:
            tasks.append(self._reaper)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for wake in self._wakes:
            wake.set()
