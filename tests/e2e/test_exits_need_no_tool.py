"""The story's clean-up was needed because processes stopped without
leaving their groups. In shoal a process that ends by any path leaves every
group with no tool run: an exception, ``sys.exit()``, ``os._exit`` of its
node, ``kill -9`` of its node. ``shoal reap`` then finds nothing to remove,
at every step, and never lists a live member.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from e2e_support import group_on_every_node

import shoal
from shoal.cli import main
from shoal.store import read_snapshot
from shoal.testing.cluster import LocalCluster, wait_until


async def reap_plan(cluster: LocalCluster, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    code = await asyncio.to_thread(main, ["reap", "--store", cluster.store, "--json",
                                          "--timeout", "2"])
    assert code == 0
    plan = json.loads(capsys.readouterr().out)
    assert isinstance(plan, dict)
    return plan


async def members_in_store(cluster: LocalCluster) -> set[str]:
    """Node incarnations that still have membership keys in the store."""
    snapshot = await read_snapshot(cluster.store, "scopes/")
    return {"/".join(key.split("/")[2:4]) for key in snapshot.entries}


async def test_every_way_of_ending_leaves_the_groups_without_a_tool(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    async with LocalCluster(["n1", "n2"]) as cluster:
        monkeypatch.setenv("SHOAL_SECRET", cluster.secret)
        client = cluster.client
        pids = await group_on_every_node(cluster, "workers", per_node=3)
        members = lambda: set(client.groups.get_members("workers"))  # noqa: E731

        with pytest.raises(shoal.CallError, match="crash requested"):
            await client.call(pids["n1"][0], "crash")
        await wait_until(lambda: pids["n1"][0] not in members(), what="the crashed one gone")
        with pytest.raises(shoal.CallError, match="SystemExit"):
            await client.call(pids["n1"][1], "sys.exit")
        await wait_until(lambda: pids["n1"][1] not in members(), what="the exited one gone")
        plan = await reap_plan(cluster, capsys)
        # one worker left on n1, three on n2, and each node's control process
        assert plan["remove"] == [] and plan["live"] == 4 + 2

        with pytest.raises((shoal.NodeDown, shoal.ProcessExited)):
            await client.call(pids["n2"][0], "os._exit")
        await wait_until(lambda: not any(p.node == "n2" for p in members()), timeout=20,
                         what="n2's members gone after os._exit")
        cluster.kill9("n1")
        await wait_until(lambda: not members(), timeout=20,
                         what="n1's members gone after kill -9")
        assert await cluster.wait_exit("n2") == 5
        assert await members_in_store(cluster) == set()
        plan = await reap_plan(cluster, capsys)
        assert plan == {"remove": [], "unreachable_kept": [], "held": [], "live": 0,
                        "applied": None}
