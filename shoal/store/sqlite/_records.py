"""Durable records in a SQLite store (the store contract's Rule 7).

Owns the ``records`` table: an append-only log per kind, bound to no session
(a session end never touches it) and never part of a snapshot or the change
log, so watchers do not see it and revisions do not move.

Rules:

- Rule 1: ``seq`` is the table's ``AUTOINCREMENT`` rowid: it rises across
  all kinds and is never reused, even after the rows before it are pruned.
- Rule 2: an append inserts and prunes its kind down to the newest ``keep``
  rows in the caller's write transaction (bounded by ``keep``).
- Rule 3: a database made before the table existed (schema 1) gains it when
  a writer opens it (``CREATE TABLE IF NOT EXISTS`` in the schema, then
  ``meta.schema`` becomes 2); a read-only reader of such a database finds
  no records instead of failing.

Everything here is synchronous, called on the store's worker thread or by
the read-only reader.
"""

from __future__ import annotations

import sqlite3

from shoal.store.base import Record

__all__ = ["RECORDS_SCHEMA", "append_in", "records_in"]

RECORDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, value BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS records_kind ON records(kind, seq);
UPDATE meta SET v = 2 WHERE k = 'schema' AND v < 2;
"""
"""Schema 2: the records table (Rule 3). Run after the schema-1 statements."""


def append_in(conn: sqlite3.Connection, kind: str, value: bytes, keep: int) -> int:
    """Append one record and prune its kind to ``keep`` rows (Rule 2);
    return its seq. Call inside a write transaction."""
    cursor = conn.execute("INSERT INTO records (kind, value) VALUES (?, ?)", (kind, value))
    seq = cursor.lastrowid
    assert seq is not None  # an INSERT into a rowid table always sets it
    conn.execute(
        "DELETE FROM records WHERE kind = ? AND seq <= (SELECT seq FROM records "
        "WHERE kind = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
        (kind, kind, keep),
    )
    return int(seq)


def records_in(conn: sqlite3.Connection, kind: str, limit: int) -> list[Record]:
    """The newest ``limit`` records of ``kind``, newest first; none in a
    database without the table (Rule 3)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'"
    ).fetchone()
    if exists is None:
        return []
    rows = conn.execute(
        "SELECT seq, value FROM records WHERE kind = ? ORDER BY seq DESC LIMIT ?",
        (kind, limit),
    ).fetchall()
    return [Record(kind=kind, seq=int(seq), value=bytes(value)) for seq, value in rows]
