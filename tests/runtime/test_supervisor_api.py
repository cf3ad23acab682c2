"""The supervision API: which/count/start/terminate/restart/delete_child, as OTP's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from supervised import Recorder, Worker, live_pids, spec, started

import shoal
from shoal import supervisor as sv
from shoal.testing.cluster import wait_until

SECRET = "supervisor-api-secret-0123456789abcdef"


@pytest.fixture
async def sup(node: shoal.Node) -> shoal.Pid:
    return await node.spawn(shoal.Supervisor, shoal.SupervisorSpec(
        children=[spec(Recorder(), "a"), spec(Recorder(), "b", restart="transient")],
        intensity=5))


async def test_which_children_lists_ids_pids_types_and_classes_in_start_order(
        node: shoal.Node, sup: shoal.Pid) -> None:
    children = await sv.which_children(node, sup)
    assert [(c.id, c.type, c.cls) for c in children] == [
        ("a", "worker", "supervised.Worker"), ("b", "worker", "supervised.Worker")]
    assert all(isinstance(c, shoal.ChildInfo) and c.pid is not None and node.is_alive(c.pid)
               for c in children)
    assert await sv.count_children(node, sup) == shoal.ChildCounts(
        specs=2, active=2, supervisors=0, workers=2)


async def test_terminate_restart_and_delete_child(node: shoal.Node, sup: shoal.Pid) -> None:
    old = (await live_pids(node, sup))["a"]
    assert old is not None
    await sv.terminate_child(node, sup, "a")
    assert not node.is_alive(old)
    assert await live_pids(node, sup) == {"a": None, "b": (await live_pids(node, sup))["b"]}
    assert (await sv.count_children(node, sup)).active == 1
    new = await sv.restart_child(node, sup, "a")
    assert new != old and node.is_alive(new)
    with pytest.raises(shoal.ChildRunning) as running:
        await sv.restart_child(node, sup, "a")
    assert running.value.problem == "running" and running.value.child == "a"
    with pytest.raises(shoal.ChildRunning):
        await sv.delete_child(node, sup, "a")
    await sv.terminate_child(node, sup, "a")
    await sv.delete_child(node, sup, "a")
    assert list(await live_pids(node, sup)) == ["b"]
    for call in (sv.terminate_child, sv.restart_child, sv.delete_child):
        with pytest.raises(shoal.NoSuchChild) as missing:
            await call(node, sup, "a")
        assert missing.value.problem == "not_found"
        assert isinstance(missing.value, shoal.UsageError)  # the caller's mistake


async def test_start_child_appends_a_child_and_refuses_a_known_id(
        node: shoal.Node, sup: shoal.Pid) -> None:
    rec = Recorder()
    pid = await sv.start_child(node, sup, spec(rec, "c", groups=[("default", "cs")]))
    assert started(rec, "c") == [pid] and node.groups.get_members("cs") == [pid]
    assert list(await live_pids(node, sup)) == ["a", "b", "c"]
    with pytest.raises(shoal.ChildExists) as exists:
        await sv.start_child(node, sup, spec(rec, "c"))
    assert exists.value.problem == "already_started" and exists.value.pid == pid
    await sv.terminate_child(node, sup, "c")
    with pytest.raises(shoal.ChildExists) as present:
        await sv.start_child(node, sup, spec(rec, "c"))
    assert present.value.problem == "already_present" and present.value.pid is None


async def test_start_child_whose_init_fails_keeps_no_spec(
        node: shoal.Node, sup: shoal.Pid) -> None:
    with pytest.raises(shoal.ChildStartFailed) as failed:
        await sv.start_child(node, sup, spec(Recorder(), "bad", fail=True))
    assert failed.value.child == "bad" and "refuses to start" in failed.value.detail
    assert list(await live_pids(node, sup)) == ["a", "b"]
    assert node.is_alive(sup)


async def test_restart_child_whose_init_fails_keeps_the_spec(node: shoal.Node) -> None:
    rec = Recorder()
    sup = await node.spawn(shoal.Supervisor, shoal.SupervisorSpec(
        children=[spec(rec, "t", restart="transient")]))
    first = started(rec, "t")[0]
    node.cast(first, ("stop", "normal"))  # transient, normal: kept, not restarted
    await node.wait_exit(first)
    assert await live_pids(node, sup) == {"t": None}
    assert await sv.restart_child(node, sup, "t") != first


async def test_simple_one_for_one_refuses_what_it_does_not_offer(node: shoal.Node) -> None:
    rec = Recorder()
    sup = await node.spawn(shoal.Supervisor, shoal.SupervisorSpec(
        children=[shoal.ChildSpec("w", Worker, args=(rec, "w"))],
        strategy="simple_one_for_one"))
    pid = await sv.start_child(node, sup, ())
    for call in (sv.restart_child, sv.delete_child):
        with pytest.raises(shoal.ChildError) as refused:
            await call(node, sup, "w")
        assert refused.value.problem == "simple_one_for_one"
    with pytest.raises(shoal.ChildError) as bad:
        await sv.start_child(node, sup, spec(rec, "x"))
    assert bad.value.problem == "bad_spec" and "tuple of arguments" in str(bad.value)
    with pytest.raises(shoal.BadRequest):
        await node.call(sup, "what are you?")  # not the API's: rejected, not a crash
    with pytest.raises(shoal.NoSuchChild):
        await sv.terminate_child(node, sup, "w")  # by pid there
    await sv.terminate_child(node, sup, pid)
    assert await sv.which_children(node, sup) == []
    assert await sv.count_children(node, sup) == (0, 0, 0, 0)
    assert node.is_alive(sup)


def test_bad_specs_are_refused_when_built_naming_the_field() -> None:
    rec = Recorder()
    cases = [
        (lambda: shoal.ChildSpec("", Worker), "id"),
        (lambda: shoal.ChildSpec("x", int), "cls"),  # type: ignore[arg-type]
        (lambda: spec(rec, "x", restart="sometimes"), "restart"),
        (lambda: spec(rec, "x", shutdown=-1), "shutdown"),
        (lambda: spec(rec, "x", shutdown="never"), "shutdown"),
        (lambda: spec(rec, "x", type="manager"), "type"),
        (lambda: spec(rec, "x", groups=["g"]), "groups"),
        (lambda: spec(rec, "x", groups="g"), "groups"),
        (lambda: shoal.SupervisorSpec(strategy="all_for_one"), "strategy"),
        (lambda: shoal.SupervisorSpec(intensity=-1), "intensity"),
        (lambda: shoal.SupervisorSpec(period=0), "period"),
        (lambda: shoal.SupervisorSpec(children=[spec(rec, "x"), spec(rec, "x")]), "children"),
        (lambda: shoal.SupervisorSpec(strategy="simple_one_for_one"), "children"),
    ]
    for build, field in cases:
        with pytest.raises(shoal.BadArgument) as bad:
            build()
        assert bad.value.argument == field


def test_spec_defaults_are_otps() -> None:
    worker = shoal.ChildSpec("w", Worker)
    assert (worker.restart, worker.shutdown, worker.type) == ("permanent", 5.0, "worker")
    nested = shoal.ChildSpec("s", shoal.Supervisor)
    assert (nested.shutdown, nested.type) == ("infinity", "supervisor")
    flags = shoal.SupervisorSpec()
    assert (flags.strategy, flags.intensity, flags.period) == ("one_for_one", 1, 5.0)


# -- across nodes ------------------------------------------------------------------


@pytest.fixture
async def two_nodes(tmp_path: Path) -> AsyncIterator[tuple[shoal.Node, shoal.Node]]:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("sup-host", store=store, secret=SECRET) as host, \
            shoal.Node("asker", store=store, secret=SECRET) as asker:
        await wait_until(lambda: asker.cluster_view.is_routable("sup-host")
                         or "sup-host" in asker.cluster_view.names(),
                         what="the supervisor's node seen")
        yield host, asker


async def test_the_api_works_by_pid_from_another_node(
        two_nodes: tuple[shoal.Node, shoal.Node]) -> None:
    host, asker = two_nodes
    rec = Recorder()
    sup = await host.spawn(shoal.Supervisor, shoal.SupervisorSpec(children=[spec(rec, "a")]))
    children = await sv.which_children(asker, sup)
    assert [(c.id, c.pid, c.type) for c in children] == [("a", started(rec, "a")[0], "worker")]
    assert isinstance(children[0], shoal.ChildInfo)
    assert await sv.count_children(asker, sup) == (1, 1, 0, 1)
    await sv.terminate_child(asker, sup, "a")
    with pytest.raises(shoal.NoSuchChild):
        await sv.delete_child(asker, sup, "zzz")
    pid = await sv.restart_child(asker, sup, "a")
    assert pid == started(rec, "a")[1]
    with pytest.raises(shoal.BadArgument):
        await sv.start_child(asker, sup, spec(rec, "b"))  # a class never travels
    dyn = await host.spawn(shoal.Supervisor, shoal.SupervisorSpec(
        children=[shoal.ChildSpec("w", Worker, args=(rec, "w"))],
        strategy="simple_one_for_one"))
    child = await sv.start_child(asker, dyn, ("from", "afar"))
    assert await asker.call(child, "extra") == ["from", "afar"]
