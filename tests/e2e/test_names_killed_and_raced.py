"""Cluster-wide names across real node processes, on SQLite and on etcd.

A name held on a node that is killed with SIGKILL is freed when the store
ends that node's session (SQLite: when a peer's broken connection makes it
probe the dead owner's lock; etcd: when the lease expires), and another
node can take it. Two node processes racing for one name: exactly one wins
every round, and the loser is told who won. Every wait is bounded.
"""

from __future__ import annotations

import asyncio

import pytest
from e2e_support import wait_until

import shoal
from shoal.testing.cluster import LocalCluster

E2E_STORES = ("sqlite", "etcd")
pytestmark = pytest.mark.timeout(120)

# etcd frees a killed node's names when its lease runs out: within the
# session TTL (5 s) of its last keepalive, plus etcd's 500 ms expiry check.
FREED_WITHIN = 15.0
RACE_ROUNDS = 8


async def test_a_name_held_on_a_killed_node_is_freed_and_taken_by_another(
        e2e_store: str) -> None:
    async with LocalCluster(["n1", "n2"]) as cluster:
        client = cluster.client
        [holder] = await cluster.spawn("n1")
        assert await cluster.control("n1", "register_global", "leader", holder) == ["ok"]
        await wait_until(lambda: client.whereis_global("leader") == holder, timeout=10.0,
                         what="the client to see the name")
        # A call by name from another node reaches the holder.
        assert await client.call(shoal.Global("leader"), "hi") == ["n1", "hi"]
        [successor] = await cluster.spawn("n2")
        refused = await cluster.control("n2", "register_global", "leader", successor)
        assert refused[:2] == ["error", "NameInUse"] and str(holder) in refused[2], refused

        cluster.kill9("n1")
        await cluster.wait_exit("n1")
        await wait_until(lambda: client.whereis_global("leader") is None,
                         timeout=FREED_WITHIN, what="the killed holder's name to be freed")
        assert await cluster.control("n2", "register_global", "leader", successor) == ["ok"]
        await wait_until(lambda: client.whereis_global("leader") == successor, timeout=10.0,
                         what="the client to see the new holder")
        assert await client.call(shoal.Global("leader"), "hi") == ["n2", "hi"]


async def test_two_node_processes_racing_for_one_name_exactly_one_wins(
        e2e_store: str) -> None:
    async with LocalCluster(["n1", "n2"]) as cluster:
        for round_ in range(RACE_ROUNDS):
            name = f"leader-{round_}"
            [p1], [p2] = await cluster.spawn("n1"), await cluster.spawn("n2")
            r1, r2 = await asyncio.gather(
                cluster.control("n1", "register_global", name, p1),
                cluster.control("n2", "register_global", name, p2))
            assert sorted([r1[0], r2[0]]) == ["error", "ok"], (r1, r2)
            winner, loser = (p1, r2) if r1 == ["ok"] else (p2, r1)
            assert loser[1] == "NameInUse" and str(winner) in loser[2], loser
            await wait_until(lambda n=name, w=winner: cluster.client.whereis_global(n) == w,
                             timeout=10.0, what=f"the client to see {name}'s winner")
            assert await cluster.client.call(shoal.Global(name), "pid") == winner
