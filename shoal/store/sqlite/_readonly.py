"""Reading a SQLite store without writing to it, for commands that only look.

Owns the read-only path of the SQLite adapter. ``shoal nodes``, ``groups``
and ``members`` must never create a store (a mistyped path would otherwise
become an empty cluster, reported as such) and must work for a user who may
read the store but not write it.

Rules:

- Rule 1: nothing is created. A missing database file is
  :class:`~shoal.errors.StoreUnavailable` "no cluster at PATH"; no
  directory, database, ``-wal`` or ``-shm`` file is ever made here.
- Rule 2: the database is opened with SQLite's ``mode=ro``. While any client
  has it open its ``-wal`` and ``-shm`` exist, and the read goes through
  them like any WAL reader's.
- Rule 3: when there is no ``-wal``, no client has the database open, and
  ``mode=ro`` would create the ``-wal`` and ``-shm`` (or fail without write
  access). The file is then read as ``immutable=1``, and the read is kept
  only if no ``-wal`` appeared and the file's identity, size and mtime are
  unchanged afterwards: a client that opened it meanwhile makes the read
  start again (at most ``_ATTEMPTS`` times, then ``mode=ro`` as in Rule 2).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from shoal.errors import StoreUnavailable
from shoal.store.base import Record, Snapshot
from shoal.store.sqlite._read import snapshot_in
from shoal.store.sqlite._records import records_in

__all__ = ["read_only_records", "read_only_snapshot"]

_T = TypeVar("_T")

_ATTEMPTS = 3


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    """The file's (device, inode, size, mtime), or None while a -wal exists."""
    if os.path.lexists(f"{path}-wal"):
        return None
    info = path.stat()
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def _read(path: Path, read: Callable[[sqlite3.Connection], _T], options: str) -> _T:
    uri = f"file:{quote(os.fspath(path))}?{options}"
    conn = sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None)
    try:
        conn.execute("BEGIN")
        try:
            return read(conn)
        finally:
            conn.execute("COMMIT")
    finally:
        conn.close()


def read_only_snapshot(path: Path, prefix: str) -> Snapshot:
    """One snapshot of the store at ``path``, read without writing anything.

    Blocking: run it on a worker thread, never on the event loop.

    Raises:
        StoreUnavailable: there is no database at ``path`` ("no cluster at
            PATH"), or it cannot be read (not a shoal store, no permission).
    """
    return _read_only(path, lambda conn: snapshot_in(conn, prefix))


def read_only_records(path: Path, kind: str, limit: int) -> list[Record]:
    """The newest ``limit`` durable records of ``kind`` at ``path``, newest
    first, read without writing anything (a database older than the records
    table has none). Blocking, like :func:`read_only_snapshot`.

    Raises:
        StoreUnavailable: as for :func:`read_only_snapshot`.
    """
    return _read_only(path, lambda conn: records_in(conn, kind, limit))


def _read_only(path: Path, read: Callable[[sqlite3.Connection], _T]) -> _T:
    path = path.absolute()
    try:
        if not path.is_file():
            raise StoreUnavailable(f"no cluster at {path}")
        for _ in range(_ATTEMPTS):
            before = _identity(path)
            if before is None:
                break
            result = _read(path, read, "mode=ro&immutable=1")
            if _identity(path) == before:
                return result
        return _read(path, read, "mode=ro")
    except (sqlite3.Error, OSError) as exc:
        raise StoreUnavailable(f"sqlite store {path}: cannot read it: {exc}") from exc
