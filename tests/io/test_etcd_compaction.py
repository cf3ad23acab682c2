"""etcd's history stays bounded: shoal's compaction duty, on a real etcd.

One session at a time holds the duty (a key bound to its lease) and compacts
the revisions older than the retention; a watcher whose position was
compacted re-syncs from a fresh snapshot and loses nothing. Duties are driven
by hand (``tick``) where the order matters, with an interval long enough that
their own timers never fire during the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator

import pytest

import shoal
from shoal.errors import BadArgument, ConfigError
from shoal.runtime.following import Stream
from shoal.store.base import Delete, Put, Snapshot
from shoal.store.etcd import EtcdSession, EtcdStore
from shoal.store.etcd._compact import CompactionDuty, CompactionPolicy, RevisionSamples
from shoal.testing.cluster import wait_until
from shoal.testing.etcd_server import EtcdCluster, start_etcd
from shoal.testing.view import WatchFollower

WAIT = 10.0  # bound on every wait, seconds
SECRET = "compaction-test-secret-0123456789"
MANUAL = 3600.0  # a compaction interval whose timer never fires in a test


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with start_etcd() as cluster:
        yield cluster


def _duty(session: EtcdSession) -> CompactionDuty:
    assert session.compaction is not None
    return session.compaction


@pytest.mark.parametrize(("samples", "now", "expected"), [
    ([], 100.0, None),                               # nothing seen yet
    ([(0.0, 10)], 299.0, None),                      # not old enough
    ([(0.0, 10)], 300.0, 10),                        # exactly the retention
    ([(0.0, 10), (60.0, 20), (120.0, 30)], 400.0, 20),  # the newest old enough
    ([(0.0, 10), (60.0, 20), (350.0, 30)], 400.0, 20),
])
def test_the_holder_compacts_only_what_is_older_than_the_retention(
        samples: list[tuple[float, int]], now: float, expected: int | None) -> None:
    kept = RevisionSamples(retention=300.0, limit=10)
    for at, revision in samples:
        kept.add(at, revision)
    assert kept.target(now) == expected


def test_a_revision_already_compacted_to_is_not_compacted_again_and_samples_stay_bounded(
        ) -> None:
    kept = RevisionSamples(retention=10.0, limit=4)
    for tick in range(100):
        kept.add(float(tick), tick * 5)
        target = kept.target(float(tick))
        if target is not None:
            assert target == (tick - 10) * 5  # the newest sample 10 s old
            kept.compacted = target
        assert kept.target(float(tick)) is None
    assert len(kept) <= 4


@pytest.mark.parametrize(("interval", "retention", "argument"), [
    (0.0, 300.0, "compaction_interval"),
    (-1.0, 300.0, "compaction_interval"),
    (float("inf"), 300.0, "compaction_interval"),
    (60.0, -1.0, "compaction_retention"),
    (60.0, float("nan"), "compaction_retention"),
])
def test_a_bad_compaction_policy_names_its_argument(
        interval: float, retention: float, argument: str) -> None:
    with pytest.raises(BadArgument) as caught:
        CompactionPolicy(interval, retention)
    assert argument in str(caught.value)


async def test_compaction_url_options_are_checked_and_zero_turns_it_off(
        etcd: EtcdCluster) -> None:
    store = EtcdStore.from_url(
        etcd.url(f"off-{uuid.uuid4().hex[:8]}") + "&compaction_interval=0")
    try:
        session = await store.open_session("n", b"", 5.0)
        assert session.compaction is None
    finally:
        await store.close()
    for bad in ("compaction_interval=-1", "compaction_retention=soon"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            EtcdStore.from_url(f"etcd://127.0.0.1:1?{bad}")


async def test_the_duty_is_held_by_exactly_one_session_and_moves_when_its_holder_stops(
        etcd: EtcdCluster) -> None:
    cluster = f"duty-{uuid.uuid4().hex[:8]}"
    async with contextlib.AsyncExitStack() as stack:
        stores = [EtcdStore(etcd.endpoints, cluster=cluster, compaction_interval=MANUAL,
                            compaction_retention=0.0) for _ in range(3)]
        for store in stores:
            stack.push_async_callback(store.close)
        sessions = [await s.open_session(f"n{i}", b"", 5.0) for i, s in enumerate(stores)]
        await sessions[0].apply([Put(key="k/0", value=b"v")])
        for _ in range(3):  # every session looks, three times over: one holder, the same
            for session in sessions:
                await _duty(session).tick()
            assert [_duty(s).holding for s in sessions] == [True, False, False]
        # Only the holder compacts (retention 0: up to the revision it looked at).
        assert _duty(sessions[0]).compacted > 0
        assert [_duty(s).compacted for s in sessions[1:]] == [0, 0]
        written = await sessions[1].apply([Put(key="k/1", value=b"v")])
        assert await asyncio.to_thread(etcd.history_kept, written)
        # The duty is invisible to the store's readers.
        assert "_shoal/compactor" not in (await stores[1].snapshot("")).entries

        await sessions[0].close()  # the holder stops: its lease takes the key along
        assert not _duty(sessions[0]).holding
        for session in sessions[1:]:
            await _duty(session).tick()
        assert [_duty(s).holding for s in sessions[1:]] == [True, False]
        # The new holder compacts past the revision the old one left.
        assert _duty(sessions[1]).compacted >= written
        assert not await asyncio.to_thread(etcd.history_kept, written - 1)


async def test_a_watcher_behind_a_compaction_resyncs_and_its_view_equals_the_stores(
        etcd: EtcdCluster) -> None:
    cluster = f"behind-{uuid.uuid4().hex[:8]}"
    async with contextlib.AsyncExitStack() as stack:
        store = EtcdStore(etcd.endpoints, cluster=cluster, compaction_interval=MANUAL,
                          compaction_retention=0.0)
        stack.push_async_callback(store.close)
        session = await store.open_session("writer", b"", 5.0)
        await session.apply([Put(key=f"m/{i}", value=b"old") for i in range(20)])
        behind = await store.snapshot("m/")  # a watcher's position, then it lags
        for round_ in range(10):
            await session.apply([Put(key=f"m/{i}", value=f"r{round_}".encode())
                                 for i in range(round_, 20)])
            await session.apply([Delete(key=f"m/{round_}")])
        await _duty(session).tick()  # compacts everything the watcher still needed
        assert _duty(session).compacted > behind.revision + 1
        assert not await asyncio.to_thread(etcd.history_kept, behind.revision + 1)

        follower = WatchFollower(store, "m/", behind.revision, behind.entries)
        stack.push_async_callback(follower.aclose)
        await follower.wait_until(lambda: follower.resyncs == 1, "the resync", WAIT)
        assert follower.view == dict((await store.snapshot("m/")).entries)
        # It follows on from the fresh snapshot: later changes all arrive.
        await session.apply([Put(key="m/new", value=b"n"), Delete(key="m/19")])
        last = await session.apply([Put(key="m/15", value=b"changed")])
        await follower.wait_revision(last, WAIT)
        assert follower.view == dict((await store.snapshot("m/")).entries)
        assert follower.resyncs == 1


async def test_fifty_rolling_reregistrations_of_twenty_nodes_keep_etcds_database_bounded(
        ) -> None:
    # Each of 20 nodes (a store client, as a node's) re-registers 50 times,
    # one node at a time: close the session, open a new one, write 20 member
    # keys of 1 KiB. Without compaction etcd's database file grows about
    # 600 KiB per round, to about 30 MB; with the duty (retention 0.5 s)
    # it levels off under 10 MB on this host.
    nodes, rounds, members = 20, 50, 20
    value = b"m" * 1024
    with start_etcd() as etcd:
        base, _ = await asyncio.to_thread(etcd.db_size)
        async with contextlib.AsyncExitStack() as stack:
            stores = [EtcdStore(etcd.endpoints, cluster="rolling", compaction_interval=0.1,
                                compaction_retention=0.5) for _ in range(nodes)]
            for store in stores:
                stack.push_async_callback(store.close)

            async def register(node: int) -> EtcdSession:
                session = await stores[node].open_session(f"n{node}", b"info", 5.0)
                creation = time.time_ns()
                await session.apply([Put(key=f"scopes/default/n{node}/{creation}/g/{k}",
                                         value=value) for k in range(members)])
                return session

            sessions = list(await asyncio.gather(*(register(n) for n in range(nodes))))
            first = (await stores[0].snapshot("")).revision
            for _ in range(rounds):
                for node in range(nodes):
                    await sessions[node].close()
                    sessions[node] = await register(node)
            size, _ = await asyncio.to_thread(etcd.db_size)
            assert size - base < 15_000_000, f"etcd's database grew by {size - base} bytes"
            assert not await asyncio.to_thread(etcd.history_kept, first)
            await wait_until(lambda: sum(_duty(s).holding for s in sessions) == 1,
                             timeout=WAIT, what="one holder of the duty")
            snapshot = await stores[0].snapshot("scopes/")
            assert len(snapshot.entries) == nodes * members


class Idle(shoal.GenServer):
    pass


async def test_a_node_whose_watch_position_was_compacted_resyncs_and_sees_every_member(
        ) -> None:
    # Node b reaches etcd through member 0 only. While member 0 is down, a
    # changes its memberships and compacts past b's position; when member 0
    # is back, b's watch finds its revisions gone, re-syncs from a snapshot
    # and sees exactly a's members: nothing lost, nothing left over.
    with start_etcd(members=3) as etcd:
        options = "cluster=resync&compaction_interval=3600&compaction_retention=0"
        a_url = "etcd://" + ",".join(etcd.endpoints[1:]) + "?" + options
        b_url = f"etcd://{etcd.endpoints[0]}?cluster=resync&compaction_interval=0"
        async with shoal.Node("a", store=a_url, secret=SECRET) as a, \
                shoal.Node("b", store=b_url, secret=SECRET, session_ttl=15.0) as b:
            pids = [await a.spawn(Idle) for _ in range(6)]
            await a.groups.join("g", pids[:3])
            await a.groups.sync(timeout=WAIT)
            await wait_until(lambda: sorted(b.groups.get_members("g")) == sorted(pids[:3]),
                             timeout=WAIT, what="a's first members at b")
            assert b._replication is not None and a._replication is not None
            following = b._replication.following
            default = following.stream("default")
            assert default is not None
            behind = default.revision
            resyncs: list[int] = []  # revisions of the snapshots b's view was replaced with
            replace = following._resync

            async def counted(stream: Stream, snapshot: Snapshot) -> None:
                if stream is default:
                    resyncs.append(snapshot.revision)
                await replace(stream, snapshot)
            following._resync = counted  # type: ignore[method-assign]
            await asyncio.to_thread(etcd.stop_member, 0)
            await a.groups.leave("g", pids[:2])
            await a.groups.join("g", pids[3:])
            await a.groups.join("h", pids[4:])
            await a.groups.sync(timeout=WAIT)
            assert a._replication.session is not None
            await _duty(a._replication.session).tick()  # type: ignore[arg-type]
            assert not await asyncio.to_thread(etcd.history_kept, behind + 1)
            await asyncio.to_thread(etcd.start_member, 0)
            await wait_until(
                lambda: sorted(b.groups.get_members("g")) == sorted(pids[2:])
                and sorted(b.groups.get_members("h")) == sorted(pids[4:]),
                timeout=WAIT, what="a's members now, at b")
            assert resyncs and resyncs[0] > behind, resyncs

