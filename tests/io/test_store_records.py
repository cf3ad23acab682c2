"""Durable records beyond the contract suite: a SQLite database made before
records existed is migrated by its first writer and read (as empty) by a
read-only reader; the default retention bound holds; the audit log on etcd
is read back by ``shoal audit`` and is not part of any snapshot."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from pathlib import Path

import pytest

from shoal.cli import audit, main
from shoal.errors import StoreUnavailable
from shoal.store import MemoryStore, SqliteStore, read_records, read_snapshot
from shoal.store.base import RECORD_KEEP
from shoal.store.etcd import EtcdStore
from shoal.testing.etcd_server import start_etcd

# The schema of the first released SQLite store (meta.schema = 1), verbatim.
_SCHEMA_1 = """
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


def _old_database(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(_SCHEMA_1)
        conn.execute("INSERT INTO entries VALUES ('groups/g/old', x'01', 'gone', 7)")
        conn.execute("UPDATE meta SET v = 7 WHERE k = 'revision'")
    finally:
        conn.close()


def _schema_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()[0])
    finally:
        conn.close()


async def test_a_schema_1_database_is_read_then_migrated_keeping_its_data(
    tmp_path: Path,
) -> None:
    db = tmp_path / "cluster.db"
    _old_database(db)
    url = f"sqlite://{db}"
    assert await read_records(url, "audit", 10) == []  # read-only: no table, no records
    assert _schema_version(db) == 1
    async with SqliteStore(db) as store:
        seq = await store.append_record("audit", b'{"what": "x"}')
        snap = await store.snapshot("")
    assert _schema_version(db) == 2
    assert set(snap.entries) == {"groups/g/old"} and snap.revision == 7
    assert [(r.seq, r.value) for r in await read_records(url, "audit", 10)] == [
        (seq, b'{"what": "x"}')]
    assert set((await read_snapshot(url)).entries) == {"groups/g/old"}


async def test_reading_records_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "none" / "cluster.db"
    with pytest.raises(StoreUnavailable, match="no cluster at"):
        await read_records(f"sqlite://{db}", "audit", 5)
    assert not db.parent.exists()


async def test_the_default_retention_keeps_the_newest_records() -> None:
    store = MemoryStore()
    try:
        for i in range(RECORD_KEEP + 5):
            await store.append_record("audit", str(i).encode())
        records = await store.records("audit", RECORD_KEEP + 5)
        assert len(records) == RECORD_KEEP
        assert records[0].value == str(RECORD_KEEP + 4).encode()
        assert records[-1].value == b"5"
    finally:
        await store.close()


async def test_the_audit_log_on_etcd_is_read_by_shoal_audit(
        capsys: pytest.CaptureFixture[str]) -> None:
    with start_etcd() as etcd:
        url = f"etcd://{etcd.endpoint}?cluster=audit-{uuid.uuid4().hex[:8]}"
        first = await audit.record(url, None, command="drain", args={"node": "n1"},
                                   outcome="done", evidence={"processes": 2})
        second = await audit.record(url, None, command="evict", args={"group": "g"},
                                    outcome="refused", why="would leave g empty")
        assert await asyncio.to_thread(main, ["audit", "--store", url, "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [(r["seq"], r["command"], r["outcome"]) for r in rows] == [
            (second, "evict", "refused"), (first, "drain", "done")]
        assert rows[1]["evidence"] == {"processes": 2}
        store = EtcdStore(etcd.endpoints, cluster=url.rsplit("=", 1)[1])
        try:
            assert (await store.snapshot("")).entries == {}  # records are not keys
        finally:
            await store.close()
