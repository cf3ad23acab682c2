"""The README's "Failure testing" example, as a user would write it: only
the public ``shoal.testing`` API, a small app of their own."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

import shoal
from shoal.testing import LocalCluster, wait_until

APP = '''
import shoal


class Worker(shoal.GenServer):
    async def handle_call(self, request, caller):
        return [self.node.name, request]


async def setup(node):
    for _ in range(2):
        await node.groups.join("workers", await node.spawn(Worker))
'''


async def test_callers_keep_succeeding_while_a_node_is_cut_off(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(APP, encoding="utf-8")
    async with LocalCluster(["a", "b", "c"], app="myapp:setup", partitionable=True,
                            heartbeat_timeout=1.0,
                            env={"PYTHONPATH": str(tmp_path)}) as cluster:
        client = cluster.client
        await wait_until(lambda: len(client.groups.get_members("workers")) == 6,
                         what="six workers")
        cluster.cut("a", cluster.client_name)          # a partition: a <-/-> the callers
        served = []
        for i in range(300):
            node, value = await client.groups.call("workers", i, timeout=5.0,
                                                   idempotent=True)
            assert value == i
            served.append(node)
        assert set(served[-100:]) == {"b", "c"}        # a is excluded once silent
        cluster.heal()
        await wait_until(lambda: client.cluster_view.is_routable("a"), what="a back")


async def test_a_node_killed_and_restarted_serves_again_under_its_name(
        tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(APP, encoding="utf-8")
    async with LocalCluster(["a", "b"], app="myapp:setup",
                            env={"PYTHONPATH": str(tmp_path)}) as cluster:
        client = cluster.client
        old = cluster.nodes["a"].creation
        cluster.kill9("a")
        await wait_until(lambda: not any(p.node == "a"
                                         for p in client.groups.get_members("workers")),
                         what="a's workers gone")
        await cluster.restart("a")
        assert cluster.nodes["a"].creation != old
        await wait_until(lambda: len(client.groups.get_members("workers")) == 4,
                         what="a's new workers")


async def test_the_store_refusing_writes_does_not_stop_calls(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(APP, encoding="utf-8")
    async with LocalCluster(["a"], app="myapp:setup",
                            env={"PYTHONPATH": str(tmp_path)}) as cluster:
        client = cluster.client
        await wait_until(lambda: len(client.groups.get_members("workers")) == 2,
                         what="two workers")
        async with cluster.store_outage():
            for i in range(50):
                assert (await client.groups.call("workers", i, timeout=2.0))[1] == i


async def test_a_failing_block_shows_every_nodes_log(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "myapp.py").write_text(APP, encoding="utf-8")
    with pytest.raises(shoal.NoMembers):
        async with LocalCluster(["a"], app="myapp:setup",
                                env={"PYTHONPATH": str(tmp_path)}) as cluster:
            await cluster.client.groups.call("nobody", 1)
    err = capsys.readouterr().err
    assert "----- log of node a" in err and "ready" not in err.split("-----")[0]


@pytest.mark.e2e_stores("etcd")
async def test_a_node_replaced_while_hung_fences_itself_when_it_wakes(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(APP, encoding="utf-8")
    async with LocalCluster(["a", "b"], app="myapp:setup", session_ttl=1.0,
                            heartbeat_timeout=0.5,
                            env={"PYTHONPATH": str(tmp_path)}) as cluster:
        client = cluster.client
        old = cluster.nodes["a"]
        new = await cluster.replace_hung("a")        # waits for the hung one's lease to end
        assert new.creation != old.creation
        old.signal(signal.SIGCONT)
        assert await asyncio.wait_for(old.process.wait(), 15) == 3    # it fenced itself
        await wait_until(lambda: {p.creation for p in client.groups.get_members("workers")
                                  if p.node == "a"} == {new.creation}, what="the new a's workers")
        assert (await client.groups.call("workers", "x", timeout=5.0))[1] == "x"


async def test_replacing_a_hung_node_is_refused_on_the_embedded_store(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(APP, encoding="utf-8")
    async with LocalCluster(["a"], app="myapp:setup",
                            env={"PYTHONPATH": str(tmp_path)}) as cluster:
        with pytest.raises(RuntimeError, match="etcd"):
            await cluster.replace_hung("a")
        assert (await cluster.client.groups.call("workers", 1, timeout=5.0))[1] == 1  # not hung
