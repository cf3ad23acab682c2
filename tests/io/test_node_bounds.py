"""Nodes and a peer that does not read: bounded memory, Overloaded, disconnect.

Two nodes in this process share a SQLite store and talk over loopback; one
of them stops reading its connection (its socket's reading is paused, as a
hung or hostile peer would). Calls, casts and sends towards it fail
``Overloaded`` without being queued once ``max_unsent`` bytes wait. A raw
peer that floods a node with calls and never reads the replies makes the
node hold at most twice the bound before it drops the connection. Memory is
measured by the connection's statistics, not by RSS; every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from group_waits import members_seen

import shoal
from shoal.testing.hand_peer import HandPeer
from shoal.testing.registration import register_peer
from shoal.transport import PeerConnection
from shoal.wire import Call, HandshakeConfig

SECRET = b"node-bounds-test-secret-0123456789"
CLUSTER = "bounds"
BOUND = 256 * 1024
CHUNK = 64 * 1024
SLACK = CHUNK + 1024  # one frame past a check
WAIT = 5.0


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


def _connection(node: shoal.Node, peer: str) -> PeerConnection:
    manager = node._remote.manager
    assert manager is not None
    conn = manager.get(peer)
    assert conn is not None
    return conn


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[shoal.Node, shoal.Node, shoal.Pid]]:
    """Nodes "a" and "b" connected; an Echo on "b" that "a" called once."""
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", cluster=CLUSTER, store=store, secret=SECRET,
                          max_unsent=BOUND) as a, \
            shoal.Node("b", cluster=CLUSTER, store=store, secret=SECRET) as b:
        pid = await b.spawn(Echo)
        assert await a.call(pid, "hello", WAIT) == "hello"
        yield a, b, pid


async def test_calls_casts_and_sends_to_a_node_that_does_not_read_fail_overloaded(
        pair: tuple[shoal.Node, shoal.Node, shoal.Pid]) -> None:
    a, b, pid = pair
    deaf = _connection(b, "a")
    transport = deaf._transport
    assert transport is not None
    transport.pause_reading()  # "b" stops reading what "a" sends it
    towards_b = _connection(a, "b")
    refused: shoal.Overloaded | None = None
    for _ in range(2000):  # bounded: the kernel takes a few MiB at most
        try:
            a.cast(pid, b"x" * CHUNK)
        except shoal.Overloaded as exc:
            refused = exc
            break
        await asyncio.sleep(0)  # let the loop hand the frames to the socket
    assert refused is not None and refused.not_started
    assert "not reading" in str(refused)
    stats = towards_b.statistics()
    assert stats.congested and BOUND <= stats.buffered < BOUND + SLACK
    with pytest.raises(shoal.Overloaded) as call:
        await a.call(pid, "more", WAIT)
    assert call.value.not_started and call.value.limit == BOUND
    with pytest.raises(shoal.Overloaded):
        a.send(pid, "more")
    # Refused, not queued: nothing was added to what waits.
    assert towards_b.statistics().buffered == stats.buffered
    transport.resume_reading()  # it reads again: calls go through
    await asyncio.wait_for(towards_b.wait_writable(), WAIT)
    assert await a.call(pid, "again", WAIT) == "again"


class DeafCaller(HandPeer):
    """A raw peer: completes the handshake, sends calls, never reads a reply."""

    def __init__(self) -> None:
        super().__init__(HandshakeConfig(cluster=CLUSTER, node="deaf", creation=1,
                                         secret=SECRET))


async def test_a_peer_flooding_calls_without_reading_replies_is_bounded_then_dropped(
        tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("b", cluster=CLUSTER, store=store, secret=SECRET,
                          max_unsent=BOUND) as b:
        pid = await b.spawn(Echo)
        assert b.address is not None and b._store is not None
        deaf = await register_peer(b._store, "deaf", 1)  # a member, as a node is
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_connection(DeafCaller, *b.address)
        await asyncio.wait_for(peer.established.wait(), WAIT)
        assert peer.transport is not None
        peer.transport.pause_reading()
        blob = b"r" * CHUNK
        for ref in range(1, 401):  # 25 MiB of replies: more than any socket buffers
            peer.transport.write(peer.wire.send(
                Call(ref=ref, sender=None, to=pid, request=blob, timeout_ms=60_000)))
        most = 0
        deadline = loop.time() + 10 * WAIT
        while not peer.lost.is_set() and loop.time() < deadline:
            manager = b._remote.manager
            conn = manager.get("deaf") if manager is not None else None
            if conn is not None:
                most = max(most, conn.statistics().buffered)
            await asyncio.sleep(0)  # let "b" read calls and queue replies
        assert peer.lost.is_set(), "the node never dropped a peer that does not read"
        assert BOUND <= most < 2 * BOUND + SLACK
        peer.transport.close()
        assert await b.call(pid, "still serving", WAIT) == "still serving"
        await deaf.close()


def test_max_unsent_is_checked_when_the_node_is_made() -> None:
    with pytest.raises(shoal.BadArgument) as info:
        shoal.Node("n", store="memory://", max_unsent=100)
    assert info.value.argument == "max_unsent"



async def test_queue_lengths_are_kept_for_members_only_and_pruned_when_they_leave(
        pair: tuple[shoal.Node, shoal.Node, shoal.Pid]) -> None:
    a, b, pid = pair
    # A direct call to a pid in no group: its queue length is not kept.
    assert await a.call(pid, "direct", WAIT) == "direct"
    assert pid not in a.cluster_view.reported_queue_lengths()
    await b.groups.join("g", pid)
    await members_seen(a, "g", 1, WAIT)
    assert await a.groups.call("g", "member", timeout=WAIT,
                               strategy="least_loaded") == "member"
    assert a.cluster_view.reported_queue_lengths().get(pid) == 0
    await b.groups.leave("g", pid)
    await members_seen(a, "g", 0, WAIT)
    assert pid not in a.cluster_view.reported_queue_lengths()


async def test_queue_lengths_of_a_node_are_pruned_when_its_connection_is_lost(
        pair: tuple[shoal.Node, shoal.Node, shoal.Pid]) -> None:
    a, b, first = pair
    pids = [first, await b.spawn(Echo), await b.spawn(Echo)]
    await b.groups.join("g", pids)
    await members_seen(a, "g", 3, WAIT)
    for _ in range(6):
        await a.groups.call("g", "x", timeout=WAIT, strategy="round_robin")
    assert set(a.cluster_view.reported_queue_lengths()) == set(pids)
    conn = _connection(a, "b")
    conn.abort("cut by the test")
    await asyncio.wait_for(conn.wait_closed(), WAIT)
    # Still members (a lost connection is no evidence of death), but what
    # they reported on that connection is forgotten.
    assert sorted(a.groups.get_members("g")) == sorted(pids)
    assert not a.cluster_view.reported_queue_lengths()


class Stuck(shoal.GenServer):
    """Blocks in a call until released, with room for one queued message."""

    mailbox_size = 1

    async def init(self, started: asyncio.Event, release: asyncio.Event) -> None:
        self.started, self.release = started, release

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if request == "block":
            self.started.set()
            await self.release.wait()
        return request


async def test_a_cast_flood_into_a_full_mailbox_is_logged_as_one_line_not_one_per_cast(
        pair: tuple[shoal.Node, shoal.Node, shoal.Pid], caplog: pytest.LogCaptureFixture
) -> None:
    a, b, _ = pair
    started, release = asyncio.Event(), asyncio.Event()
    pid = await b.spawn(Stuck, started, release)
    blocked = asyncio.ensure_future(a.call(pid, "block", WAIT))
    await asyncio.wait_for(started.wait(), WAIT)
    for n in range(300):
        a.cast(pid, n)  # one fits; 299 are dropped on arrival at "b"
    # Casts and this call travel in order on one connection: once "b" has
    # refused the call (the mailbox is still full), it has seen every cast.
    with pytest.raises(shoal.Overloaded) as refused:
        await a.call(pid, "after the flood", WAIT)
    # The callee's node says which bound refused it, and the call never started.
    assert refused.value.limit == Stuck.mailbox_size and refused.value.not_started
    release.set()
    assert await blocked == "block"
    drops = [r for r in caplog.records if "full mailbox" in r.getMessage()]
    assert len(drops) == 1  # the first drop, at once; the rest are counted
