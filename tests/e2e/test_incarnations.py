"""Incarnations under hangs: a hung node keeps its session on one host; on
etcd a hang past the lease ends the incarnation, a new node may take the
name, and the old one, when it wakes, fences itself and never serves again.

Real node processes (``LocalCluster``), SIGSTOP/SIGCONT sent by PID to the
processes the test started; short session TTLs and heartbeat timeouts keep
the hangs short. Every wait is a bounded condition.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import Attempts, Stream, wait_until

import shoal
from shoal.cli.running import EXIT_FENCED
from shoal.testing.cluster import LocalCluster
from shoal.testing.etcd_server import EtcdCluster, start_etcd

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with start_etcd() as cluster:
        yield cluster


@pytest.mark.e2e_stores("sqlite")
async def test_node_hung_past_its_session_ttl_on_one_host_keeps_its_members() -> None:
    ttl = 0.5
    async with LocalCluster(["n1", "n2"], heartbeat_timeout=0.5, session_ttl=ttl) as cluster:
        client = cluster.client
        pids = await cluster.spawn("n2", group="g", count=2)
        await wait_until(lambda: sorted(client.groups.get_members("g")) == sorted(pids),
                         what="n2's members at the client")
        cluster.sigstop("n2")
        stopped = time.monotonic()
        await wait_until(lambda: not client.cluster_view.is_routable("n2"), timeout=5,
                         what="n2 to become unroutable")
        while time.monotonic() - stopped < 4 * ttl:  # a hang of 4 session TTLs
            assert sorted(client.groups.get_members("g")) == sorted(pids)
            assert client.cluster_view.peer("n2") is not None
            await asyncio.sleep(0.05)  # sampling the view through the hang
        cluster.sigcont("n2")
        await wait_until(lambda: client.cluster_view.is_routable("n2"), timeout=5,
                         what="n2 to be routable again")
        assert await client.groups.call("g", "back", timeout=5.0) == ["n2", "back"]
        assert sorted(client.groups.get_members("g")) == sorted(pids)


async def test_hung_node_replaced_on_etcd_fences_itself_and_the_new_one_takes_its_calls(
        etcd: EtcdCluster) -> None:
    url = etcd.url(cluster=f"e2e-{uuid.uuid4().hex[:12]}")
    async with LocalCluster(["n1", "n2"], store=url, heartbeat_timeout=0.5,
                            session_ttl=1.0) as cluster:
        client = cluster.client
        await cluster.spawn("n1", group="g", count=2)
        await cluster.spawn("n2", group="g", count=2)
        await wait_until(lambda: len(client.groups.get_members("g")) == 4,
                         what="four members at the client")
        old = cluster.nodes["n2"]
        old_creation = await cluster.control("n2", "creation")
        attempts = Attempts(client)
        stream = Stream(client, "g", callers=4, idempotent=True, timeout=4.0,
                        pause=0.005).start()
        await stream.wait_calls(40)

        old.signal(signal.SIGSTOP)
        # The lease runs out: the old incarnation has ended for everyone.
        await wait_until(lambda: client.cluster_view.peer("n2") is None, timeout=10,
                         what="n2's lease to expire")
        await cluster.start_node("n2")  # the name is free: a new incarnation
        new_creation = await cluster.control("n2", "creation")
        assert new_creation > old_creation
        new_pids = await cluster.spawn("n2", group="g", count=2)
        await wait_until(lambda: sum(p.node == "n2" for p in client.groups.get_members("g"))
                         == 2, what="the new n2's members at the client")
        restarted = time.monotonic()

        old.signal(signal.SIGCONT)
        # It wakes, finds its name held by the new creation, and fences itself.
        assert await asyncio.wait_for(old.process.wait(), 15) == EXIT_FENCED
        fenced = [line for line in old.log_text().splitlines() if " fenced: " in line]
        assert len(fenced) == 1 and str(new_creation) in fenced[0], fenced

        await wait_until(lambda: any(o.node == "n2" and o.start > restarted
                                     for o in stream.outcomes),
                         what="the new n2 to serve group calls")
        await stream.stop()
        assert stream.failures() == []
        # Nothing meant for the new incarnation went to the old one.
        to_new = [a for a in attempts.items if a.pid.node == "n2"
                  and a.pid.creation == new_creation]
        assert to_new and all(a.error is None for a in to_new), [
            a.error for a in to_new if a.error is not None]
        conn = client._remote.manager.get("n2") if client._remote.manager else None
        assert conn is not None and conn.peer_creation == new_creation
        assert await client.call(new_pids[0], "served", 5.0) >= 1
        assert sorted(p for p in client.groups.get_members("g") if p.node == "n2") \
            == sorted(new_pids)
        assert isinstance(await cluster.control("n1", "call", new_pids[1], "x", 5.0), list)
        with pytest.raises(shoal.NoSuchProcess):
            await client.call(shoal.Pid("n2", old_creation, new_pids[0].serial), "x", 1.0)


@pytest.mark.e2e_stores("sqlite")
async def test_after_a_hang_a_known_member_is_callable_as_soon_as_its_node_is_routable(
        ) -> None:
    async with LocalCluster(["n1", "n2"], heartbeat_timeout=0.3) as cluster:
        client = cluster.client
        pids = await cluster.spawn("n2", group="g")
        await wait_until(lambda: client.groups.get_members("g") == pids,
                         what="n2's member at the client")
        for _ in range(4):
            cluster.sigstop("n2")
            try:
                await wait_until(lambda: not client.cluster_view.is_routable("n2"), timeout=5,
                                 what="n2 unroutable", interval=0.001)
            finally:
                cluster.sigcont("n2")
            await wait_until(lambda: client.cluster_view.is_routable("n2"), timeout=5,
                             what="n2 routable again", interval=0.001)
            assert await client.groups.call("g", "x", timeout=5.0) == ["n2", "x"]

        # A join made just before the hang: the member is unknown (not
        # unroutable) until it reaches the client, and callable once it has
        # and n2 is routable again. The join may come from the store while n2
        # is still stopped, or after n2 answers again: either order is waited.
        late = await cluster.spawn("n2", group="h")
        cluster.sigstop("n2")
        try:
            await wait_until(lambda: not client.cluster_view.is_routable("n2"), timeout=5,
                             what="n2 unroutable")
        finally:
            cluster.sigcont("n2")
        await wait_until(lambda: client.groups.get_members("h") == late
                         and client.cluster_view.is_routable("n2"), timeout=5,
                         what="the late join at the client, n2 routable again")
        assert await client.groups.call("h", "y", timeout=5.0) == ["n2", "y"]


@pytest.mark.e2e_stores("sqlite")
async def test_hung_node_whose_lock_file_was_deleted_expires_and_fences_itself_on_waking(
        ) -> None:
    # On one host only a deleted lock file lets a hung node's session expire;
    # the replaced node then behaves as on etcd: it fences itself on waking.
    async with LocalCluster(["n1", "n2"], heartbeat_timeout=0.5, session_ttl=0.5) as cluster:
        client = cluster.client
        await cluster.spawn("n2", group="g", count=2)
        await wait_until(lambda: len(client.groups.get_members("g")) == 2,
                         what="n2's members at the client")
        old = cluster.nodes["n2"]
        old_creation = await cluster.control("n2", "creation")
        db = Path(cluster.store.removeprefix("sqlite://"))
        assert client._store is not None
        session = (await client._store.snapshot("nodes/n2")).entries["nodes/n2"].session
        old.signal(signal.SIGSTOP)
        (db.with_name(db.name + ".locks") / session).unlink()
        await wait_until(lambda: client.cluster_view.peer("n2") is None, timeout=5,
                         what="n2's session to expire")
        assert client.groups.get_members("g") == []
        await cluster.start_node("n2")
        new_creation = await cluster.control("n2", "creation")
        new_pids = await cluster.spawn("n2", group="g")
        old.signal(signal.SIGCONT)
        assert await asyncio.wait_for(old.process.wait(), 15) == EXIT_FENCED
        assert sum(" fenced: " in line for line in old.log_text().splitlines()) == 1
        # It wrote nothing under the name it lost.
        entries = (await client._store.snapshot("scopes/default/n2/")).entries
        assert entries and all(f"/{new_creation}/" in key for key in entries)
        assert not any(f"/{old_creation}/" in key for key in entries)
        await wait_until(lambda: client.groups.get_members("g") == new_pids,
                         what="only the new n2's member")
        assert await client.groups.call("g", "x", timeout=5.0) == ["n2", "x"]
