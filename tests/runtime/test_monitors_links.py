"""Monitors and links: who hears about an exit, with which reason."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from runtime_servers import Probe, Recorder, crash, stop

import shoal


async def _watched(node: shoal.Node) -> tuple[Recorder, shoal.Pid, shoal.Pid, shoal.Ref]:
    rec = Recorder()
    target = await node.spawn(Probe)
    watcher = await node.spawn(Probe, rec)
    ref = node.monitor(target, watcher=watcher)
    return rec, target, watcher, ref


async def _down(rec: Recorder, watcher: shoal.Pid) -> shoal.Down:
    _, _, message = await rec.wait(
        lambda item: item[:2] == ("info", watcher) and isinstance(item[2], shoal.Down))
    assert isinstance(message, shoal.Down)
    return message


# -- monitors ------------------------------------------------------------------------


async def test_down_carries_the_reason_of_a_stop(node: shoal.Node) -> None:
    rec, target, watcher, ref = await _watched(node)
    node.cast(target, stop("done"))
    assert await _down(rec, watcher) == shoal.Down(ref=ref, pid=target, reason="done")


async def test_down_carries_normal_for_a_plain_stop(node: shoal.Node) -> None:
    rec, target, watcher, _ref = await _watched(node)
    node.send(target, stop())
    assert (await _down(rec, watcher)).reason == shoal.NORMAL


async def test_down_carries_the_crash_with_the_exception_type(node: shoal.Node) -> None:
    rec, target, watcher, ref = await _watched(node)
    node.cast(target, crash("bad state"))
    down = await _down(rec, watcher)
    assert down.ref == ref and down.pid == target
    assert isinstance(down.reason, shoal.Crash)
    assert down.reason.type == "builtins.ValueError"
    assert down.reason.message == "bad state"


async def test_down_says_killed_after_a_kill(node: shoal.Node) -> None:
    rec, target, watcher, _ref = await _watched(node)
    node.kill(target)
    assert (await _down(rec, watcher)).reason == shoal.KILLED


async def test_down_says_shutdown_after_an_exit_signal_shutdown(node: shoal.Node) -> None:
    rec, target, watcher, ref = await _watched(node)
    node.exit(target, shoal.SHUTDOWN)
    assert await _down(rec, watcher) == shoal.Down(ref=ref, pid=target,
                                                   reason=shoal.SHUTDOWN)


async def test_down_carries_a_user_exit_reason(node: shoal.Node) -> None:
    rec, target, watcher, _ref = await _watched(node)
    node.exit(target, "rebalance")
    assert (await _down(rec, watcher)).reason == "rebalance"


async def test_monitoring_a_dead_pid_gives_an_immediate_noproc_down(node: shoal.Node) -> None:
    rec = Recorder()
    watcher = await node.spawn(Probe, rec)
    dead = await node.spawn(Probe)
    node.kill(dead)
    await node.wait_exit(dead)
    for target in (dead, shoal.Pid(node.name, node.creation, 10**9)):
        ref = node.monitor(target, watcher=watcher)
        await node.call(watcher, "sync")
        assert rec.of("info")[-1] == ("info", watcher,
                                      shoal.Down(ref=ref, pid=target, reason=shoal.NOPROC))


async def test_monitor_from_inside_a_process_uses_the_process_as_watcher(
    node: shoal.Node,
) -> None:
    rec = Recorder()
    watcher = await node.spawn(Probe, rec)
    target = await node.spawn(Probe)
    ref = await node.call(watcher, lambda server, _: server.monitor(target))
    node.kill(target)
    assert await _down(rec, watcher) == shoal.Down(ref=ref, pid=target, reason="killed")


async def test_each_monitor_gets_its_own_down(node: shoal.Node) -> None:
    rec, target, watcher, ref = await _watched(node)
    ref2 = node.monitor(target, watcher=watcher)
    node.kill(target)
    await rec.wait(lambda item: len(rec.of("info")) == 2)
    assert {m.ref for _, _, m in rec.of("info")} == {ref, ref2}


async def test_demonitor_means_no_down_arrives(node: shoal.Node) -> None:
    rec, target, watcher, ref = await _watched(node)
    node.demonitor(ref)
    node.kill(target)
    await node.wait_exit(target)
    await node.call(watcher, "sync")
    assert rec.of("info") == []


async def test_demonitor_removes_a_down_already_queued(node: shoal.Node) -> None:
    rec = Recorder()
    watcher = await node.spawn(Probe, rec)
    target = await node.spawn(Probe)

    async def race(server: Probe, caller: shoal.Caller) -> None:
        ref = server.monitor(target)
        server.node.kill(target)
        await server.node.wait_exit(target)  # the Down is now in our mailbox
        server.demonitor(ref)

    await node.call(watcher, race)
    await node.call(watcher, "sync")
    assert rec.of("info") == []


async def test_demonitor_of_an_unknown_ref_is_ignored(node: shoal.Node) -> None:
    node.demonitor(node.make_ref())


async def test_a_watcher_that_exits_first_drops_its_monitors(node: shoal.Node) -> None:
    rec, target, watcher, _ref = await _watched(node)
    node.kill(watcher)
    await node.wait_exit(watcher)
    node.kill(target)
    await node.wait_exit(target)
    assert rec.of("info") == []
    assert node.statistics().monitors == 0


# -- links ------------------------------------------------------------------------------


async def _chain(node: shoal.Node, rec: Recorder, *, trap_last: bool = False
                 ) -> list[shoal.Pid]:
    a = await node.spawn(Probe, rec)
    b = await node.spawn(Probe, rec)
    c = await node.spawn(Probe, rec, trap=trap_last)
    node.link(a, b)
    node.link(b, c)
    return [a, b, c]


async def test_a_crash_propagates_along_a_link_chain(node: shoal.Node) -> None:
    rec = Recorder()
    a, b, c = await _chain(node, rec)
    node.cast(a, crash("first domino"))
    reasons = [await node.wait_exit(pid) for pid in (c,)]
    assert not any(node.is_alive(p) for p in (a, b, c))
    terminated = {pid: reason for _, pid, reason in rec.of("terminate")}
    assert set(terminated) == {a, b, c}
    for reason in [*terminated.values(), *reasons]:
        assert isinstance(reason, shoal.Crash)
        assert reason.message == "first domino"


async def test_a_normal_exit_does_not_propagate(node: shoal.Node) -> None:
    rec = Recorder()
    a, b, c = await _chain(node, rec)
    node.cast(a, stop())
    await rec.wait_for("terminate", a)
    await node.call(b, "sync")
    await node.call(c, "sync")
    assert node.is_alive(b) and node.is_alive(c)
    assert not node.is_alive(a)


async def test_a_trapping_process_gets_exit_and_survives(node: shoal.Node) -> None:
    rec = Recorder()
    a, b, c = await _chain(node, rec, trap_last=True)
    node.cast(a, crash("boom"))
    _, _, message = await rec.wait(lambda item: item[:2] == ("info", c))
    assert isinstance(message, shoal.Exit)
    assert message.pid == b
    assert isinstance(message.reason, shoal.Crash) and message.reason.message == "boom"
    assert node.is_alive(c)
    assert await node.call(c, "still here") == "still here"


async def test_a_trapping_process_sees_normal_exits_too(node: shoal.Node) -> None:
    rec = Recorder()
    a = await node.spawn(Probe, rec)
    b = await node.spawn(Probe, rec, trap=True)
    node.link(a, b)
    node.cast(a, stop())
    _, _, message = await rec.wait(lambda item: item[:2] == ("info", b))
    assert message == shoal.Exit(pid=a, reason=shoal.NORMAL)


async def test_exit_kill_kills_a_trapping_process_without_terminate(node: shoal.Node) -> None:
    rec = Recorder()
    pid = await node.spawn(Probe, rec, trap=True)
    node.exit(pid, "kill")
    assert await node.wait_exit(pid) == shoal.KILLED
    assert rec.of("terminate") == []
    assert rec.of("info") == []


async def test_an_exit_signal_to_a_trapping_process_arrives_as_exit(node: shoal.Node) -> None:
    rec = Recorder()
    pid = await node.spawn(Probe, rec, trap=True)
    node.exit(pid, "please stop")
    _, _, message = await rec.wait_for("info", pid)
    assert message == shoal.Exit(pid=node.self_pid, reason="please stop")
    assert node.is_alive(pid)


async def test_an_exit_signal_stops_a_process_that_does_not_trap(node: shoal.Node) -> None:
    rec = Recorder()
    pid = await node.spawn(Probe, rec)
    node.exit(pid, "please stop")
    assert await node.wait_exit(pid) == "please stop"
    assert rec.of("terminate") == [("terminate", pid, "please stop")]


async def test_exit_normal_is_ignored_by_a_process_that_does_not_trap(
    node: shoal.Node,
) -> None:
    pid = await node.spawn(Probe)
    node.exit(pid, shoal.NORMAL)
    assert await node.call(pid, "alive") == "alive"


async def test_processes_linked_to_a_killed_process_get_killed(node: shoal.Node) -> None:
    rec = Recorder()
    a, b, c = await _chain(node, rec, trap_last=True)
    node.kill(a)
    _, _, message = await rec.wait(lambda item: item[:2] == ("info", c))
    assert message == shoal.Exit(pid=b, reason=shoal.KILLED)
    # b was stopped by a "killed" signal, which is trappable and runs terminate.
    assert ("terminate", b, shoal.KILLED) in rec.items
    assert ("terminate", a, shoal.KILLED) not in rec.items


async def test_link_to_a_dead_pid_sends_a_noproc_signal(node: shoal.Node) -> None:
    rec = Recorder()
    trapper = await node.spawn(Probe, rec, trap=True)
    dead = await node.spawn(Probe)
    node.kill(dead)
    await node.wait_exit(dead)
    node.link(trapper, dead)
    _, _, message = await rec.wait_for("info", trapper)
    assert message == shoal.Exit(pid=dead, reason=shoal.NOPROC)

    plain = await node.spawn(Probe, rec)
    with pytest.raises(shoal.ProcessExited) as info:
        await node.call(plain, lambda server, _: server.link(dead))
    assert info.value.reason == shoal.NOPROC
    assert not node.is_alive(plain)


async def test_unlink_stops_propagation(node: shoal.Node) -> None:
    a = await node.spawn(Probe)
    b = await node.spawn(Probe)
    node.link(a, b)
    node.unlink(b, a)
    node.kill(a)
    await node.wait_exit(a)
    assert await node.call(b, "alive") == "alive"


async def test_spawned_child_is_linked_to_its_parent(node: shoal.Node) -> None:
    rec = Recorder()
    parent = await node.spawn(Probe, rec)

    async def spawn_child(server: Probe, caller: shoal.Caller) -> Any:
        return await server.spawn(Probe, rec)

    child = await node.call(parent, spawn_child)
    node.cast(parent, crash("parent failed"))
    reason = await node.wait_exit(child)
    assert isinstance(reason, shoal.Crash) and reason.message == "parent failed"


async def test_link_from_outside_a_process_with_spawn_opt_requires_a_parent(
    node: shoal.Node,
) -> None:
    with pytest.raises(shoal.BadArgument) as info:
        await node.spawn_opt(Probe, link=True)
    assert info.value.argument == "link"
    parent = await node.spawn(Probe)
    child = await node.spawn_opt(Probe, link=True, parent=parent)
    node.kill(parent)
    assert await node.wait_exit(child) == shoal.KILLED


class TrappingChild(shoal.GenServer):
    """Traps exits; records what reaches handle_info and terminate."""

    async def init(self, seen: list[Any]) -> None:
        self.seen = seen
        self.trap_exit = True

    async def handle_info(self, message: Any) -> None:
        self.seen.append(("info", message))

    async def terminate(self, reason: shoal.Reason) -> None:
        self.seen.append(("terminate", reason))


class Parent(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return await self.spawn(TrappingChild, request)  # linked, with this as parent


async def test_an_exit_signal_from_its_parent_stops_a_trapping_process_as_otp_does(
        node: shoal.Node) -> None:
    seen: list[Any] = []
    parent = await node.spawn(Parent)
    child = await node.call(parent, seen)
    other = await node.spawn(Probe)
    node.link(other, child)
    node.exit(other, "bye")  # a linked process that is not its parent: a message
    await node.wait_exit(other)
    assert node.is_alive(child)  # trapped: it got an Exit message
    child_exit = asyncio.create_task(node.wait_exit(child))
    node.exit(parent, "shutdown")  # the parent stops; its exit signal reaches the child
    assert await child_exit == "shutdown"
    assert seen[0][0] == "info" and isinstance(seen[0][1], shoal.Exit)
    assert seen[0][1].pid == other
    assert seen[1:] == [("terminate", "shutdown")]  # never in handle_info
