"""A node replicates only the scopes it uses, on SQLite and on etcd.

A node follows ``"default"`` and every scope it opened with
``node.scope(name)``; the store never sends it another scope's keys, so it
decodes and holds none of them. Opening a scope later loads its whole
membership (a snapshot) and then follows it live from that snapshot's
revision, with no gap. What the node was sent is counted by a store wrapper
(the keys each snapshot and watch handed over), not inferred from timing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import msgpack
import pytest

import shoal
from shoal.membership.keys import bucket_of, scope_prefix
from shoal.store import Changes, MemoryStore, open_store
from shoal.store.base import RECORD_KEEP, Record, Session, Snapshot, Store, WatchItem
from shoal.testing.cluster import wait_until
from shoal.testing.etcd_server import EtcdCluster, start_etcd

SECRET = "scopes-followed-test-secret-0123456789"
WAIT = 10.0


class Idle(shoal.GenServer):
    pass


class Counting:
    """A store that counts, per scope, the membership keys it hands over."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.keys: Counter[str] = Counter()  # scope -> keys handed over
        self.prefixes: list[str] = []  # every prefix snapshotted or watched

    def _count(self, keys: Any) -> None:
        for key in keys:
            if key.startswith("scopes/"):
                self.keys[unquote(key.split("/")[1])] += 1

    async def open_session(self, name: str, info: bytes, ttl: float) -> Session:
        return await self.inner.open_session(name, info, ttl)

    async def snapshot(self, prefix: str) -> Snapshot:
        self.prefixes.append(prefix)
        snapshot = await self.inner.snapshot(prefix)
        self._count(snapshot.entries)
        return snapshot

    async def watch(self, prefix: str, revision: int) -> AsyncIterator[WatchItem]:
        self.prefixes.append(prefix)
        async for item in self.inner.watch(prefix, revision):
            if isinstance(item, Changes):
                self._count(e.key for e in item.events)
            else:
                self._count(item.snapshot.entries)
            yield item

    async def append_record(self, kind: str, value: bytes, *, keep: int = RECORD_KEEP) -> int:
        return await self.inner.append_record(kind, value, keep=keep)

    async def records(self, kind: str, limit: int) -> list[Record]:
        return await self.inner.records(kind, limit)

    async def probe(self) -> None:
        await self.inner.probe()

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with start_etcd() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "etcd"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/cluster.db"
    cluster: EtcdCluster = request.getfixturevalue("etcd")
    return cluster.url(cluster=f"scopes-{uuid.uuid4().hex[:12]}")


def _sorted(pids: Sequence[shoal.Pid]) -> list[shoal.Pid]:
    return sorted(pids, key=lambda p: (p.node, p.creation, p.serial))


async def test_a_node_holds_and_receives_nothing_of_a_scope_it_never_opened(
        store_url: str) -> None:
    spy = Counting(open_store(store_url))
    try:
        async with shoal.Node("a", store=store_url, secret=SECRET) as a, \
                shoal.Node("b", store=spy, secret=SECRET) as b:
            used, other = await a.spawn(Idle), await a.spawn(Idle)
            await a.scope("s2").join("g", [other, other])
            await a.scope("s2").join("h", used)
            await a.groups.join("g", used)
            await a.groups.sync(timeout=WAIT)
            await wait_until(lambda: b.groups.get_members("g") == [used], timeout=WAIT,
                             what="a's default-scope member at b")
            assert b.followed_scopes() == ["default"]
            # b's whole table: the one default-scope membership, nothing of s2.
            assert b.statistics().memberships == 1 and b.statistics().groups == 1
            assert spy.keys["s2"] == 0 and spy.keys["default"] >= 1
            assert not any(p.startswith(scope_prefix("s2")) or p == ""
                           for p in spy.prefixes), spy.prefixes
    finally:
        await spy.close()


async def test_a_scope_opened_later_gets_its_whole_membership_then_live_changes(
        store_url: str) -> None:
    async with shoal.Node("a", store=store_url, secret=SECRET) as a, \
            shoal.Node("b", store=store_url, secret=SECRET) as b:
        s2 = a.scope("s2")
        before = [await a.spawn(Idle) for _ in range(70)]  # more than one bucket
        await s2.join("g", before)
        await s2.sync(timeout=WAIT)
        assert "s2" not in b.followed_scopes()

        # Joins and leaves go on while b opens the scope: whatever its
        # snapshot's revision, the watch from it must carry the rest (no gap).
        during = [await a.spawn(Idle) for _ in range(40)]

        async def churn() -> None:
            for pid in during:
                await s2.join("g", pid)
                await s2.leave("g", before[pid.serial % len(before)])
                await asyncio.sleep(0)

        churning = asyncio.create_task(churn())
        seen = await b.open_scope("s2", timeout=WAIT)
        # Its whole membership as of some revision at once, not a part of it:
        # the members the churn never removes (spread over both of the
        # group's buckets) are all there, whatever the revision, and nothing
        # but a.'s members is. (How many churned changes the snapshot holds
        # depends on how the writer batched them.)
        left = {before[pid.serial % len(before)] for pid in during}
        kept = set(before) - left
        assert len({bucket_of(pid.serial) for pid in kept}) == 2
        members = set(seen.get_members("g"))
        assert kept <= members
        assert members <= set(before) | set(during)
        await churning
        await s2.sync(timeout=WAIT)
        await wait_until(lambda: _sorted(seen.get_members("g")) == _sorted(s2.get_members("g")),
                         timeout=WAIT, what="b's view of s2 equal to a's")

        late = await a.spawn(Idle)
        await s2.join("h", late)
        await wait_until(lambda: seen.get_members("h") == [late], timeout=WAIT,
                         what="a live join in s2 at b")
        assert b.followed_scopes() == ["default", "s2"]
        assert await b.open_scope("s2") is seen  # already loaded: at once


async def test_a_scope_opened_before_start_is_loaded_by_start(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", store=url, secret=SECRET) as a:
        pid = await a.spawn(Idle)
        await a.scope("jobs").join("w", pid)
        await a.scope("jobs").sync(timeout=WAIT)
        b = shoal.Node("b", store=url, secret=SECRET)
        jobs = b.scope("jobs")
        async with b:
            assert jobs.get_members("w") == [pid]  # in the start-up snapshot


async def test_a_peer_of_the_older_layout_is_named_in_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    # A node of the release before layout 2 writes members/...: this node
    # cannot read them, and says so once per such incarnation.
    caplog.set_level(logging.WARNING, logger="shoal")
    store = MemoryStore()
    old_info = msgpack.packb({"name": "old", "creation": 7, "host": "127.0.0.1", "port": 9})
    async with shoal.Node("new", store=store, listen=None) as new:
        old = await store.another_client().open_session("old", old_info, 5.0)
        await wait_until(lambda: new.cluster_view.peer("old") is not None, timeout=WAIT,
                         what="the older node's record at the new node")
        warned = [r.getMessage() for r in caplog.records if "layout" in r.getMessage()]
        assert len(warned) == 1 and "peer old (creation 7)" in warned[0], warned
        await old.close()
