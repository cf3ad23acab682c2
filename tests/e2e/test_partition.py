"""Partitions between chosen nodes (shoal.testing.partition): the fault
injector itself, and what callers see through it."""

from __future__ import annotations

import asyncio

import pytest
from e2e_support import group_on_every_node

from shoal.testing.cluster import LocalCluster, wait_until


async def test_a_cut_node_is_excluded_and_callers_keep_succeeding_then_it_heals() -> None:
    async with LocalCluster(["n1", "n2"], heartbeat_timeout=1.0, partitionable=True) as cluster:
        client = cluster.client
        await group_on_every_node(cluster, "g", per_node=2)
        view = client.cluster_view
        cluster.cut(cluster.client_name, "n1")
        await wait_until(lambda: not view.is_routable("n1"), timeout=10,
                         what="n1 unroutable at the client once cut off")
        assert view.is_routable("n2")
        served = [await client.groups.call("g", i, timeout=2.0) for i in range(50)]
        assert {node for node, _ in served} == {"n2"}  # every call succeeded, on n2
        cluster.heal()
        await wait_until(lambda: view.is_routable("n1"), timeout=10,
                         what="n1 routable again once healed")
        seen: set[str] = set()
        for i in range(200):
            node, _ = await client.groups.call("g", i, timeout=2.0, strategy="round_robin")
            seen.add(node)
            if seen == {"n1", "n2"}:
                break
        assert seen == {"n1", "n2"}


async def test_a_one_way_cut_silences_only_one_direction() -> None:
    async with LocalCluster(["n1"], heartbeat_timeout=1.0, partitionable=True) as cluster:
        client = cluster.client
        await group_on_every_node(cluster, "g", per_node=1)
        cluster.cut("n1", cluster.client_name, one_way=True)  # n1's bytes stall
        assert cluster.partitions is not None
        assert cluster.partitions.is_cut("n1", cluster.client_name)
        assert not cluster.partitions.is_cut(cluster.client_name, "n1")
        await wait_until(lambda: not client.cluster_view.is_routable("n1"), timeout=10,
                         what="n1 silent at the client")
        cluster.heal("n1")
        await wait_until(lambda: client.cluster_view.is_routable("n1"), timeout=10,
                         what="n1 heard again")
        node, value = await client.groups.call("g", "after", timeout=5.0)
        assert (node, value) == ("n1", "after")


async def test_cutting_without_a_partitionable_cluster_says_how() -> None:
    async with LocalCluster(["n1"]) as cluster:
        with pytest.raises(RuntimeError, match="partitionable=True"):
            cluster.cut("n1", cluster.client_name)
        assert await asyncio.wait_for(cluster.client.groups.sync(), 5) is None
