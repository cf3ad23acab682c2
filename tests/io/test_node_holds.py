"""Monitors and links other nodes hold on ours are bounded and pruned (holds.py).

A raw peer (a hand-driven node that completed the handshake) floods a node
with MONITOR and LINK messages on one of its processes. Past the per-node
bound each is answered at once with ``"system_limit"``; when the peer's
connection goes, everything it held is forgotten, so a flooder that leaves
takes its share with it. The bound is lowered for the test (its default is
100,000 of each). Every wait is bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.runtime import holds
from shoal.testing.hand_peer import HandPeer
from shoal.testing.registration import register_peer
from shoal.wire import Down as WireDown
from shoal.wire import Exit, HandshakeConfig, Link, Monitor

SECRET = b"node-holds-test-secret-0123456789"
CLUSTER = "holds"
WAIT = 5.0
CAP = 5


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


class RawPeer(HandPeer):
    """A hand-driven node "flood": handshake, then whatever the test sends."""

    def __init__(self) -> None:
        super().__init__(HandshakeConfig(cluster=CLUSTER, node="flood", creation=7,
                                         secret=SECRET))

    async def wait_received(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()


async def _connect(node: shoal.Node) -> RawPeer:
    assert node.address is not None and node._store is not None
    if node.cluster_view.peer("flood") is None:  # a member, as a node is
        await register_peer(node._store, "flood", 7)
    _, peer = await asyncio.get_running_loop().create_connection(RawPeer, *node.address)
    await asyncio.wait_for(peer.established.wait(), WAIT)
    return peer


def _flood(peer: RawPeer, target: shoal.Pid, count: int) -> None:
    for serial in range(1, count + 1):
        me = shoal.Pid("flood", 7, serial)
        peer.send(Monitor(ref=serial, watcher=me, target=target))
        peer.send(Link(a=me, b=target))


async def _handled(peer: RawPeer, node: shoal.Node) -> None:
    """Wait until the node handled all the peer sent: a monitor of a pid that
    never existed is answered "noproc", in order, after everything before it."""
    marker = 10**9
    nobody = shoal.Pid(node.name, node.creation, marker)
    peer.send(Monitor(ref=marker, watcher=shoal.Pid("flood", 7, marker), target=nobody))
    async with asyncio.timeout(WAIT):
        while not any(isinstance(m, WireDown) and m.ref == marker for m in peer.received):
            peer.arrived.clear()
            await peer.arrived.wait()
    (answer,) = [m for m in peer.received if isinstance(m, WireDown) and m.ref == marker]
    assert answer.reason == "noproc"
    peer.received.remove(answer)


async def test_monitors_and_links_from_one_node_are_capped_then_forgotten_when_it_goes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(holds, "MAX_MONITORS_PER_NODE", CAP)
    monkeypatch.setattr(holds, "MAX_LINKS_PER_NODE", CAP)
    async with shoal.Node("n", cluster=CLUSTER, store=f"sqlite://{tmp_path}/c.db",
                          secret=SECRET) as node:
        pid = await node.spawn_opt(Echo, trap_exit=True)
        peer = await _connect(node)
        _flood(peer, pid, CAP + 3)
        await _handled(peer, node)
        downs = [m for m in peer.received if isinstance(m, WireDown)]
        exits = [m for m in peer.received if isinstance(m, Exit)]
        assert [(d.ref, d.reason) for d in downs] == [(n, "system_limit") for n in (6, 7, 8)]
        assert [(e.to.serial, e.reason) for e in exits] == [(n, "system_limit") for n in (6, 7, 8)]
        assert node._remote.holds.count("flood") == (CAP, CAP)
        assert node.is_alive(pid)  # refusing costs the target nothing

        manager = node._remote.manager
        assert manager is not None and peer.transport is not None
        conn = manager.get("flood")
        assert conn is not None
        peer.transport.close()  # the flooder leaves
        await asyncio.wait_for(conn.wait_closed(), WAIT)  # the node saw it go
        assert node._remote.holds.count("flood") == (0, 0)
        # Its share went with it: a new connection of that node may hold as many again.
        again = await _connect(node)
        _flood(again, pid, CAP)
        await _handled(again, node)
        assert not again.received  # none refused
        assert node._remote.holds.count("flood") == (CAP, CAP)
        assert again.transport is not None
        again.transport.close()


async def test_a_dead_targets_entries_are_forgotten(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(holds, "MAX_MONITORS_PER_NODE", CAP)
    async with shoal.Node("n", cluster=CLUSTER, store=f"sqlite://{tmp_path}/c.db",
                          secret=SECRET) as node:
        pid = await node.spawn(Echo)
        peer = await _connect(node)
        _flood(peer, pid, 2)
        await _handled(peer, node)
        assert node._remote.holds.count("flood") == (2, 2)
        node.exit(pid, "shutdown")
        await node.wait_exit(pid, WAIT)
        await peer.wait_received(4)  # a Down per monitor, an exit signal per link
        assert node._remote.holds.count("flood") == (0, 0)
        assert peer.transport is not None
        peer.transport.close()
