"""Real node processes sharing membership through etcd: the basics, a node
killed (G2), etcd restarted under a stream of group calls, a session revoked
by an operator, and a three-member etcd losing its leader under load.

Each test runs a ``LocalCluster`` whose store is a throwaway etcd on loopback
(``shoal.testing.etcd_server``) under a cluster name of its own, so tests
sharing one etcd never see each other's keys. Tests that stop etcd members
start their own etcd. Every wait is a bounded condition, never a sleep.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator

import msgpack
import pytest
from e2e_support import Stream, group_on_every_node, wait_until

import shoal
from shoal.membership.keys import decode_members, parse_member_key
from shoal.store.etcd import EtcdStore
from shoal.testing.agent import Echo
from shoal.testing.cluster import LocalCluster
from shoal.testing.etcd_server import EtcdCluster, start_etcd

pytestmark = pytest.mark.timeout(90)

SESSION_TTL = 5.0  # shoal.Node's default session_ttl, which LocalCluster nodes use
# After a kill -9 the lease runs out within one TTL of the last keepalive;
# etcd's leader checks for expired leases every 500 ms.
EXPIRY_BOUND = SESSION_TTL + 1.0
# Far below the heartbeat timeout (2 s): unroutability must come from the
# broken connection, not from missed heartbeats.
AT_ONCE = 1.0


def _start(members: int = 1) -> EtcdCluster:
    # The test command installs etcd; a missing binary fails loudly
    # (EtcdNotInstalled says how to install it) rather than skipping.
    return start_etcd(members=members)


@pytest.fixture(scope="module")
def shared_etcd() -> Iterator[EtcdCluster]:
    """One etcd for the tests that never stop it."""
    with _start() as etcd:
        yield etcd


@pytest.fixture
def own_etcd() -> Iterator[EtcdCluster]:
    """A single-member etcd of the test's own, which it may stop."""
    with _start() as etcd:
        yield etcd


@pytest.fixture
def etcd3() -> Iterator[EtcdCluster]:
    """A three-member etcd cluster on loopback of the test's own."""
    with _start(members=3) as etcd:
        yield etcd


def _url(etcd: EtcdCluster) -> str:
    return etcd.url(cluster=f"e2e-{uuid.uuid4().hex[:12]}")


async def _eventually(check: Callable[[], Awaitable[bool]], *, timeout: float,
                      what: str) -> None:
    """Like ``wait_until`` for a condition that needs a round trip (another
    node's view, asked through its Control process); bounded by ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.01)  # pacing the round trips, not synchronising


async def _view(cluster: LocalCluster, name: str, group: str) -> list[shoal.Pid]:
    """``group``'s members as node ``name`` sees them."""
    members: list[shoal.Pid] = await cluster.control(name, "members", "default", group)
    return members


async def _store_members(url: str, prefix: str = "scopes/") -> set[tuple[shoal.Pid, str, str]]:
    """(pid, scope, group) memberships in etcd itself, read by a fresh client
    (no cache)."""
    store = EtcdStore.from_url(url)
    try:
        snapshot = await store.snapshot(prefix)
    finally:
        await store.close()
    found: set[tuple[shoal.Pid, str, str]] = set()
    for key, entry in snapshot.entries.items():
        parts = parse_member_key(key)
        assert parts is not None, key
        counts = decode_members(parts.bucket, entry.value)
        assert counts, key
        found |= {(shoal.Pid(parts.node, parts.creation, serial), parts.scope, parts.group)
                  for serial in counts}
    return found


async def test_nodes_on_etcd_see_each_others_members_and_serve_group_calls(
        shared_etcd: EtcdCluster) -> None:
    async with LocalCluster(3, store=_url(shared_etcd)) as cluster:
        pids = await group_on_every_node(cluster)
        everyone = sorted(p for group in pids.values() for p in group)
        for name in cluster.names:
            async def sees_all(name: str = name) -> bool:
                return sorted(await _view(cluster, name, "g")) == everyone
            await _eventually(sees_all, timeout=5.0, what=f"every member in {name}'s view")

        # A group call from one node process lands on members of every node.
        served = set()
        for _ in range(12):
            status, reply = await cluster.control("n1", "group_call", "g", "hi", 5.0,
                                                  "round_robin", False)
            assert status == "ok"
            served.add(reply[0])
        assert served == {"n1", "n2", "n3"}
        # And from the in-process client node.
        replies = [await cluster.client.groups.call("g", i, timeout=5.0,
                                                    strategy="round_robin")
                   for i in range(12)]
        assert {node for node, _ in replies} == {"n1", "n2", "n3"}

        # A member that exits leaves every view (its owner deletes the key).
        gone = pids["n3"][0]
        await cluster.control("n3", "kill", gone)
        await wait_until(lambda: gone not in cluster.client.groups.get_members("g"),
                         what="the exited member to leave the client's view")

        async def gone_at_n1() -> bool:
            return gone not in await _view(cluster, "n1", "g")
        await _eventually(gone_at_n1, timeout=5.0, what="the exited member to leave n1's view")


async def test_kill9_node_unroutable_at_once_and_gone_from_every_view_within_ttl(
        shared_etcd: EtcdCluster) -> None:
    url = _url(shared_etcd)
    async with LocalCluster(3, store=url) as cluster:
        client = cluster.client
        pids = await group_on_every_node(cluster)
        # The client has a connection to n2: it called one of n2's members.
        assert (await client.call(pids["n2"][0], "x", 5.0))[0] == "n2"

        killed = time.monotonic()
        cluster.kill9("n2")
        await wait_until(lambda: not client.cluster_view.is_routable("n2"), timeout=AT_ONCE,
                         what="n2 to be unroutable at the client")
        unroutable_after = time.monotonic() - killed
        # Still members (only the store's session end is evidence of death),
        # but never selected: group calls go to the live nodes only.
        assert set(pids["n2"]) <= set(client.groups.get_members("g"))
        for i in range(20):
            node, _ = await client.groups.call("g", i, timeout=5.0, strategy="round_robin")
            assert node in ("n1", "n3")

        def gone_at_client() -> bool:
            return not any(p.node == "n2" for p in client.groups.get_members("g"))
        await wait_until(gone_at_client, timeout=EXPIRY_BOUND - (time.monotonic() - killed),
                         what="n2's members to leave the client's view")
        gone_at_client_after = time.monotonic() - killed

        for name in ("n1", "n3"):
            async def gone_at(name: str = name) -> bool:
                return not any(p.node == "n2" for p in await _view(cluster, name, "g"))
            await _eventually(gone_at, timeout=max(0.1, EXPIRY_BOUND - (time.monotonic()
                                                                         - killed)),
                              what=f"n2's members to leave {name}'s view")
        gone_everywhere_after = time.monotonic() - killed

        assert not any(pid.node == "n2" for pid, _, _ in await _store_members(url))
        assert unroutable_after < AT_ONCE
        assert gone_at_client_after < EXPIRY_BOUND
        assert gone_everywhere_after < EXPIRY_BOUND
        assert client.cluster_view.peer("n2") is None


async def test_a_killed_node_restarted_at_once_gets_its_name_back_when_its_lease_ends(
        shared_etcd: EtcdCluster) -> None:
    url = _url(shared_etcd)
    async with LocalCluster(2, store=url) as cluster:
        client = cluster.client
        pids = await group_on_every_node(cluster)
        old_creation = await cluster.control("n2", "creation")
        cluster.kill9("n2")
        await cluster.wait_exit("n2")
        killed = time.monotonic()
        # Its lease still holds the name; the restart sees the holder's os pid
        # gone on this host and waits for the lease instead of failing.
        node = await cluster.start_node("n2")
        restarted_after = time.monotonic() - killed
        assert "waiting up to" in node.log_text()
        assert await cluster.control("n2", "creation") > old_creation
        new = await cluster.spawn("n2", group="g", count=2)
        want = {*pids["n1"], *new}
        await wait_until(lambda: set(client.groups.get_members("g")) == want,
                         timeout=EXPIRY_BOUND, what="only the new incarnation's members")
        # The lease ends within EXPIRY_BOUND; the rest is starting a Python
        # process on a busy host.
        assert restarted_after < EXPIRY_BOUND + 5.0


async def test_etcd_restarted_mid_stream_calls_keep_succeeding_and_memberships_return(
        own_etcd: EtcdCluster) -> None:
    url = _url(own_etcd)
    async with LocalCluster(3, store=url) as cluster:
        client = cluster.client
        pids = await group_on_every_node(cluster)
        # Paced: the stream must last through etcd's whole downtime.
        stream = Stream(client, "g", callers=4, idempotent=False, pause=0.002).start()
        await stream.wait_calls(100)
        keys_before = await _store_members(url)
        assert len(keys_before) == 6 + 3  # the workers and each node's Control

        own_etcd.stop_member(0)
        stopped = time.monotonic()
        # Routing is local: calls between live nodes need no store round trip.
        # etcd stays down until every node process has failed to renew its
        # lease three times, and for longer than the TTL.
        await wait_until(lambda: all(node.log_text().count("keepalive failed") >= 3
                                     for node in cluster.nodes.values()),
                         timeout=3 * SESSION_TTL, what="three failed keepalives on every node")
        # (A refused keepalive can fail at once, so three may fail within
        # the TTL: without this wait, no session would have expired.)
        await wait_until(lambda: time.monotonic() - stopped > SESSION_TTL,
                         timeout=2 * SESSION_TTL, what="etcd down for longer than the TTL")
        await stream.wait_calls(100, timeout=30.0)  # bounded generously: a busy host
        for name in ("n1", "n3"):
            status, reply = await cluster.control(name, "group_call", "g", "hi", 5.0,
                                                  "round_robin", False)
            assert status == "ok", reply
        # A join while etcd is down is visible locally at once; it reaches
        # the store once etcd is back.
        late = await client.spawn(Echo)
        await client.groups.join("late", late)
        assert client.groups.get_members("late") == [late]
        down_for = time.monotonic() - stopped
        own_etcd.start_member(0)
        await stream.wait_calls(100, timeout=30.0)
        await client.groups.sync(15.0)

        # Every node's memberships are in etcd again, and in every view.
        everyone = {p for group in pids.values() for p in group}

        async def all_in_store() -> bool:
            return len(await _store_members(url)) == len(keys_before) + 1
        await _eventually(all_in_store, timeout=15.0, what="every membership in etcd")

        for name in cluster.names:
            async def all_at(name: str = name) -> bool:
                return (set(await _view(cluster, name, "g")) == everyone
                        and await _view(cluster, name, "late") == [late])
            await _eventually(all_at, timeout=15.0, what=f"every member in {name}'s view")
        assert set(client.groups.get_members("g")) == everyone
        await stream.stop()
        assert stream.failures() == []
        assert {o.node for o in stream.outcomes} == {"n1", "n2", "n3"}
        assert down_for > SESSION_TTL


async def test_revoked_session_is_reopened_and_its_memberships_rewritten(
        shared_etcd: EtcdCluster) -> None:
    url = _url(shared_etcd)
    async with LocalCluster(3, store=url) as cluster:
        client = cluster.client
        pids = await group_on_every_node(cluster)
        store = EtcdStore.from_url(url)
        try:
            entry = (await store.snapshot("nodes/")).entries["nodes/n2"]
        finally:
            await store.close()

        # An operator revokes n2's lease (as a lease expiry during a long cut
        # from etcd would): all its keys vanish, so n2's members leave every
        # view; n2 itself is alive and must re-register and rewrite them.
        shared_etcd.revoke_lease(int(entry.session, 16))
        await wait_until(lambda: not set(pids["n2"]) & set(client.groups.get_members("g")),
                         what="n2's members to leave the client's view")
        await wait_until(lambda: set(pids["n2"]) <= set(client.groups.get_members("g"))
                         and client.cluster_view.is_routable("n2"), timeout=15.0,
                         what="n2's members back in the client's view")

        async def back_at_n1() -> bool:
            return set(pids["n2"]) <= set(await _view(cluster, "n1", "g"))
        await _eventually(back_at_n1, timeout=10.0, what="n2's members back in n1's view")
        store = EtcdStore.from_url(url)
        try:
            assert (await store.snapshot("nodes/")).entries["nodes/n2"].session != entry.session
        finally:
            await store.close()
        served = {(await client.call(pid, "x", 5.0))[0] for pid in pids["n2"]}
        assert served == {"n2"}
        node, _ = await client.groups.call("g", "x", timeout=5.0, strategy="hash", key=1)
        assert node in cluster.names


async def test_three_member_etcd_leader_stopped_under_calls_and_joins(
        etcd3: EtcdCluster) -> None:
    url = _url(etcd3)
    async with LocalCluster(3, store=url) as cluster:
        client = cluster.client
        await group_on_every_node(cluster)
        stream = Stream(client, "g", callers=4, idempotent=False, pause=0.002).start()
        await stream.wait_calls(100)
        before = [await cluster.spawn(name, group="joins") for name in cluster.names]

        etcd3.stop_member(etcd3.leader())
        # Joins made right after the leader stopped become visible everywhere.
        after = [await cluster.spawn(name, group="joins") for name in cluster.names]
        joined = {p for group in before + after for p in group}
        await wait_until(lambda: set(client.groups.get_members("joins")) == joined,
                         timeout=15.0, what="every join at the client")
        for name in cluster.names:
            async def seen(name: str = name) -> bool:
                return set(await _view(cluster, name, "joins")) == joined
            await _eventually(seen, timeout=15.0, what=f"every join in {name}'s view")
        await stream.wait_calls(100, timeout=30.0)
        await stream.stop()
        assert stream.failures() == []


async def test_write_that_finds_the_session_revoked_reopens_it_once_and_lands(
        shared_etcd: EtcdCluster, caplog: pytest.LogCaptureFixture) -> None:
    url = _url(shared_etcd)
    async with LocalCluster(1, store=url) as cluster:
        client = cluster.client
        assert client._replication is not None and client._replication.session is not None
        old = client._replication.session.id
        first = await client.spawn(Echo)
        await client.groups.join("g", first)

        # Revoked between two keepalives: the next join's write is the first
        # to find the session gone, while the session's own guard wakes too.
        # Exactly one of them may open the new session; the other must not
        # try again (it would find the name held by that new session).
        shared_etcd.revoke_lease(int(old, 16))
        second = await client.spawn(Echo)
        await client.groups.join("g", second)
        await client.groups.sync(10.0)
        assert client._replication.session.id != old
        third = await client.spawn(Echo)
        await client.groups.join("g", third)
        await client.groups.sync(5.0)

        async def all_at_n1() -> bool:
            return set(await _view(cluster, "n1", "g")) == {first, second, third}
        await _eventually(all_at_n1, timeout=10.0, what="every member in n1's view")
        written = await _store_members(url, f"scopes/default/{client.name}/")
        assert written == {(p, "default", "g") for p in (first, second, third)}
        # Nobody tried to open a second session for the same end.
        assert "store session re-open failed" not in caplog.text


async def test_nodes_listening_on_every_interface_advertise_a_dialable_address(
        shared_etcd: EtcdCluster) -> None:
    # As across hosts: `shoal run --listen 0.0.0.0:PORT` (here via SHOAL_LISTEN).
    url = _url(shared_etcd)
    async with LocalCluster(2, store=url, env={"SHOAL_LISTEN": "0.0.0.0:0"}) as cluster:
        store = EtcdStore.from_url(url)
        try:
            entries = (await store.snapshot("nodes/")).entries
        finally:
            await store.close()
        for name in cluster.names:
            info = msgpack.unpackb(entries[f"nodes/{name}"].value)
            # "0.0.0.0" would make peers on other hosts dial themselves.
            assert info["host"] not in ("0.0.0.0", "::", "")
        pids = await group_on_every_node(cluster, per_node=1)
        for name in cluster.names:
            assert (await cluster.client.call(pids[name][0], "x", 5.0))[0] == name
        status, reply = await cluster.control("n1", "call", pids["n2"][0], "x", 5.0)
        assert (status, reply[0]) == ("ok", "n2")
