"""Nodes joining together and leaving gracefully, as real OS processes."""

from __future__ import annotations

import signal
import time

import pytest
from e2e_support import Attempts, Stream, wait_until

import shoal
from shoal.testing.agent import CONTROL_SCOPE
from shoal.testing.cluster import LocalCluster

# These scenarios run against the embedded store and against etcd (conftest.py).
E2E_STORES = ("sqlite", "etcd")


pytestmark = pytest.mark.timeout(60)


async def test_nodes_started_in_parallel_converge_on_every_member() -> None:
    names = [f"n{i}" for i in range(1, 6)]
    # Every node spawns its workers while the others start: all at once.
    async with LocalCluster(names, heartbeat_timeout=0.5,
                            env={"SHOAL_AGENT_WORKERS": "g:2"}) as cluster:
        client = cluster.client
        await wait_until(lambda: len(client.groups.get_members("g")) == 10,
                         what="the client to see 10 members")
        everyone = sorted(client.groups.get_members("g"))
        assert {p.node for p in everyone} == set(names)

        async def view(name: str) -> list[shoal.Pid]:
            return sorted(await cluster.control(name, "members", "default", "g"))

        deadline = time.monotonic() + 10
        pending = set(names)
        while pending:
            pending = {name for name in pending if await view(name) != everyone}
            assert time.monotonic() < deadline, f"{sorted(pending)} never saw every member"
        for name in names:
            controls = await cluster.control(name, "members", CONTROL_SCOPE, names[0])
            assert [p.node for p in controls] == [names[0]]
        # And every node can route a call to every other node's members.
        for name in names:
            for target in names:
                pid = next(p for p in everyone if p.node == target)
                reply = await cluster.control(name, "call", pid, "hi", 5.0)
                assert reply == ["ok", [target, "hi"]]


async def test_sigterm_leaves_groups_before_the_node_stops_answering() -> None:
    await _sigterm_under_group_calls(idempotent=True)


async def test_sigterm_fails_no_call_even_when_not_idempotent() -> None:
    await _sigterm_under_group_calls(idempotent=False)


async def _sigterm_under_group_calls(*, idempotent: bool) -> None:
    async with LocalCluster(3, heartbeat_timeout=0.5) as cluster:
        client = cluster.client
        for name in cluster.names:
            await cluster.spawn(name, group="g", count=2)
        await wait_until(lambda: len(client.groups.get_members("g")) == 6,
                         what="6 members at the client")
        attempts = Attempts(client)
        stream = Stream(client, "g", callers=8, idempotent=idempotent).start()
        await stream.wait_calls(300)
        assert stream.served_by("n2")
        assert client._remote.manager is not None
        seen: dict[str, float] = {}

        def watch() -> bool:
            now = time.monotonic()
            if not any(p.node == "n2" for p in client.groups.get_members("g")):
                seen.setdefault("left", now)
            if "n2" not in client._remote.manager.peers():  # type: ignore[union-attr]
                seen.setdefault("disconnected", now)
            return len(seen) == 2

        cluster.nodes["n2"].signal(signal.SIGTERM)
        await wait_until(watch, timeout=10, what="n2 to leave and disconnect")
        assert await cluster.wait_exit("n2") == 0
        await stream.wait_calls(300)
        await stream.stop()

        assert stream.failures() == []  # G4: nobody noticed the node going
        assert seen["left"] <= seen["disconnected"]
        assert client.cluster_view.peer("n2") is None  # its session ended
        if not idempotent:
            # A call that picked n2 just before its leave arrived was served,
            # or answered "no such process" and retried (never started).
            assert all(a.error is None or a.error.not_started
                       for a in attempts.to_node("n2"))
        assert {o.node for o in stream.outcomes[-100:]} == {"n1", "n3"}
        assert "Traceback" not in cluster.nodes["n2"].log_text()
