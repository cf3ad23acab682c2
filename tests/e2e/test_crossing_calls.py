"""Crossing first calls: nodes that never spoke call each other at once.

Both ends dial, two connections cross, and the transport keeps one (the one
initiated by the lower identity). The tie is settled when the losing
connection's acceptor admits or refuses it, after the proofs and before
either end of it is established, so no CALL is ever written on the loser
and every call is answered. (While admission was decided at HELLO, a call
could fail ``NodeDown``: "replaced by a new connection", about one in two
hundred in this scenario.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from e2e_support import wait_until

from shoal.testing.cluster import LocalCluster

pytestmark = pytest.mark.timeout(180)

NODES, ROUNDS = 7, 3
STAGGER = 0.0001  # seconds between the two first calls of one pair, rising per pair


async def test_nodes_making_their_first_calls_to_each_other_at_once_lose_none() -> None:
    env = {"SHOAL_AGENT_WORKERS": "w:1"}
    failures: list[Any] = []
    calls = 0
    for _ in range(ROUNDS):  # fresh nodes each round: every call is a first call
        async with LocalCluster(NODES, env=env, mesh=False) as cluster:
            client = cluster.client
            await wait_until(lambda c=client: len(c.groups.get_members("w")) == NODES,
                             what="a worker on every node")
            workers = {pid.node: pid for pid in client.groups.get_members("w")}
            for name in cluster.names:  # the client's own connections, made first
                await cluster.control(name, "creation")
            # Every pair calls both ways: the higher name at once, the lower
            # after a delay that differs per pair (0 to 2 ms), so the second
            # dial starts anywhere from before the first one's HELLO to
            # after its proofs.
            starts: dict[str, list[list[Any]]] = {name: [] for name in cluster.names}
            names = sorted(cluster.names)
            pairs = [(low, high) for i, low in enumerate(names) for high in names[i + 1:]]
            for k, (low, high) in enumerate(pairs):
                starts[high].append([0.0, workers[low]])
                starts[low].append([k * STAGGER, workers[high]])
            answers = await asyncio.gather(*(
                cluster.control(name, "call_many", starts[name], "hi", 10.0, timeout=60.0)
                for name in cluster.names))
            for name, results in zip(cluster.names, answers, strict=True):
                calls += len(results)
                failures += [(name, result) for result in results if result[0] != "ok"]
    assert calls == ROUNDS * NODES * (NODES - 1)
    assert failures == []
