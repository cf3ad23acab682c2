"""The synchronous half of SqliteStore: schema, transactions, lock files.

Owns every sqlite3 call and every ``flock`` of the SQLite adapter. An
instance lives on its store client's single worker thread and is only ever
called from there, so it needs no locking of its own.

Rules:

- Rule 1: every write is one ``BEGIN IMMEDIATE`` transaction that takes the
  next revision from ``meta`` and logs its events in ``changes`` with it;
  SQLite's single writer lock makes revisions a gap-free total order.
- Rule 2: every read of more than one statement is one ``BEGIN`` (deferred)
  transaction, so it sees one WAL snapshot.
- Rule 3: a live session's owner holds ``LOCK_EX`` on ``<db>.locks/<id>``.
  Whoever gets that lock with ``LOCK_NB`` has proof the owner died, and ends
  the session. A lock still held is proof the owner's process exists (it may
  be hung, e.g. SIGSTOP): that session never expires, whatever its TTL. Only
  a session whose lock file is missing (deleted by hand) ends by its TTL.
- Rule 4: a session end deletes all its keys at one revision and marks the
  row ended (never deletes it at once), so its owner can learn why it ended.
  Ended rows and old changes are pruned together by compaction.
- Rule 5: sqlite3 and OS errors leave this module as StoreUnavailable naming
  the database path; nothing raw escapes.
- Rule 6: the file's identity (device, inode) is recorded when it is
  opened. A database deleted or replaced under us (``identity_changed``)
  is not written to in silence: ``reopen`` drops our sessions' locks (those
  sessions do not exist in the new file) and opens whatever is at the path
  now, creating it if it is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from shoal._files import create_private_file, make_private_dirs, open_private
from shoal.errors import KeyExists, NameInUse, StoreUnavailable
from shoal.store.base import Create, Op, Put, Record, Snapshot
from shoal.store.sqlite._read import ReadResult, read_changes, snapshot_in
from shoal.store.sqlite._records import RECORDS_SCHEMA, append_in, records_in
from shoal.store.sqlite._wake import WakeDir

__all__ = ["Database"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0), ('schema', 1);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, info BLOB NOT NULL, ttl REAL NOT NULL,
    expires REAL NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL,
    ended TEXT, ended_rev INTEGER);
CREATE UNIQUE INDEX IF NOT EXISTS sessions_live_name ON sessions(name) WHERE ended IS NULL;
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, session TEXT NOT NULL, revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_session ON entries(session);
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,
    value BLOB, session TEXT NOT NULL, PRIMARY KEY (revision, seq)
) WITHOUT ROWID;
"""
_COMPACT_EVERY = 256


class Database:
    """One client's connection to the database, its lock files and wake sender.

    Args:
        path: the database file.
        busy_timeout: seconds a transaction waits for the write lock.
        log_limit: revisions of change log kept for watchers.
        wake: where to send wake-ups after each commit.
    """

    def __init__(self, path: Path, busy_timeout: float, log_limit: int, wake: WakeDir) -> None:
        self.path = path
        self.locks = path.with_name(path.name + ".locks")
        self._busy_timeout = busy_timeout
        self._log_limit = log_limit
        self._wake = wake
        self._conn: sqlite3.Connection | None = None
        # Invariant: True while the open write transaction has logged a change.
        self._dirty = False
        # Invariant: _locks[s] is an fd holding LOCK_EX on locks/s for each live own session.
        self._locks: dict[str, int] = {}
        # Invariant: (st_dev, st_ino) of the file the connection opened (Rule 6).
        self._identity: tuple[int, int] | None = None

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"sqlite store {self.path}: cannot {doing}: {exc}") from exc

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable(f"sqlite store {self.path}: not connected")
        return self._conn

    def connect(self) -> None:
        """Create the directories and schema if needed and open the database."""
        with self._errors("open the database"):
            make_private_dirs(self.path.parent)
            make_private_dirs(self.locks)
            with self._init_lock():
                create_private_file(self.path)  # its -wal and -shm take its mode
                self._connect_locked()
                stat = os.stat(self.path)
                self._identity = (stat.st_dev, stat.st_ino)

    def identity_changed(self) -> str | None:
        """Why the file at the path is no longer the one we opened
        (``"deleted"`` or ``"replaced"``), or None (Rule 6)."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return "deleted"
        except OSError:
            return None  # cannot tell (a permission change): not evidence
        if self._identity is not None and (stat.st_dev, stat.st_ino) != self._identity:
            return "replaced"
        return None

    def reopen(self) -> list[str]:
        """Open the file now at the path (Rule 6). Returns the ids of our
        sessions, which ended with the file they were in."""
        ended = list(self._locks)
        for session in ended:
            self.release(session)
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        self.connect()
        return ended

    @contextlib.contextmanager
    def _init_lock(self) -> Iterator[None]:
        """Serialise opening among processes: switching a brand-new database
        to WAL does not wait on SQLite's busy handler, so several processes
        creating it at once could fail with "database is locked". An flock
        (released by the kernel if its holder dies) orders them instead,
        polled so a hung holder costs at most the busy timeout (G6)."""
        path = self.path.with_name(self.path.name + ".init.lock")
        fd = open_private(path, os.O_RDWR)
        try:
            deadline = time.monotonic() + self._busy_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise sqlite3.OperationalError(
                            "another process holds the database's init lock") from None
                    time.sleep(0.002)  # in the store's worker thread, never the loop
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _connect_locked(self) -> None:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch to WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            # Checkpoints run in the background probe, not inside a commit,
            # so they never delay a writer's wake-ups (see checkpoint()).
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute("BEGIN IMMEDIATE")
            conn.executescript(_SCHEMA + RECORDS_SCHEMA)  # commits the transaction
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def close(self) -> None:
        """Release every own lock and close the connection and wake sender."""
        for fd in self._locks.values():
            os.close(fd)
        self._locks.clear()
        self._wake.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextlib.contextmanager
    def _write(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._errors(doing):
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            self._dirty = False
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        if self._dirty:
            self._wake.notify_others()

    @contextlib.contextmanager
    def _read(self, doing: str) -> Iterator[sqlite3.Connection]:
        with self._errors(doing):
            conn = self.conn
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    @staticmethod
    def _meta(conn: sqlite3.Connection, key: str) -> int:
        return int(conn.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()[0])

    def _commit_events(
        self, conn: sqlite3.Connection, events: list[tuple[str, str, bytes | None, str]]
    ) -> int:
        """Log events (kind, key, value, session) at the next revision; return it."""
        rev = self._meta(conn, "revision") + 1
        self._dirty = True
        conn.executemany(
            "INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?)",
            [(rev, i, kind, key, value, s) for i, (kind, key, value, s) in enumerate(events)],
        )
        conn.execute("UPDATE meta SET v = ? WHERE k = 'revision'", (rev,))
        if rev % _COMPACT_EVERY == 0:
            self._compact(conn, rev - self._log_limit)
        return rev

    def _compact(self, conn: sqlite3.Connection, through: int) -> None:
        if through <= self._meta(conn, "compacted"):
            return
        conn.execute("DELETE FROM changes WHERE revision <= ?", (through,))
        conn.execute("DELETE FROM sessions WHERE ended_rev <= ?", (through,))
        conn.execute("UPDATE meta SET v = ? WHERE k = 'compacted'", (through,))

    def compact(self, keep: int) -> None:
        """Forget all changes but those of the last ``keep`` revisions."""
        with self._write("compact the change log") as conn:
            self._compact(conn, self._meta(conn, "revision") - keep)

    def _end(self, conn: sqlite3.Connection, session: str, reason: str) -> None:
        """Inside a write: delete a session's keys at one revision, mark it ended."""
        keys = [
            r[0]
            for r in conn.execute(
                "SELECT key FROM entries WHERE session = ? ORDER BY key", (session,)
            )
        ]
        if keys:
            rev = self._commit_events(conn, [("delete", k, None, session) for k in keys])
            conn.execute("DELETE FROM entries WHERE session = ?", (session,))
        else:
            rev = self._meta(conn, "revision")
        conn.execute(
            "UPDATE sessions SET ended = ?, ended_rev = ? WHERE id = ?", (reason, rev, session)
        )

    def _try_lock(self, session: str) -> int | bool:
        """Rule 3: an fd holding the session's lock if its owner is provably
        dead; True if the lock is held (the owner's process exists); False if
        there is no lock file (nothing is proven: the TTL decides)."""
        try:
            fd = os.open(self.locks / session, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return True
        return fd

    def _may_expire(self, session: str) -> bool:
        """Whether a session past its TTL may be ended as expired: only when
        no process can hold its lock, the lock file being gone (Rule 3)."""
        return not (self.locks / session).exists()

    def _bury(self, session: str, fd: int) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.locks / session)
        os.close(fd)

    def open_session(self, session: str, name: str, info: bytes, ttl: float) -> int:
        """Take the lock, then register the session and its node key.

        Raises:
            NameInUse: a live session with a living owner holds ``name``.
        """
        with self._errors("create a session lock file"):
            fd = open_private(self.locks / session, os.O_RDWR)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        dead: list[tuple[str, int]] = []
        try:
            with self._write("open a session") as conn:
                now = time.monotonic()
                holder = conn.execute(
                    "SELECT id, pid, host, expires FROM sessions WHERE name = ? AND ended IS NULL",
                    (name,),
                ).fetchone()
                if holder is not None:
                    lock = self._try_lock(holder[0])
                    if lock is True or (lock is False and holder[3] >= now):
                        raise NameInUse(
                            name, f"session {holder[0]}, pid {holder[1]} on {holder[2]}"
                        )
                    self._end(conn, holder[0], "expired" if lock is False else "owner-dead")
                    if lock is not False:
                        dead.append((holder[0], lock))
                conn.execute(
                    "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                    (session, name, info, ttl, now + ttl, os.getpid(), os.uname().nodename),
                )
                key = "nodes/" + name
                rev = self._commit_events(conn, [("put", key, info, session)])
                conn.execute(
                    "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", (key, info, session, rev)
                )
        except BaseException:
            self._bury(session, fd)
            raise
        finally:
            for other, other_fd in dead:
                self._bury(other, other_fd)
        self._locks[session] = fd
        return rev

    def _live(self, conn: sqlite3.Connection, session: str) -> str | None:
        """Inside a write: None if the session is live, else why it ended (ending it
        now if its TTL has passed)."""
        row = conn.execute(
            "SELECT ended, expires FROM sessions WHERE id = ?", (session,)
        ).fetchone()
        if row is None:
            return "revoked"
        if row[0] is not None:
            return str(row[0])
        if row[1] < time.monotonic() and self._may_expire(session):
            self._end(conn, session, "expired")
            return "expired"
        return None

    def refresh(self, session: str, ttl: float) -> str | None:
        """Push the session's expiry ``ttl`` ahead; return why it ended if it has."""
        with self._write("refresh a session") as conn:
            reason = self._live(conn, session)
            if reason is None:
                conn.execute(
                    "UPDATE sessions SET expires = ? WHERE id = ?",
                    (time.monotonic() + ttl, session),
                )
        if reason is not None:
            self.release(session)
        return reason

    def apply(self, session: str, ops: Sequence[Op]) -> int | str:
        """Apply a checked batch; return its revision, or why the session ended.

        Raises:
            KeyExists: a Create's key exists (nothing applied: rolled back).
        """
        with self._write("apply a batch") as conn:
            reason = self._live(conn, session)
            if reason is not None:
                return reason
            events: list[tuple[str, str, bytes | None, str]] = []
            for op in ops:
                row = conn.execute(
                    "SELECT session, value FROM entries WHERE key = ?", (op.key,)
                ).fetchone()
                if isinstance(op, Create) and row is not None:
                    raise KeyExists(op.key, bytes(row[1]), row[0])
                if isinstance(op, Put | Create):
                    events.append(("put", op.key, op.value, session))
                elif row is not None:
                    events.append(("delete", op.key, None, row[0]))
            if not events:
                return self._meta(conn, "revision")
            rev = self._commit_events(conn, events)
            for kind, key, value, _ in events:
                if kind == "put":
                    conn.execute(
                        "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)",
                        (key, value, session, rev),
                    )
                else:
                    conn.execute("DELETE FROM entries WHERE key = ?", (key,))
            return rev

    def end_session(self, session: str, reason: str) -> None:
        """End an own session now (no-op if it already ended) and drop its lock."""
        with self._write("end a session") as conn:
            if self._live(conn, session) is None:
                self._end(conn, session, reason)
        self.release(session)

    def release(self, session: str) -> None:
        """Give up an own session's lock (after it ended, or to play a dead owner)."""
        fd = self._locks.pop(session, None)
        if fd is not None:
            self._bury(session, fd)

    def abandon(self, session: str) -> None:
        """Drop the lock without touching the database, as a killed owner would."""
        fd = self._locks.pop(session, None)
        if fd is not None:
            os.close(fd)

    def checkpoint(self) -> None:
        """Copy committed WAL pages into the database without waiting for anyone.

        Every client calls this from its background probe, so the WAL stays
        small while commits themselves never pay for a checkpoint.
        """
        with self._errors("checkpoint the WAL"):
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def probe(self, own: Sequence[str]) -> dict[str, str]:
        """End sessions that expired or whose owner died; return why each of the
        ``own`` sessions ended, for those that did (by anyone's hand)."""
        with self._read("read sessions") as conn:
            live = conn.execute("SELECT id, expires FROM sessions WHERE ended IS NULL").fetchall()
        now = time.monotonic()
        for session, expires in live:
            # Our own sessions are alive, since we hold their locks, unless
            # their lock files were deleted (Rule 3).
            lock = (self._try_lock(session) if session not in self._locks
                    else not self._may_expire(session))
            if lock is True or (lock is False and expires >= now):
                continue  # its owner lives (maybe hung), or its TTL still runs
            try:
                with self._write("end a dead session") as conn:
                    if self._live(conn, session) is None and lock is not False:
                        self._end(conn, session, "owner-dead")
            finally:
                if lock is not False:
                    self._bury(session, lock)
        if not own:
            return {}
        with self._read("read own sessions") as conn:
            marks = ",".join("?" * len(own))
            rows = dict(
                conn.execute(
                    f"SELECT id, ended FROM sessions WHERE id IN ({marks})", tuple(own)
                ).fetchall()
            )
        ended = {
            s: str(rows[s]) if s in rows else "revoked"
            for s in own
            if rows.get(s, "revoked") is not None
        }
        for session in ended:
            self.release(session)
        return ended

    def snapshot(self, prefix: str) -> Snapshot:
        """Every entry under ``prefix`` at one revision."""
        with self._read("read a snapshot") as conn:
            return snapshot_in(conn, prefix)

    def append_record(self, kind: str, value: bytes, keep: int) -> int:
        """Append a durable record, keeping the newest ``keep`` of its kind."""
        with self._write("append a record") as conn:
            return append_in(conn, kind, value, keep)

    def records(self, kind: str, limit: int) -> list[Record]:
        """The newest ``limit`` records of ``kind``, newest first."""
        with self._read("read records") as conn:
            return records_in(conn, kind, limit)

    def read_changes(self, prefix: str, position: int) -> ReadResult:
        """Changes under ``prefix`` after ``position``, whole revisions at a time."""
        with self._read("read the change log") as conn:
            found = read_changes(conn, prefix, position)
        return self.snapshot(prefix) if found is None else found

