"""Reading the SQLite store's change log: the query shared by the worker
thread and the event loop, and the loop-side reader; and the snapshot query
shared by the worker thread and the read-only path (``_readonly``).

Owns no state but :class:`LoopReader`'s read-only connection. A read is one
deferred transaction (one WAL snapshot) and never waits for a writer.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from shoal.store.base import Entry, Event, Snapshot

__all__ = ["LoopReader", "ReadResult", "prefix_range", "read_changes", "snapshot_in"]

_READ_CHUNK = 1000

ReadResult = tuple[tuple[Event, ...], int, bool] | Snapshot
"""Events after a position, the new position and whether more remain; or a
Snapshot when the position was compacted away."""


def prefix_range(prefix: str) -> tuple[str, str | None]:
    """[low, high) bounds of the keys starting with ``prefix`` (UTF-8 order)."""
    stem = prefix
    while stem and ord(stem[-1]) == 0x10FFFF:
        stem = stem[:-1]
    if not stem:
        return prefix, None
    return prefix, stem[:-1] + chr(ord(stem[-1]) + 1)


def _meta(conn: sqlite3.Connection, key: str) -> int:
    return int(conn.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()[0])


def snapshot_in(conn: sqlite3.Connection, prefix: str) -> Snapshot:
    """Inside a read transaction: every entry under ``prefix`` and the revision."""
    low, high = prefix_range(prefix)
    rev = _meta(conn, "revision")
    sql = "SELECT key, value, session, revision FROM entries WHERE key >= ?"
    args: tuple[str, ...] = (low,)
    if high is not None:
        sql, args = sql + " AND key < ?", (low, high)
    rows = conn.execute(sql, args).fetchall()
    entries = {k: Entry(key=k, value=v, session=s, revision=r) for k, v, s, r in rows}
    return Snapshot(entries=entries, revision=rev)


def read_changes(
    conn: sqlite3.Connection, prefix: str, position: int
) -> tuple[tuple[Event, ...], int, bool] | None:
    """Inside a read transaction: the changes after ``position`` (at most about
    one chunk, never half a revision), the new position and whether more
    remain; None when ``position`` was compacted away."""
    low, high = prefix_range(prefix)
    if position < _meta(conn, "compacted"):
        return None
    rev = _meta(conn, "revision")
    bound = conn.execute(
        "SELECT revision FROM changes WHERE revision > ? ORDER BY revision, seq LIMIT 1 OFFSET ?",
        (position, _READ_CHUNK),
    ).fetchone()
    upto = rev if bound is None else int(bound[0])
    sql = (
        "SELECT kind, key, value, session, revision FROM changes"
        " WHERE revision > ? AND revision <= ? AND key >= ?"
    )
    args: tuple[object, ...] = (position, upto, low)
    if high is not None:
        sql, args = sql + " AND key < ?", (*args, high)
    rows = conn.execute(sql + " ORDER BY revision, seq", args).fetchall()
    # A delete names no session (the store contract's Rule 3b), whatever the log kept.
    events = tuple(
        Event(kind=kind, key=k, value=v, session=s if kind == "put" else None, revision=r)
        for kind, k, v, s, r in rows
    )
    return events, upto, upto < rev


class LoopReader:
    """Change-log reads on the event loop thread, for wake-to-event latency.

    A watcher woken by a datagram would otherwise hop to the worker thread
    and back (two thread wake-ups, milliseconds on a loaded host). This read
    is safe on the loop because it is tiny and cannot wait: a WAL reader
    never waits for writers, and the connection's busy timeout is 0, so on
    the rare SQLITE_BUSY (WAL recovery) or any other error it returns None
    and the caller falls back to the worker thread.

    Args:
        path: the database file, already created by :meth:`Database.connect`.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None

    def read_changes(
        self, prefix: str, position: int
    ) -> tuple[tuple[Event, ...], int, bool] | None:
        """Like :meth:`Database.read_changes`; None means "ask the worker"."""
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(self._path, timeout=0, isolation_level=None)
                self._conn.execute("PRAGMA query_only = 1")
            self._conn.execute("BEGIN")
            try:
                return read_changes(self._conn, prefix, position)
            finally:
                self._conn.execute("COMMIT")
        except sqlite3.Error:
            self.close()
            return None

    def close(self) -> None:
        """Close the connection (it reopens on the next read)."""
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
