"""How a node writes its own memberships to the store.

A store whose writes can be held and made to fail shows what users rely
on: a change is never overtaken by an older write of the same key, `sync()`
returns only once every change is in the store, and a store that fails for
a while loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runtime_servers import Probe

import shoal
from shoal.errors import StoreUnavailable
from shoal.membership.keys import bucket_of, decode_members, member_key
from shoal.runtime.writer import MAX_WRITES
from shoal.store import MemorySession, MemoryStore
from shoal.store.base import Op, Put
from shoal.testing.cluster import wait_until

WAIT = 5.0


class _Write:
    """One ``apply`` seen by the store, held until released."""

    def __init__(self, ops: Sequence[Op]) -> None:
        self.keys = {op.key for op in ops}
        self.release = asyncio.Event()
        self.done = asyncio.Event()


class HeldStore(MemoryStore):
    """A memory store whose session writes wait for the test's release
    (when ``hold`` is set) and fail with StoreUnavailable ``fail`` times."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.fail = 0
        self.fail_with: type[Exception] = StoreUnavailable
        self.writes: list[_Write] = []
        self.in_flight: list[_Write] = []
        self.most_in_flight = 0
        self.overlaps: list[set[str]] = []  # keys written by two writes at once

    async def open_session(self, name: str, info: bytes, ttl: float) -> MemorySession:
        session = await super().open_session(name, info, ttl)
        apply = session.apply

        async def held_apply(ops: Sequence[Op]) -> int:
            write = _Write(ops)
            self.writes.append(write)
            for other in self.in_flight:
                if other.keys & write.keys:
                    self.overlaps.append(other.keys & write.keys)
            self.in_flight.append(write)
            self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
            try:
                if self.fail:
                    self.fail -= 1
                    raise self.fail_with("injected: the store is down")
                if self.hold:
                    await write.release.wait()
                return await apply(ops)
            finally:
                self.in_flight.remove(write)
                write.done.set()

        session.apply = held_apply  # type: ignore[method-assign]
        return session

    async def stored(self, node: str) -> dict[str, dict[int, int]]:
        """Every membership bucket of ``node`` in the store, decoded."""
        snapshot = await self.snapshot("scopes/default/")
        out = {}
        for key, entry in snapshot.entries.items():
            if key.split("/")[2] != node:
                continue
            counts = decode_members(int(key.rsplit("/", 1)[1]), entry.value)
            assert counts, key
            out[key] = counts
        return out


def _key(pid: shoal.Pid, group: str) -> str:
    return member_key(pid.node, pid.creation, "default", group, bucket_of(pid.serial))


async def test_a_key_in_flight_waits_for_its_write_and_sync_waits_for_both() -> None:
    store = HeldStore()
    async with shoal.Node("w", store=store, listen=None) as node:
        pid = await node.spawn(Probe)
        store.hold = True
        await node.groups.join("a", pid)
        await wait_until(lambda: len(store.writes) == 1, what="the first write")
        first = store.writes[0]
        assert first.keys == {_key(pid, "a")}

        # While "a" is in flight: join "a" again (same key) and "b" (another key).
        await node.groups.join("a", pid)
        await node.groups.join("b", pid)
        await wait_until(lambda: len(store.writes) == 2, what="the second write")
        second = store.writes[1]
        assert second.keys == {_key(pid, "b")}  # "a" waits: it is in flight

        sync = asyncio.ensure_future(node.groups.sync(WAIT))
        second.release.set()
        await second.done.wait()
        for _ in range(5):
            await asyncio.sleep(0)  # let every ready callback run; nothing is timed
        assert not sync.done()  # the first write (and the second join of "a") are out

        store.hold = False
        first.release.set()
        await asyncio.wait_for(sync, WAIT)
        assert [w.keys for w in store.writes[2:]] == [{_key(pid, "a")}]
        assert await store.stored("w") == {_key(pid, "a"): {pid.serial: 2},
                                           _key(pid, "b"): {pid.serial: 1}}


async def test_writes_that_fail_are_retried_and_nothing_is_lost(
        caplog: pytest.LogCaptureFixture) -> None:
    store = HeldStore()
    async with shoal.Node("w", store=store, listen=None) as node:
        pids = [await node.spawn(Probe) for _ in range(3)]
        store.fail = 3
        for pid in pids:
            await node.groups.join("g", pid)
        await node.groups.sync(WAIT)
        assert store.fail == 0
        stored = await store.stored("w")
        assert {s for counts in stored.values() for s in counts} == {p.serial for p in pids}
    assert "membership write failed" in caplog.text


async def test_an_unexpected_write_error_is_logged_and_retried_not_dropped(
        caplog: pytest.LogCaptureFixture) -> None:
    store = HeldStore()
    async with shoal.Node("w", store=store, listen=None) as node:
        pid = await node.spawn(Probe)
        store.fail, store.fail_with = 1, RuntimeError
        await node.groups.join("g", pid)
        await node.groups.sync(WAIT)
        assert await store.stored("w") == {_key(pid, "g"): {pid.serial: 1}}
    [record] = [r for r in caplog.records if "membership write failed" in r.getMessage()]
    assert record.levelno == logging.ERROR and record.exc_info is not None


async def test_sync_after_the_session_ended_waits_for_the_memberships_to_be_rewritten() -> None:
    """The session ends (revoked) after a join was written: its keys are gone
    from the store. sync() must not report the changes as stored until the
    new session holds them again, whether or not the node noticed the end."""
    store = HeldStore()
    async with shoal.Node("w", store=store, listen=None) as node:
        pid = await node.spawn(Probe)
        await node.groups.join("a", pid)
        await node.groups.sync(WAIT)
        assert node._replication is not None and node._replication.session is not None
        store.fail = 2  # the rewrite fails twice before it lands
        store._b.end(node._replication.session, "revoked")  # type: ignore[arg-type]
        assert await store.stored("w") == {}
        await node.groups.sync(WAIT)
        assert await store.stored("w") == {_key(pid, "a"): {pid.serial: 1}}


async def test_sync_times_out_while_the_store_is_down_and_the_changes_stay_queued() -> None:
    store = HeldStore()
    async with shoal.Node("w", store=store, listen=None) as node:
        pid = await node.spawn(Probe)
        store.fail = 10**6
        await node.groups.join("g", pid)
        with pytest.raises(shoal.CallTimeout):
            await node.groups.sync(0.3)
        assert node.groups.get_members("g") == [pid]  # the local view serves on
        store.fail = 0
        await node.groups.sync(WAIT)  # backoff is at most 2 s
        assert await store.stored("w") == {_key(pid, "g"): {pid.serial: 1}}


async def test_many_writes_landing_in_any_order_leave_the_store_equal_to_the_node() -> None:
    rng = random.Random(7)
    store = HeldStore()
    async with shoal.Node("w", store=store, listen=None) as node:
        pids = [await node.spawn(Probe) for _ in range(150)]
        store.hold = True
        released = 0

        async def release_some() -> None:
            nonlocal released
            while True:
                pending = [w for w in store.writes if not w.release.is_set()]
                if pending:
                    rng.choice(pending).release.set()
                    released += 1
                await asyncio.sleep(0)

        releaser = asyncio.ensure_future(release_some())
        try:
            for step in range(600):
                pid = rng.choice(pids)
                group = rng.choice("abcde")
                if rng.random() < 0.6 or pid not in node.groups.get_members(group):
                    await node.groups.join(group, pid)
                else:
                    await node.groups.leave(group, pid)
                if step % 7 == 0:
                    await asyncio.sleep(0)
            await node.groups.sync(WAIT)
        finally:
            releaser.cancel()
            store.hold = False
            for write in store.writes:
                write.release.set()
        want: dict[str, dict[int, int]] = {}
        for pid in pids:
            for scope, group in node.groups_of(pid):
                key = member_key("w", pid.creation, scope, group, bucket_of(pid.serial))
                joins = node.scope(scope).get_members(group).count(pid)
                want.setdefault(key, {})[pid.serial] = joins
        assert await store.stored("w") == want
        assert 1 < store.most_in_flight <= MAX_WRITES  # pipelined, and bounded
        assert store.overlaps == []  # never two writes of one key at once
        assert released > 4


async def test_a_session_lost_under_the_writer_is_reopened_and_every_bucket_rewritten(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    store = HeldStore()
    async with shoal.Node("w", store=store, listen=None) as node:
        pids = [await node.spawn(Probe) for _ in range(70)]  # two buckets
        for pid in pids:
            await node.groups.join("g", pid)
        await node.groups.sync(WAIT)
        assert node._replication is not None
        old = node._replication.session
        assert old is not None
        store._b.end(old, "revoked")  # type: ignore[arg-type]  # as etcd revoking a lease
        await wait_until(lambda: node._replication is not None
                         and node._replication.session is not old, what="a new session")
        await node.groups.sync(WAIT)
        stored = await store.stored("w")
        assert {s for counts in stored.values() for s in counts} == {p.serial for p in pids}
        assert len(stored) == len({bucket_of(p.serial) for p in pids})
    assert "memberships rewritten" in caplog.text


async def test_a_peers_bucket_changes_reach_the_view_as_joins_and_leaves() -> None:
    store = MemoryStore()
    async with shoal.Node("a", store=store, listen=None) as a, \
            shoal.Node("b", store=store.another_client(), listen=None) as b:
        sub = b.groups.subscribe("g")
        pids = [await a.spawn(Probe) for _ in range(100)]
        for pid in pids:
            await a.groups.join("g", pid)
        await a.groups.join("g", pids[0])  # twice
        await a.groups.sync(WAIT)
        await wait_until(lambda: len(b.groups.get_members("g")) == 101, what="b's view")
        for pid in pids[::2]:
            await a.groups.leave("g", pid)
        await a.groups.sync(WAIT)
        want = sorted([*pids[1::2], pids[0]])
        await wait_until(lambda: sorted(b.groups.get_members("g")) == want, what="the leaves")
        joined = left = 0
        while joined - left != len(want):
            event = await asyncio.wait_for(sub.get(), WAIT)
            if event.kind == "join":
                joined += len(event.pids)
            else:
                left += len(event.pids)
                assert event.reason == "left" or event.reason == "nodedown"
        assert (joined, left) == (101, 50)


async def test_garbage_under_members_is_logged_and_never_becomes_a_member(
        caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    async with shoal.Node("b", store=store, listen=None) as b:
        # A node "a" (creation 1) as far as b can tell, at an address nobody serves.
        info = msgpack.packb({"name": "a", "creation": 1, "host": "127.0.0.1", "port": 9})
        other = await store.another_client().open_session("a", info, 5.0)
        revision = await other.apply([
            Put(key=member_key("a", 1, "default", "g", 0), value=b"\xc1"),
            Put(key="scopes/default/a/1/g/not-a-bucket", value=b"\x90"),
            Put(key=member_key("a", 1, "default", "h", 0), value=msgpack.packb([99])),
            Put(key=member_key("a", 1, "default", "ok", 0), value=msgpack.packb([3])),
        ])
        stream = b._replication.following.stream("default") if b._replication else None
        await wait_until(lambda: stream is not None and stream.revision >= revision,
                         what="b to read them")
        assert b.groups.which_groups() == ["ok"]
        assert b.groups.get_members("ok") == [shoal.Pid("a", 1, 3)]
        await other.close()
    assert "malformed membership value" in caplog.text
    assert "malformed membership key" in caplog.text


async def test_a_failure_while_applying_changes_rebuilds_the_view_and_keeps_following(
        caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    async with shoal.Node("a", store=store, listen=None) as a, \
            shoal.Node("b", store=store.another_client(), listen=None) as b:
        assert b._replication is not None
        following = b._replication.following
        apply = following._apply_member
        broken = [True]

        def apply_once_broken(key: str, value: bytes | None, revision: int,
                              foreign: list[str]) -> None:
            if broken[0]:
                broken[0] = False
                raise RuntimeError("injected bug in apply")
            apply(key, value, revision, foreign)

        following._apply_member = apply_once_broken  # type: ignore[method-assign]
        first = await a.spawn(Probe)
        await a.groups.join("g", first)
        await wait_until(lambda: b.groups.get_members("g") == [first],
                         what="the view rebuilt after the failure")
        second = await a.spawn(Probe)
        await a.groups.join("g", second)
        await wait_until(lambda: sorted(b.groups.get_members("g")) == sorted([first, second]),
                         what="b to keep following")
    assert "applying the store's changes failed" in caplog.text


write_steps = st.lists(st.one_of(
    st.tuples(st.just("join"), st.integers(0, 69), st.sampled_from("ab")),
    st.tuples(st.just("leave"), st.integers(0, 69), st.sampled_from("ab")),
    st.tuples(st.just("kill"), st.integers(0, 69)),
    st.tuples(st.just("fail")),
    st.tuples(st.just("end_session")),
    st.tuples(st.just("turn")),
), min_size=5, max_size=60)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=write_steps)
async def test_whatever_happens_the_store_ends_equal_to_the_nodes_own_view(
        steps: list[tuple[Any, ...]]) -> None:
    """Joins, leaves and exits of processes in two buckets, interleaved with
    failed writes, a lost session and loop turns (writes in flight): once
    synced, the store holds exactly the node's memberships."""
    store = HeldStore()
    async with shoal.Node("w", store=store, listen=None) as node:
        pids = [await node.spawn(Probe) for _ in range(70)]  # serials in two buckets
        for step in steps:
            kind = step[0]
            if kind in ("join", "leave") and node.is_alive(pids[step[1]]):
                await getattr(node.groups, kind)(step[2], pids[step[1]])
            elif kind == "kill" and node.is_alive(pids[step[1]]):
                node.kill(pids[step[1]])
            elif kind == "fail":
                store.fail = 1
            elif kind == "end_session":
                assert node._replication is not None and node._replication.session is not None
                store._b.end(node._replication.session, "revoked")  # type: ignore[arg-type]
            else:
                await asyncio.sleep(0)  # one loop turn: writes start and land meanwhile
        await node.groups.sync(10.0)
        want: dict[str, dict[int, int]] = {}
        for pid in node.groups.get_local_members("a") + node.groups.get_local_members("b"):
            for scope, group in node.groups_of(pid):
                key = member_key("w", pid.creation, scope, group, bucket_of(pid.serial))
                joins = node.scope(scope).get_members(group).count(pid)
                want.setdefault(key, {})[pid.serial] = joins
        assert await store.stored("w") == want
        assert store.overlaps == []


async def test_a_store_outage_is_logged_once_as_it_starts_and_once_as_it_ends(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    store = HeldStore()
    async with shoal.Node("w", store=store, listen=None) as node:
        pid = await node.spawn(Probe)
        store.fail = 4  # four attempts fail, the fifth lands
        await node.groups.join("g", pid)
        await node.groups.sync(WAIT)
        assert store.fail == 0
    lines = [(r.levelno, r.getMessage()) for r in caplog.records
             if r.levelno >= logging.INFO and "membership write" in r.getMessage()]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO], lines
    assert "membership write failed (injected: the store is down)" in lines[0][1]
    assert "the store is back: membership write works again" in lines[1][1]
    assert "4 failed attempts; last error: injected: the store is down" in lines[1][1]
