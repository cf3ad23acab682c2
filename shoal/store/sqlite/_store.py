"""SqliteStore: the embedded default store, for many node processes on one host.

Owns the asyncio side of the SQLite adapter: one worker thread per client,
session keepalives, the background probe, wake sockets and watches. The
database side (schema, transactions, lock files) is ``_db``.

Files, next to the database (default ``./.shoal/cluster.db``):

- ``cluster.db`` (+ ``-wal``, ``-shm``): WAL-mode database with the tables
  ``meta`` (revision, compaction point), ``sessions``, ``entries`` and
  ``changes`` (the change log, one row per event, keyed by revision).
- ``cluster.db.locks/<session-id>``: each live session's owner holds
  ``flock(LOCK_EX)`` on its file. The kernel drops the lock when the owner
  dies, even by ``kill -9``, so whoever then gets it knows the owner is dead.
- ``cluster.db.wake/<client-id>.sock``: a unix datagram socket per watching
  client; writers send one byte to each after a commit (see ``_wake``).

Rules:

- Rule 1: sqlite3 runs on the client's single worker thread, never on the
  event loop: a busy database (``BEGIN IMMEDIATE`` waits up to
  ``busy_timeout``) must not stall the node. The one exception is a
  watcher's change-log read, which cannot wait (``LoopReader``).
- Rule 2: a session ends when it is closed, or at once when its lock is
  free (the owner died, even by ``kill -9``). A hung owner (SIGSTOP, a stuck
  event loop) still holds its lock, which proves its process exists, so its
  session does not expire however long the hang: the TTL applies only to a
  session whose lock file was deleted. Every client probes every
  ``probe_interval`` seconds.
- Rule 3: watchers wait on wake-ups, with a slow poll (``poll_interval``)
  only as a fallback for lost wakes; the change log is the truth.
- Rule 4: a database file deleted or replaced under running nodes is found
  by the background probe (its device and inode changed or it is gone).
  The client logs an error, opens the file now at the path (creating it if
  needed), ends its own sessions as ``"revoked"`` (they were in the old
  file: a node re-opens its session and rewrites its memberships) and
  restarts every watch with a Resync of the new file. Nothing keeps
  serving from an unlinked file in silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Protocol, TypeVar

from shoal.errors import BadArgument, SessionEnded, StoreUnavailable
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
)
from shoal.store.base import RECORD_KEEP, Changes, Op, Record, Resync, Snapshot, WatchItem
from shoal.store.sqlite._db import Database
from shoal.store.sqlite._read import LoopReader, ReadResult
from shoal.store.sqlite._wake import WakeDir, wake_dir_for

__all__ = ["DEFAULT_SQLITE_PATH", "SqliteSession", "SqliteStore"]

DEFAULT_SQLITE_PATH = Path(".shoal") / "cluster.db"
"""Where the store lives when no URL is given (relative to the working directory)."""

_log = logging.getLogger("shoal.store.sqlite")
T = TypeVar("T")


class _Runner(Protocol):
    """A store's ``_run``: call ``fn(*args)`` on its worker thread."""

    def __call__(self, fn: Callable[..., T], *args: object) -> Awaitable[T]: ...


class SqliteSession(SessionCore):
    """A session of a :class:`SqliteStore`; see :class:`shoal.store.base.Session`."""

    _kind = "sqlite"

    def __init__(
        self, session_id: str, name: str, ttl: float, *,
        run: _Runner, db: Database, wake: Callable[[], None], forget: Callable[[str], object],
    ) -> None:
        super().__init__(session_id, name, ttl)
        # What the session uses of its store, handed over by the store: its
        # worker (``run``), its database, the wake of its local watchers, and
        # ``forget`` to drop the session from the store's live set once ended.
        self._run = run
        self._db = db
        self._wake = wake
        self._forget = forget

    async def apply(self, ops: Sequence[Op]) -> int:
        """Apply puts, creates and deletes atomically at one revision.

        Args:
            ops: Put/Create/Delete operations, each key at most once.

        Returns:
            The revision of the change (the current one when nothing changed).

        Raises:
            BadArgument: ``ops`` is malformed.
            KeyExists: a Create's key exists; nothing was applied.
            SessionEnded: the session has ended (closed, expired, owner dead).
            StoreUnavailable: the database cannot be used.
        """
        batch = check_ops(ops)
        if self._reason is None:
            result = await self._run(self._db.apply, self._id, batch)
            if isinstance(result, int):
                self._wake()
                return result
            self.mark_ended(result)
        raise SessionEnded(f"session {self._id} ({self._name}) ended: {self._reason}")

    async def close(self) -> None:
        """End the session now; its keys disappear at one revision. Idempotent.

        Raises:
            StoreUnavailable: the database cannot be used (the session then
                ends by TTL once the database is back, or when this process exits).
        """
        if self._reason is None:
            await self._run(self._db.end_session, self._id, "closed")
            self._wake()
            self.mark_ended("closed")

    async def abandon(self) -> None:
        """Let go of the lock without ending the session, as a killed owner would.

        For tests: the next probe by any client ends the session as ``"owner-dead"``.
        """
        self.pause_keepalive()
        await self._run(self._db.abandon, self._id)

    async def _keep_alive(self) -> None:
        while self._reason is None:
            await asyncio.sleep(self._ttl / 3)
            try:
                reason = await self._run(self._db.refresh, self._id, self._ttl)
            except StoreUnavailable as exc:
                _log.warning("keepalive of session %s failed: %s", self._name, exc)
                continue
            if reason is not None:
                self.mark_ended(reason)

    def mark_ended(self, reason: str) -> bool:
        """Record the end, and drop the session from its store's live set. For the store."""
        if not super().mark_ended(reason):
            return False
        self._forget(self._id)
        return True


class SqliteStore:
    """The embedded store: one SQLite file shared by the node processes of a host.

    Creating it does no IO; the database is opened on first use (or by
    ``async with``), so errors surface as StoreUnavailable from the first call.

    Args:
        path: the database file; its directory is created if missing.
        busy_timeout: seconds a write waits for another process's write lock.
        probe_interval: seconds between background probes for dead or expired sessions.
        poll_interval: seconds between fallback polls of a watcher with no wake-up.
        log_limit: revisions of change log kept; a watcher further behind gets a Resync.

    Raises:
        BadArgument: a number is out of range.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_SQLITE_PATH,
        *,
        busy_timeout: float = 5.0,
        probe_interval: float = 0.2,
        poll_interval: float = 0.5,
        log_limit: int = 10_000,
    ) -> None:
        for arg, value in (
            ("busy_timeout", busy_timeout),
            ("probe_interval", probe_interval),
            ("poll_interval", poll_interval),
        ):
            try:
                check_ttl(value)
            except BadArgument:
                raise BadArgument(arg, value, "a finite number of seconds > 0") from None
        if isinstance(log_limit, bool) or not isinstance(log_limit, int) or log_limit < 1:
            raise BadArgument("log_limit", log_limit, "an int >= 1")
        self.path = Path(path).absolute()
        self._probe_interval = probe_interval
        self._poll_interval = poll_interval
        self._client_id = uuid.uuid4().hex
        self._wake = WakeDir(wake_dir_for(self.path), self._client_id)
        self._db = Database(self.path, busy_timeout, log_limit, self._wake)
        self._reader = LoopReader(self.path)
        self._executor: ThreadPoolExecutor | None = None
        self._start_lock = asyncio.Lock()
        self._sessions: dict[str, SqliteSession] = {}
        self._watch_events: set[asyncio.Event] = set()
        self._listening = False
        self._prober: asyncio.Task[None] | None = None
        self._closed = False
        # Invariant: how many times the file was re-opened (Rule 4); a watch
        # that started under an older generation resyncs.
        self._generation = 0

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    async def __aenter__(self) -> SqliteStore:
        await self._start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _start(self) -> None:
        if self._closed:
            raise StoreUnavailable(f"sqlite store {self.path}: client is closed")
        if self._executor is not None:
            return
        async with self._start_lock:
            if self._executor is not None:
                return
            executor = ThreadPoolExecutor(1, thread_name_prefix="shoal-sqlite")
            try:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(executor, self._db.connect)
            except BaseException:
                executor.shutdown(wait=False)
                raise
            self._executor = executor
            self._prober = loop.create_task(self._probe_forever(), name="shoal-sqlite-probe")

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        await self._start()
        assert self._executor is not None
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, functools.partial(fn, *args)
            )
        except RuntimeError as exc:  # the executor was shut down by close()
            raise StoreUnavailable(f"sqlite store {self.path}: client is closed") from exc

    def _wake_local(self) -> None:
        for event in self._watch_events:
            event.set()

    def _forget_session(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    async def open_session(self, name: str, info: bytes, ttl: float) -> SqliteSession:
        """Open a session and store ``info`` under ``nodes/<name>``.

        A session of the same name whose owner is dead or whose TTL passed is
        ended first (so a restarted node gets its name back at once).

        Args:
            name: unique node name (non-empty, no ``/``).
            info: opaque bytes describing the node.
            ttl: seconds without keepalive after which the session expires,
                if its lock file is gone (a held lock keeps it alive: Rule 2).

        Returns:
            The live session, refreshed in the background every ttl/3.

        Raises:
            BadArgument: an argument is malformed.
            NameInUse: a live session with a living owner holds ``name``.
            StoreUnavailable: the database cannot be used.
        """
        check_name(name)
        check_info(info)
        seconds = check_ttl(ttl)
        session = SqliteSession(
            uuid.uuid4().hex, name, seconds,
            run=self._run, db=self._db, wake=self._wake_local, forget=self._forget_session,
        )
        await self._run(self._db.open_session, session.id, name, info, seconds)
        self._wake_local()
        self._sessions[session.id] = session
        session.start_keepalive()
        return session

    async def snapshot(self, prefix: str) -> Snapshot:
        """Every entry under ``prefix`` and the revision they are consistent at.

        Args:
            prefix: key prefix ("" for all).

        Returns:
            The snapshot.

        Raises:
            BadArgument: ``prefix`` is not a str.
            StoreUnavailable: the database cannot be used.
        """
        check_prefix(prefix)
        return await self._run(self._db.snapshot, prefix)

    async def append_record(self, kind: str, value: bytes, *, keep: int = RECORD_KEEP) -> int:
        """Append a durable record (store Rule 7, ``_records.py``); return its seq.

        Raises:
            BadArgument: ``kind``, ``value`` or ``keep`` is malformed.
            StoreUnavailable: the database cannot be used.
        """
        check_record(kind, value)
        return await self._run(self._db.append_record, kind, value, check_count("keep", keep))

    async def records(self, kind: str, limit: int) -> list[Record]:
        """The newest ``limit`` records of ``kind``, newest first.

        Raises:
            BadArgument: ``kind`` or ``limit`` is malformed.
            StoreUnavailable: the database cannot be used.
        """
        check_record(kind, b"")
        return await self._run(self._db.records, kind, check_count("limit", limit))

    def watch(self, prefix: str, revision: int) -> AsyncIterator[WatchItem]:
        """Changes under ``prefix`` strictly after ``revision``, in order, no gap.

        Args:
            prefix: key prefix ("" for all).
            revision: the revision the caller's view is at.

        Returns:
            An async iterator of :class:`Changes` (whole revisions) and
            :class:`Resync`; it ends when this client closes.

        Raises:
            BadArgument: ``prefix`` or ``revision`` is malformed.
            StoreUnavailable: (while iterating) the database cannot be used.
        """
        check_prefix(prefix)
        check_revision(revision)
        return self._watch(prefix, revision)

    async def _watch(self, prefix: str, revision: int) -> AsyncIterator[WatchItem]:
        await self._start()
        self._listen()
        event = asyncio.Event()
        self._watch_events.add(event)
        try:
            position = revision
            generation = self._generation
            while not self._closed:
                event.clear()
                if generation != self._generation:  # another file now (Rule 4)
                    generation = self._generation
                    snapshot = await self._run(self._db.snapshot, prefix)
                    position = snapshot.revision
                    yield Resync(snapshot=snapshot)
                    continue
                result: ReadResult | None = self._reader.read_changes(prefix, position)
                if result is None:
                    try:
                        result = await self._run(self._db.read_changes, prefix, position)
                    except StoreUnavailable:
                        if self._closed:
                            return
                        raise
                if isinstance(result, Snapshot):
                    position = result.revision
                    yield Resync(snapshot=result)
                    continue
                events, position, more = result
                if events:
                    yield Changes(events=events, revision=events[-1].revision)
                if more or self._closed:
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll_interval):
                        await event.wait()
        finally:
            self._watch_events.discard(event)

    def _listen(self) -> None:
        if self._listening or self._closed:
            return
        try:
            sock = self._wake.bind()
        except OSError as exc:
            _log.warning("no wake socket in %s (%s); watches poll", self._wake.directory, exc)
        else:
            asyncio.get_running_loop().add_reader(sock.fileno(), self._on_wake)
        self._listening = True

    def _on_wake(self) -> None:
        self._wake.drain()
        self._wake_local()

    async def probe(self) -> None:
        """End, now, every session whose owner died or whose TTL passed.

        Raises:
            StoreUnavailable: the database cannot be used.
        """
        ended = await self._run(self._db.probe, tuple(self._sessions))
        for session_id, reason in ended.items():
            session = self._sessions.get(session_id)
            if session is not None:
                session.mark_ended(reason)
        self._wake_local()

    async def _check_file(self) -> None:
        """Rule 4: re-open a database deleted or replaced under us."""
        why = await self._run(self._db.identity_changed)
        if why is None:
            return
        _log.error("sqlite store %s: the database file was %s under this process; "
                   "opening the one at that path now and registering again", self.path, why)
        self._reader.close()
        ended = await self._run(self._db.reopen)
        self._generation += 1
        for session_id in ended:
            session = self._sessions.get(session_id)
            if session is not None:
                session.mark_ended("revoked")
        self._wake_local()

    async def _probe_forever(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._probe_interval)
            try:
                await self._check_file()
                await self.probe()
                await self._run(self._db.checkpoint)
            except StoreUnavailable as exc:
                if self._closed:
                    return
                _log.warning("background probe failed: %s", exc)

    async def compact(self, keep: int = 0) -> None:
        """Forget all changes but those of the last ``keep`` revisions.

        Args:
            keep: revisions of change log to keep.

        Raises:
            StoreUnavailable: the database cannot be used.
        """
        await self._run(self._db.compact, keep)

    async def close(self) -> None:
        """End this client's sessions, stop its watches and tasks. Idempotent."""
        if self._closed:
            return
        for session in list(self._sessions.values()):
            try:
                await session.close()
            except StoreUnavailable as exc:
                _log.warning("could not end session %s: %s", session.name, exc)
        self._closed = True
        tasks = [t for s in self._sessions.values() if (t := s.keepalive_task) is not None]
        if self._prober is not None:
            tasks.append(self._prober)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        fd = self._wake.fileno()
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
        self._wake_local()
        self._reader.close()
        if self._executor is not None:
            with contextlib.suppress(StoreUnavailable):
                await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
            self._executor.shutdown(wait=False)
