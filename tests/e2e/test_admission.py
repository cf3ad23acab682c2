"""Who may join and talk to a cluster of real node processes (G7): a name
held by a live node, a wrong secret, an old incarnation, garbage bytes.

Raw peers speak the wire protocol through ``shoal.wire`` (sans-IO) over a
plain asyncio TCP connection, so they can say what a real node never would.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from e2e_support import Stream, group_on_every_node, wait_until

import shoal
import shoal.wire as wire
from shoal.membership.keys import bucket_of, encode_members, member_key
from shoal.store import open_store
from shoal.store.base import Put
from shoal.testing.cluster import LocalCluster
from shoal.testing.registration import register_peer

# These scenarios run against the embedded store and against etcd (conftest.py).
E2E_STORES = ("sqlite", "etcd")


pytestmark = pytest.mark.timeout(60)

WRONG_SECRET = "not-the-cluster-secret-0123456789abcdef"


class RawPeer:
    """A TCP connection to a node's listener, driven by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.address = writer.get_extra_info("sockname")

    @classmethod
    async def open(cls, address: tuple[str, int]) -> RawPeer:
        reader, writer = await asyncio.open_connection(*address)
        return cls(reader, writer)

    async def handshake(self, *, node: str, creation: int, secret: str,
                        cluster: str = "default") -> list[wire.Event]:
        """Run the initiator's side of the handshake; return its events."""
        config = wire.HandshakeConfig(cluster=cluster, node=node, creation=creation,
                                      secret=secret.encode())
        conn = wire.Connection(config, initiator=True)
        events: list[wire.Event] = []
        self.writer.write(conn.data_to_send())
        while not any(isinstance(e, (wire.Established, wire.Closed)) for e in events):
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            events += conn.receive_data(data) if data else conn.receive_eof()
            self.writer.write(conn.data_to_send())
        return events

    async def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """Read until the node closes the connection; True if it did in time."""
        async def drain() -> None:
            while await self.reader.read(65536):
                pass
        try:
            await asyncio.wait_for(drain(), timeout)
        except (TimeoutError, ConnectionError):
            return isinstance(self.reader.exception(), ConnectionError)
        return True

    def close(self) -> None:
        self.writer.close()


def _address(cluster: LocalCluster, name: str) -> tuple[str, int]:
    # Where the store says the node listens.
    return cluster.client.cluster_view.peer(name).address


async def _group(cluster: LocalCluster, per_node: int = 2) -> list[shoal.Pid]:
    by_node = await group_on_every_node(cluster, per_node=per_node)
    return [p for pids in by_node.values() for p in pids]


async def test_node_name_held_by_a_live_node_is_refused_with_name_in_use() -> None:
    async with LocalCluster(2, heartbeat_timeout=0.5) as cluster:
        client = cluster.client
        pids = await _group(cluster)
        creation = await cluster.control("n1", "creation")
        impostor = shoal.Node("n1", store=cluster.store, secret=cluster.secret)
        with pytest.raises(shoal.NameInUse) as caught:
            await impostor.start()
        assert caught.value.name == "n1"
        assert not impostor.running
        # The live n1 is undisturbed: same incarnation, same members, serving.
        assert client.cluster_view.peer("n1").creation == creation
        assert sorted(client.groups.get_members("g")) == sorted(pids)
        assert await cluster.control("n1", "creation") == creation
        assert client.cluster_view.is_routable("n1")
        n1_pid = next(p for p in pids if p.node == "n1")
        assert await client.call(n1_pid, "ping", 5.0) == ["n1", "ping"]


async def test_node_with_wrong_secret_cannot_call_members(
        caplog: pytest.LogCaptureFixture) -> None:
    async with LocalCluster(2, heartbeat_timeout=0.5) as cluster:
        client = cluster.client
        pids = await _group(cluster)
        served = {pid: await client.call(pid, "served", 5.0) for pid in pids}
        caplog.set_level(logging.INFO, logger="shoal")
        # It can read the store (same host, same file), but no node lets it in.
        async with shoal.Node("intruder", store=cluster.store, secret=WRONG_SECRET) as intruder:
            await wait_until(lambda: len(intruder.groups.get_members("g")) == len(pids),
                             what="the intruder to see the members")
            with pytest.raises(shoal.NoMembers) as caught:
                await intruder.groups.call("g", "let me in", timeout=5.0)
            # One try per node: a node that refused it is not tried again
            # through its other member, and the error says why.
            assert caught.value.tried == len(cluster.names)
            assert "authentication refused" in str(caught.value)
            assert "secrets differ" in str(caught.value)
            with pytest.raises(shoal.NodeDown) as direct:
                await intruder.call(pids[0], "let me in", 5.0)
            assert direct.value.not_started and direct.value.refused
        # Nothing reached a member: each answers with its count plus this call.
        for pid in pids:
            assert await client.call(pid, "served", 5.0) == served[pid] + 1
        # The intruder was told "auth"; each node logged the refusal with the
        # intruder's address (its own log, a file per node process).
        assert "peer refused the handshake: auth" in caplog.text
        for name in cluster.names:
            text = cluster.nodes[name].log_text()
            assert "closing connection with ('127.0.0.1'," in text, text
            assert "does not match the cluster secret" in text, text


async def test_raw_handshake_with_wrong_secret_is_refused_and_logged_with_address() -> None:
    async with LocalCluster(1, heartbeat_timeout=0.5) as cluster:
        peer = await RawPeer.open(_address(cluster, "n1"))
        events = await peer.handshake(node="raw", creation=1, secret=WRONG_SECRET)
        [closed] = [e for e in events if isinstance(e, wire.Closed)]
        assert isinstance(closed.error, shoal.AuthenticationFailed)
        assert not any(isinstance(e, wire.Established) for e in events)
        assert await peer.closed_by_peer()
        peer.close()
        await wait_until(lambda: f"closing connection with {peer.address!r}"
                         in cluster.nodes["n1"].log_text(),
                         what="n1 to log the refusal with the peer's address")
        # The right secret from the same kind of raw peer, registered in the
        # store as a node is before it dials, is accepted.
        store = open_store(cluster.store)
        try:
            session = await register_peer(store, "raw", 1)
            good = await RawPeer.open(_address(cluster, "n1"))
            events = await good.handshake(node="raw", creation=1, secret=cluster.secret)
            assert any(isinstance(e, wire.Established) for e in events)
            good.close()
            await session.close()
        finally:
            await store.close()


@pytest.mark.parametrize("payload", [
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http-request"),
    pytest.param(b"\x00\x00\x00\x08" + bytes(range(200, 208)), id="garbage-body"),
    pytest.param(b"\xff\xff\xff\xff" + b"x" * 64, id="oversized-length"),
    pytest.param(b"\x00\x01\x00\x00", id="over-handshake-limit"),
    pytest.param(b"\x00\x00\x00\x00", id="zero-length"),
])
async def test_malformed_bytes_close_that_connection_while_the_node_keeps_serving(
        payload: bytes) -> None:
    async with LocalCluster(2, heartbeat_timeout=0.5) as cluster:
        await _group(cluster)
        stream = Stream(cluster.client, "g", callers=4, idempotent=False).start()
        await stream.wait_calls(50)
        peers = []
        for name in cluster.names:
            peer = await RawPeer.open(_address(cluster, name))
            peer.writer.write(payload)
            peers.append((name, peer))
        for name, peer in peers:
            assert await peer.closed_by_peer(), f"{name} kept a malformed connection open"
            peer.close()
            logged = f"closing connection with {peer.address!r}"
            node = cluster.nodes[name]
            await wait_until(lambda: logged in node.log_text(),  # noqa: B023
                             what=f"{name} to log the bad peer's address")
        await stream.wait_calls(100)
        await stream.stop()
        assert stream.failures() == []
        assert {o.node for o in stream.outcomes[-50:]} == {"n1", "n2"}
        for name in cluster.names:
            assert cluster.nodes[name].running


# On SQLite a killed node's name is free at once (its lock is released); on
# etcd when its lease expires: the restart sees the holder's os pid gone on
# this host and waits for that instead of failing with NameInUse.
async def test_old_incarnation_cannot_connect_nor_publish_members() -> None:
    async with LocalCluster(1, heartbeat_timeout=0.5) as cluster:
        client = cluster.client
        old_creation = await cluster.control("n1", "creation")
        cluster.kill9("n1")
        await cluster.wait_exit("n1")
        await cluster.start_node("n1")
        new_pids = await cluster.spawn("n1", group="g")
        await wait_until(lambda: client.groups.get_members("g") == new_pids,
                         what="the new incarnation's member")
        assert client._remote.manager is not None
        assert client.address is not None

        # A peer claiming to be the old incarnation is refused as stale.
        peer = await RawPeer.open(client.address)
        events = await peer.handshake(node="n1", creation=old_creation, secret=cluster.secret)
        [closed] = [e for e in events if isinstance(e, wire.Closed)]
        assert closed.refusal == "stale"
        peer.close()

        # Membership entries of the old incarnation in the store are ignored.
        store = open_store(cluster.store)
        try:
            session = await store.open_session("ghost", b"\x80", 5.0)
            ghost = shoal.Pid("n1", old_creation, 99)
            bucket = bucket_of(ghost.serial)
            revision = await session.apply([
                Put(key=member_key(ghost.node, ghost.creation, "default", "g", bucket),
                    value=encode_members(bucket, {ghost.serial: 1}))])
            assert client._replication is not None
            default = client._replication.following.stream("default")
            assert default is not None
            await wait_until(lambda: default.revision >= revision,
                             what="the client to read the ghost entry")
            assert client.groups.get_members("g") == new_pids
            await session.close()
        finally:
            await store.close()
        assert await client.groups.call("g", "x", timeout=5.0) == ["n1", "x"]
