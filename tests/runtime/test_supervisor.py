"""Supervisors: strategies, restart types, intensity, shutdown, groups, reports."""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from supervised import Recorder, Worker, live_pids, spec, started

import shoal
from shoal.testing.cluster import wait_until


def sup_spec(*children: shoal.ChildSpec, **flags: Any) -> shoal.SupervisorSpec:
    return shoal.SupervisorSpec(children=children, **flags)


async def crash_and_wait_restart(node: shoal.Node, rec: Recorder, sup: shoal.Pid,
                                 name: str) -> None:
    """Crash child ``name``; return once the supervisor finished restarting."""
    before = len(started(rec, name))
    node.cast((await live_pids(node, sup))[name], "crash")  # type: ignore[arg-type]
    await rec.wait(lambda _: len(started(rec, name)) > before)
    await live_pids(node, sup)  # answered only after the whole restart


# -- start and stop order ------------------------------------------------------------


async def test_children_start_in_order_and_stop_in_reverse(node: shoal.Node) -> None:
    rec = Recorder()
    sup = await node.spawn(shoal.Supervisor, sup_spec(*(spec(rec, n) for n in "abc")))
    assert [item[1] for item in rec.of("start")] == ["a", "b", "c"]
    node.exit(sup, "shutdown")  # from the node itself: as from a parent
    assert await node.wait_exit(sup) == "shutdown"
    assert [item[1] for item in rec.of("terminated")] == ["c", "b", "a"]
    assert node.processes() == []


async def test_a_child_that_fails_to_start_fails_the_supervisor_and_stops_the_others(
        node: shoal.Node) -> None:
    rec = Recorder()
    with pytest.raises(shoal.CallError) as info:
        await node.spawn(shoal.Supervisor,
                         sup_spec(spec(rec, "a"), spec(rec, "b", fail=True), spec(rec, "c")))
    assert info.value.remote_type == "shoal.errors.ChildStartFailed"
    assert "'b'" in info.value.remote_message and "refuses to start" in info.value.remote_message
    assert [item[1] for item in rec.of("terminated")] == ["a"]
    assert node.processes() == []


# -- strategies ----------------------------------------------------------------------


@pytest.mark.parametrize(("strategy", "crashed", "restarted"), [
    ("one_for_one", "b", ["b"]),
    ("one_for_all", "b", ["a", "b", "c"]),
    ("rest_for_one", "b", ["b", "c"]),
    ("rest_for_one", "a", ["a", "b", "c"]),
    ("rest_for_one", "c", ["c"]),
])
async def test_strategy_restarts_exactly_its_children(
        node: shoal.Node, strategy: str, crashed: str, restarted: list[str]) -> None:
    rec = Recorder()
    sup = await node.spawn(shoal.Supervisor, sup_spec(*(spec(rec, n) for n in "abc"),
                                                      strategy=strategy))
    before = await live_pids(node, sup)
    rec.items.clear()
    await crash_and_wait_restart(node, rec, sup, crashed)
    after = await live_pids(node, sup)
    assert [item[1] for item in rec.of("start")] == restarted  # started in order
    stopped = [item[1] for item in rec.of("terminated") if item[1] != crashed]
    assert stopped == [n for n in "cba" if n in restarted and n != crashed]  # in reverse
    for name in "abc":
        assert (after[name] != before[name]) == (name in restarted)
        assert after[name] is not None and node.is_alive(after[name])


async def test_simple_one_for_one_starts_children_with_appended_args_and_restarts_them(
        node: shoal.Node) -> None:
    rec = Recorder()
    template = shoal.ChildSpec("conn", Worker, args=(rec, "conn"))
    sup = await node.spawn(shoal.Supervisor, sup_spec(template, strategy="simple_one_for_one"))
    assert await live_pids(node, sup) == {}
    one = await shoal.supervisor.start_child(node, sup, (1, "x"))
    two = await shoal.supervisor.start_child(node, sup, [2])
    assert await node.call(one, "extra") == [1, "x"]
    assert await node.call(two, "extra") == [2]
    node.cast(one, "crash")
    await rec.wait(lambda _: len(started(rec, "conn")) == 3)
    children = await shoal.supervisor.which_children(node, sup)
    assert [c.id for c in children] == [None, None]
    new = next(c.pid for c in children if c.pid != two)
    assert new is not None and new != one
    assert await node.call(new, "extra") == [1, "x"]  # restarted with the same args


# -- restart types -------------------------------------------------------------------


@pytest.mark.parametrize(("restart", "how", "restarted"), [
    ("permanent", "crash", True),
    ("permanent", "normal", True),
    ("permanent", "shutdown", True),
    ("transient", "crash", True),
    ("transient", "normal", False),
    ("transient", "shutdown", False),
    ("transient", "other", True),
    ("temporary", "crash", False),
    ("temporary", "normal", False),
])
async def test_restart_type_decides_whether_an_exit_is_restarted(
        node: shoal.Node, restart: str, how: str, restarted: bool) -> None:
    rec = Recorder()
    sup = await node.spawn(shoal.Supervisor,
                           sup_spec(spec(rec, "w", restart=restart), spec(rec, "sentinel")))
    first = started(rec, "w")[0]
    node.cast(first, "crash" if how == "crash" else ("stop", how))
    await node.wait_exit(first)
    children = await live_pids(node, sup)  # answered after the Exit was handled
    if restarted:
        assert children["w"] not in (None, first) and len(started(rec, "w")) == 2
    elif restart == "temporary":
        assert "w" not in children  # a temporary child's spec is forgotten
    else:
        assert children["w"] is None  # kept, not running
    counts = await shoal.supervisor.count_children(node, sup)
    assert counts.active == 1 + restarted


# -- intensity -----------------------------------------------------------------------


class Middle(shoal.Supervisor):
    """A subclassed supervisor: flags as class attributes, children from init's args."""

    intensity = 1
    period = 30.0

    def children(self, rec: Recorder) -> list[shoal.ChildSpec]:
        return [spec(rec, "leaf")]


async def test_intensity_exceeded_escalates_through_two_levels(
        node: shoal.Node, caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    top = await node.spawn(shoal.Supervisor, sup_spec(
        shoal.ChildSpec("middle", Middle, args=(rec,)), spec(rec, "sibling"),
        intensity=1, period=30.0))
    middles = [(await live_pids(node, top))["middle"]]
    caplog.set_level(logging.WARNING, logger="shoal")
    # Each middle allows one restart of its leaf; the second crash within
    # its period makes it give up, and top restarts it once, then gives up.
    for round_ in range(2):
        middle = middles[-1]
        assert middle is not None
        await crash_and_wait_restart(node, rec, middle, "leaf")
        leaf = (await live_pids(node, middle))["leaf"]
        assert leaf is not None
        node.cast(leaf, "crash")
        if round_ == 0:
            await rec.wait(lambda _: len(started(rec, "leaf")) == 3)
            middles.append((await live_pids(node, top))["middle"])
    assert await node.wait_exit(top) == "shutdown"
    assert node.processes() == []
    reports = [r.shoal_supervisor for r in caplog.records if hasattr(r, "shoal_supervisor")]
    assert [(r.supervisor, r.event, r.child_id) for r in reports] == [
        (middles[0], "restarted", "leaf"), (middles[0], "gave_up", "leaf"),
        (top, "restarted", "middle"),
        (middles[1], "restarted", "leaf"), (middles[1], "gave_up", "leaf"),
        (top, "gave_up", "middle")]
    assert [r.restarts for r in reports] == [1, 2, 1, 1, 2, 2]
    assert reports[2].reason == "shutdown" and reports[2].pid == middles[1]
    # the sibling was stopped once, last, when top gave up
    stopped = [item[1] for item in rec.of("terminated")]
    assert stopped.count("sibling") == 1 and stopped[-1] == "sibling"


async def test_a_restart_is_reported_once_with_id_reason_and_count(
        node: shoal.Node, caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    sup = await node.spawn(shoal.Supervisor, sup_spec(spec(rec, "a"), intensity=5))
    caplog.set_level(logging.WARNING, logger="shoal")
    await crash_and_wait_restart(node, rec, sup, "a")
    await crash_and_wait_restart(node, rec, sup, "a")
    reports = [r for r in caplog.records if hasattr(r, "shoal_supervisor")]
    assert len(reports) == 2 and all(r.levelno == logging.WARNING for r in reports)
    last: shoal.SupervisorLog = reports[1].shoal_supervisor
    assert (last.supervisor, last.event, last.child_id, last.restarts) == (sup, "restarted",
                                                                           "a", 2)
    assert isinstance(last.reason, shoal.Crash) and "crashed on purpose" in last.reason.message
    assert last.pid == started(rec, "a")[-1]
    assert "'a'" in reports[1].getMessage() and "restart 2" in reports[1].getMessage()


# -- shutdown ------------------------------------------------------------------------


async def test_a_terminate_that_outlasts_the_shutdown_timeout_is_killed(
        node: shoal.Node) -> None:
    rec = Recorder()
    sup = await node.spawn(shoal.Supervisor, sup_spec(spec(rec, "slow", hang=True,
                                                            shutdown=0.2)))
    child = started(rec, "slow")[0]
    loop = asyncio.get_running_loop()
    began = loop.time()
    await shoal.supervisor.terminate_child(node, sup, "slow")
    assert 0.15 <= loop.time() - began < 2.0
    assert not node.is_alive(child) and node.local_process(child) is None
    assert rec.of("terminate") and not rec.of("terminated")  # it ran, and was cut short


async def test_brutal_kill_skips_terminate(node: shoal.Node) -> None:
    rec = Recorder()
    sup = await node.spawn(shoal.Supervisor, sup_spec(spec(rec, "b", shutdown="brutal_kill"),
                                                      spec(rec, "c")))
    await shoal.supervisor.terminate_child(node, sup, "b")
    assert not node.is_alive(started(rec, "b")[0])
    assert rec.of("terminate") == []
    node.exit(sup, "shutdown")
    await node.wait_exit(sup)
    assert [item[1] for item in rec.of("terminate")] == ["c"]


async def test_a_child_trapping_exits_still_stops_when_its_supervisor_says_shutdown(
        node: shoal.Node) -> None:
    """As OTP's gen_server: the parent's exit signal is not a message to it."""
    rec = Recorder()
    sup = await node.spawn(shoal.Supervisor, sup_spec(spec(rec, "t", trap=True, shutdown=5.0)))
    await shoal.supervisor.terminate_child(node, sup, "t")
    pid = started(rec, "t")[0]
    assert not node.is_alive(pid)
    assert rec.of("terminated") == [("terminated", "t", pid, "shutdown")]
    assert (await live_pids(node, sup)) == {"t": None}


async def test_a_trapping_child_whose_terminate_hangs_is_killed_after_its_shutdown_timeout(
        node: shoal.Node) -> None:
    rec = Recorder()
    sup = await node.spawn(shoal.Supervisor,
                           sup_spec(spec(rec, "t", trap=True, hang=True, shutdown=0.1)))
    await shoal.supervisor.terminate_child(node, sup, "t")
    pid = started(rec, "t")[0]
    assert not node.is_alive(pid)
    assert [item[1] for item in rec.of("terminate")] == ["t"]
    assert rec.of("terminated") == []  # cut short by the kill


async def test_nothing_is_restarted_once_the_node_is_stopping(
        node: shoal.Node, caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    await node.spawn(shoal.Supervisor, sup_spec(spec(rec, "a"), intensity=5))
    child = started(rec, "a")[0]
    crash = asyncio.Event()
    call = asyncio.create_task(node.call(child, crash))
    await wait_until(lambda: node.local_process(child).current is not None,  # type: ignore[union-attr]
                     what="the call in progress")
    caplog.set_level(logging.WARNING, logger="shoal")
    stopping = asyncio.create_task(node.stop())  # drains: waits for the call in progress
    await wait_until(lambda: node.stopping, what="the node stopping")
    crash.set()  # the child crashes while its node drains
    with pytest.raises(shoal.CallError):
        await call
    await stopping
    assert len(started(rec, "a")) == 1
    assert not [r for r in caplog.records if hasattr(r, "shoal_supervisor")]


# -- groups --------------------------------------------------------------------------


class GroupReader(shoal.GenServer):
    """Records the members of a group as its ``init`` sees them."""

    async def init(self, rec: Recorder, group: str) -> None:
        rec.add("seen", self.pid, list(self.node.groups.get_members(group)))


async def test_a_child_is_in_its_groups_before_the_next_child_starts(
        node: shoal.Node) -> None:
    rec = Recorder()
    sup = await node.spawn(shoal.Supervisor, sup_spec(
        spec(rec, "a", groups=[("default", "g"), ("other", "h")]),
        shoal.ChildSpec("reader", GroupReader, args=(rec, "g")), strategy="one_for_all",
        intensity=5))
    assert rec.of("seen")[0][2] == [started(rec, "a")[0]]
    assert node.scope("other").get_members("h") == [started(rec, "a")[0]]
    # restarted (one_for_all: both restart, in order): the reader sees the new one
    await crash_and_wait_restart(node, rec, sup, "a")
    assert rec.of("seen")[1][2] == [started(rec, "a")[1]]
    assert node.groups.get_members("g") == [started(rec, "a")[1]]


async def test_the_group_never_lacks_a_started_child_as_another_process_sees_it(
        node: shoal.Node) -> None:
    rec = Recorder()
    template = shoal.ChildSpec("w", Worker, args=(rec, "w"), groups=[("default", "g")])
    sup = await node.spawn(shoal.Supervisor, sup_spec(template, strategy="simple_one_for_one",
                                                      intensity=10))
    for n in range(3):
        pid = await shoal.supervisor.start_child(node, sup, (n,))
        assert pid in node.groups.get_members("g")  # when start_child returns
    # A crash: the exit path removes it (G1) and the restart adds the new
    # one before the supervisor answers anything.
    old = started(rec, "w")[0]
    node.cast(old, "crash")
    await rec.wait(lambda _: len(started(rec, "w")) == 4)
    children = {c.pid for c in await shoal.supervisor.which_children(node, sup)}
    assert set(node.groups.get_members("g")) == children and old not in children


# -- hot reload ----------------------------------------------------------------------


async def test_children_started_after_a_reload_run_the_new_class(
        node: shoal.Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "reloaded_worker_for_tests.py"
    text = ("import shoal\n\nclass Versioned(shoal.GenServer):\n"
            "    async def handle_call(self, request, caller):\n        return {v}\n")
    source.write_text(text.format(v=1))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # same size, same second
    module = importlib.import_module("reloaded_worker_for_tests")
    try:
        sup = await node.spawn(shoal.Supervisor, sup_spec(
            shoal.ChildSpec("v", module.Versioned), intensity=5))
        first = (await live_pids(node, sup))["v"]
        assert first is not None and await node.call(first, "version") == 1
        source.write_text(text.format(v=2))
        importlib.invalidate_caches()
        importlib.reload(module)
        node.kill(first)
        await node.wait_exit(first)
        second = (await live_pids(node, sup))["v"]
        assert second is not None and second != first
        assert await node.call(second, "version") == 2
        info = await shoal.supervisor.which_children(node, sup)
        assert info[0].cls == "reloaded_worker_for_tests.Versioned"
    finally:
        sys.modules.pop("reloaded_worker_for_tests", None)
