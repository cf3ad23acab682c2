"""A child spec's name: the child is registered under it each time it starts."""

from __future__ import annotations

import pytest
from supervised import Recorder, live_pids, spec, started

import shoal
from shoal import supervisor as sv


async def test_a_child_is_reachable_by_its_local_name_across_restarts(
        node: shoal.Node) -> None:
    rec = Recorder()
    sup = await node.spawn(shoal.Supervisor, shoal.SupervisorSpec(
        children=[spec(rec, "db", name="database")], intensity=5))
    first = started(rec, "db")[0]
    assert node.whereis("database") == first
    assert await node.call("database", "ping") == "ping"
    node.cast("database", "crash")
    await rec.wait(lambda _: len(started(rec, "db")) == 2)
    await live_pids(node, sup)  # answered once the restart is done
    assert node.whereis("database") == started(rec, "db")[1]
    assert await node.call("database", "ping") == "ping"


async def test_a_child_is_reachable_by_its_global_name_across_restarts(
        node: shoal.Node) -> None:
    rec = Recorder()
    sup = await node.spawn(shoal.Supervisor, shoal.SupervisorSpec(
        children=[spec(rec, "db", name=shoal.Global("billing"))], intensity=5))
    assert node.whereis_global("billing") == started(rec, "db")[0]
    for restart in (1, 2):  # the old holder's key is released in the background
        node.cast(shoal.Global("billing"), "crash")
        await rec.wait(lambda _, n=restart: len(started(rec, "db")) == n + 1)
        await live_pids(node, sup)
        assert node.whereis_global("billing") == started(rec, "db")[restart]
    assert await node.call(shoal.Global("billing"), "ping") == "ping"


async def test_a_child_whose_name_is_taken_does_not_start(node: shoal.Node) -> None:
    rec = Recorder()
    squatter = await node.spawn(shoal.Supervisor)
    node.register("database", squatter)
    sup = await node.spawn(shoal.Supervisor, shoal.SupervisorSpec(children=[spec(rec, "a")]))
    with pytest.raises(shoal.ChildStartFailed) as failed:
        await sv.start_child(node, sup, spec(rec, "db", name="database"))
    assert "NameInUse" in failed.value.detail
    child = started(rec, "db")[0]
    assert not node.is_alive(child) and node.whereis("database") == squatter
    assert list(await live_pids(node, sup)) == ["a"]


def test_a_name_is_checked_when_the_spec_is_built() -> None:
    rec = Recorder()
    with pytest.raises(shoal.BadArgument):
        spec(rec, "x", name="a/b")
    with pytest.raises(shoal.BadArgument) as shared:
        shoal.SupervisorSpec(children=[spec(rec, "x", name="one")],
                             strategy="simple_one_for_one")
    assert shared.value.argument == "name"
