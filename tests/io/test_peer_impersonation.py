"""A peer that knows the secret cannot pose as another node: the store is
the authority on incarnations (docs/protocol.md 4.4, the transport
manager's rule 2).

Two real nodes in this process share an SQLite store and talk over
loopback TCP. The impostor is a raw wire client that knows the cluster
secret and claims a name and creation of its choosing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

import shoal
import shoal.wire as wire
from shoal.store.base import Put
from shoal.testing.cluster import wait_until
from shoal.testing.registration import register_peer

SECRET = "peer-impersonation-test-secret-0123"
WAIT = 5.0

pytestmark = pytest.mark.timeout(60)


class Inbox(shoal.GenServer):
    """Answers calls with the request; records info messages (signals, Downs)."""

    async def init(self, box: list[Any]) -> None:
        self.box = box
        self.trap_exit = True

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request

    async def handle_info(self, message: Any) -> None:
        self.box.append(message)


class Impostor:
    """The initiator's side of a handshake, driven by hand over TCP."""

    def __init__(self, node: shoal.Node, name: str, creation: int) -> None:
        config = wire.HandshakeConfig(cluster=node.cluster, node=name, creation=creation,
                                      secret=SECRET.encode())
        self.conn = wire.Connection(config, initiator=True, expect_node=node.name)
        self.node = node
        self.events: list[wire.Event] = []
        self.writer: asyncio.StreamWriter | None = None
        self.address: Any = None

    async def handshake(self) -> list[wire.Event]:
        """Run the handshake to its end; return its events."""
        assert self.node.address is not None
        reader, self.writer = await asyncio.open_connection(*self.node.address)
        self.address = self.writer.get_extra_info("sockname")
        self.writer.write(self.conn.data_to_send())
        async with asyncio.timeout(WAIT):
            while self.conn.state == "handshake":
                data = await reader.read(65536)
                self.events += self.conn.receive_data(data) if data else self.conn.receive_eof()
                self.writer.write(self.conn.data_to_send())
        return self.events

    def send(self, msg: wire.Message) -> None:
        assert self.writer is not None
        self.writer.write(self.conn.send(msg))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _refusal(events: list[wire.Event]) -> str | None:
    assert not any(isinstance(e, wire.Established) for e in events), events
    [closed] = [e for e in events if isinstance(e, wire.Closed)]
    return closed.refusal


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[shoal.Node, shoal.Node]]:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", store=store, secret=SECRET) as a, \
            shoal.Node("b", store=store, secret=SECRET) as b:
        yield a, b


async def test_a_peer_claiming_a_live_nodes_name_with_a_newer_creation_is_refused(
        two: tuple[shoal.Node, shoal.Node], caplog: pytest.LogCaptureFixture) -> None:
    a, b = two
    box: list[Any] = []
    worker = await b.spawn(Inbox, [])
    recorder = await a.spawn(Inbox, box)
    a.link(recorder, worker)
    ref = a.monitor(worker, watcher=recorder)
    assert await a.call(worker, "before", WAIT) == "before"  # LINK, MONITOR arrived
    manager = a._remote.manager
    assert manager is not None
    real = manager.get("b")
    assert real is not None and real.peer_creation == b.creation
    caplog.set_level(logging.INFO, logger="shoal")

    impostor = Impostor(a, "b", b.creation + 1)
    assert _refusal(await impostor.handshake()) == "stale"
    impostor.close()

    # The real connection stayed up, and nothing reached the linked processes.
    assert manager.get("b") is real and real.is_open
    assert a.cluster_view.is_routable("b")
    assert await a.call(worker, "during", WAIT) == "during"
    assert await b.call(recorder, "back", WAIT) == "back"
    assert box == [] and b.is_alive(worker)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "store does not show that incarnation" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert f"'b' (creation {b.creation + 1})" in warnings[0]
    assert str(impostor.address[1]) in warnings[0]

    # The impostor raised nothing: a new connection between the real nodes
    # is not refused as "stale".
    real.abort("test: the network dropped it")
    assert await a.call(worker, "after", WAIT) == "after"
    again = manager.get("b")
    assert again is not None and again is not real and again.peer_creation == b.creation
    assert await b.call(recorder, "after", WAIT) == "after"
    # The link and monitor broke with the connection, as they should: no
    # forged signal came before.
    assert len(box) == 2
    assert shoal.Exit(pid=worker, reason=shoal.NOCONNECTION) in box
    assert shoal.Down(ref=ref, pid=worker, reason=shoal.NOCONNECTION) in box


async def test_a_peer_claiming_a_name_the_store_does_not_list_is_refused(
        two: tuple[shoal.Node, shoal.Node]) -> None:
    a, _ = two
    impostor = Impostor(a, "nobody", 1)
    assert _refusal(await impostor.handshake()) == "stale"
    impostor.close()
    manager = a._remote.manager
    assert manager is not None and manager.get("nobody") is None
    assert "nobody" not in manager.peers()


async def test_a_peer_registered_in_the_store_is_admitted_even_before_the_view_shows_it(
        two: tuple[shoal.Node, shoal.Node]) -> None:
    a, _ = two
    assert a._store is not None
    impostor = Impostor(a, "late", 5)
    handshake = asyncio.ensure_future(impostor.handshake())
    # Its claim waits for a's view of the store, touching nothing...
    manager = a._remote.manager
    assert manager is not None
    await wait_until(lambda: manager.handshaking == 1, what="the claim to wait")
    assert not handshake.done()
    # ...until the registration arrives, as a starting node's does.
    session = await register_peer(a._store, "late", 5)
    events = await handshake
    assert any(isinstance(e, wire.Established) for e in events)
    conn = manager.get("late")
    assert conn is not None and conn.peer_creation == 5
    impostor.close()
    await session.close()


async def test_a_restarted_node_registered_in_the_store_replaces_the_old_connection(
        two: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = two
    assert a._store is not None
    worker = await b.spawn(Inbox, [])
    assert await a.call(worker, "before", WAIT) == "before"
    manager = a._remote.manager
    assert manager is not None
    old = manager.get("b")
    assert old is not None
    # b's name passes to a new incarnation (its registration written over,
    # as after b hung past its session): b fences itself, a follows the store.
    newer = b.creation + 1
    session = await register_peer(a._store, "ghost", 1)
    info = msgpack.packb({"name": "b", "creation": newer, "host": "127.0.0.1", "port": 9})
    await session.apply([Put(key="nodes/b", value=info)])
    successor = Impostor(a, "b", newer)
    assert any(isinstance(e, wire.Established) for e in await successor.handshake())
    conn = manager.get("b")
    assert conn is not None and conn is not old and conn.peer_creation == newer
    assert not old.is_open
    successor.close()
    await session.close()
