"""terminate and node shutdown (G4): when terminate runs, in which order,
and that stopping a node always finishes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from runtime_servers import WAIT, Probe, Recorder, block, crash, stop

import shoal

# -- when terminate runs ------------------------------------------------------------------


async def test_terminate_runs_on_a_crash_with_the_crash(node: shoal.Node) -> None:
    rec = Recorder()
    pid = await node.spawn(Probe, rec)
    node.cast(pid, crash("oops"))
    _, _, reason = await rec.wait_for("terminate", pid)
    assert isinstance(reason, shoal.Crash) and reason.message == "oops"


async def test_terminate_runs_on_stop_with_its_reason(node: shoal.Node) -> None:
    rec = Recorder()
    pid = await node.spawn(Probe, rec)
    node.send(pid, stop("finished"))
    assert await rec.wait_for("terminate", pid) == ("terminate", pid, "finished")


async def test_stop_from_a_call_replies_first_when_asked(node: shoal.Node) -> None:
    rec = Recorder()
    pid = await node.spawn(Probe, rec)
    assert await node.call(pid, stop("bye", reply="goodbye")) == "goodbye"
    assert await node.wait_exit(pid) in ("bye", shoal.NOPROC)
    assert rec.of("terminate") == [("terminate", pid, "bye")]


async def test_stop_from_a_call_without_reply_raises_process_exited(node: shoal.Node) -> None:
    pid = await node.spawn(Probe)
    with pytest.raises(shoal.ProcessExited) as info:
        await node.call(pid, stop("done"))
    assert info.value.reason == "done"


async def test_genserver_stop_helper_stops_the_process(node: shoal.Node) -> None:
    rec = Recorder()
    pid = await node.spawn(Probe, rec)
    assert await node.call(pid, lambda server, _: server.stop("via helper", reply=1)) == 1
    assert await rec.wait_for("terminate", pid) == ("terminate", pid, "via helper")


async def test_terminate_runs_on_an_exit_signal(node: shoal.Node) -> None:
    rec = Recorder()
    pid = await node.spawn(Probe, rec)
    node.exit(pid, "evicted")
    assert await rec.wait_for("terminate", pid) == ("terminate", pid, "evicted")


async def test_terminate_runs_on_node_shutdown_with_shutdown(node: shoal.Node) -> None:
    rec = Recorder()
    pids = [await node.spawn(Probe, rec) for _ in range(3)]
    await node.stop()
    assert sorted(rec.of("terminate")) == sorted(("terminate", p, "shutdown") for p in pids)
    assert node.processes() == []
    assert not node.running


async def test_terminate_does_not_run_on_kill(node: shoal.Node) -> None:
    rec = Recorder()
    pid = await node.spawn(Probe, rec)
    node.kill(pid)
    assert await node.wait_exit(pid) == shoal.KILLED
    assert rec.of("terminate") == []


async def test_kill_interrupts_a_terminate_in_progress(node: shoal.Node) -> None:
    entered = asyncio.Event()

    class SlowTerminate(shoal.GenServer):
        shutdown_timeout = 60.0

        async def terminate(self, reason: shoal.Reason) -> None:
            entered.set()
            await asyncio.Event().wait()

    pid = await node.spawn(SlowTerminate)
    exited = asyncio.ensure_future(node.wait_exit(pid))
    node.exit(pid, "leaving")
    await entered.wait()
    node.kill(pid)
    assert await asyncio.wait_for(exited, WAIT) == "leaving"


async def test_terminate_raising_is_logged_not_raised(
    node: shoal.Node, caplog: pytest.LogCaptureFixture,
) -> None:
    class BadTerminate(shoal.GenServer):
        async def terminate(self, reason: shoal.Reason) -> None:
            raise RuntimeError("cleanup failed")

    pid = await node.spawn(BadTerminate)
    node.exit(pid, "go")
    assert await node.wait_exit(pid) == "go"
    assert "terminate raised" in caplog.text


async def test_a_process_has_left_its_groups_when_terminate_runs(node: shoal.Node) -> None:
    seen: list[list[shoal.Pid]] = []

    class Member(shoal.GenServer):
        async def init(self) -> None:
            await self.node.groups.join("g", self.pid)

        async def terminate(self, reason: shoal.Reason) -> None:
            seen.append(self.node.groups.get_members("g"))

    pid = await node.spawn(Member)
    assert node.groups.get_members("g") == [pid]
    node.exit(pid, "bye")
    await node.wait_exit(pid)
    assert seen == [[]]


# -- node shutdown ------------------------------------------------------------------------


class Tree(shoal.GenServer):
    """Spawns ``children`` linked children, each spawning ``depth - 1`` more."""

    async def init(self, rec: Recorder, name: str, children: int, depth: int) -> None:
        self.rec, self.name = rec, name
        for n in range(children if depth > 0 else 0):
            await self.spawn(Tree, rec, f"{name}.{n}", children, depth - 1)

    async def terminate(self, reason: shoal.Reason) -> None:
        # Let the loop turn while terminating, so a parent stopped too
        # early would interleave with its children.
        await asyncio.sleep(0)
        self.rec.add("terminate", self.name, reason)


async def test_shutdown_terminates_children_before_their_parents(node: shoal.Node) -> None:
    rec = Recorder()
    await node.spawn(Tree, rec, "root", 2, 2)
    await node.stop()
    order = [name for _, name, _ in rec.of("terminate")]
    assert sorted(order) == sorted(["root", "root.0", "root.1", "root.0.0", "root.0.1",
                                    "root.1.0", "root.1.1"])
    for name in order:
        parent = name.rpartition(".")[0]
        if parent:
            assert order.index(name) < order.index(parent), order
    assert {reason for _, _, reason in rec.of("terminate")} == {"shutdown"}


async def test_a_terminate_that_hangs_is_cut_off_and_the_node_still_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder()

    class Hangs(shoal.GenServer):
        async def terminate(self, reason: shoal.Reason) -> None:
            rec.add("terminating", self.pid)
            await asyncio.Event().wait()

    node = shoal.Node("t", store="memory://")
    await node.start()
    hanging = await node.spawn_opt(Hangs, shutdown_timeout=0.05)
    fine = await node.spawn(Probe, rec)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.wait_for(node.stop(), WAIT)
    assert loop.time() - began < 1.0
    assert ("terminating", hanging) in rec.items
    assert ("terminate", fine, "shutdown") in rec.items
    assert node.processes() == []
    assert "took longer than" in caplog.text


async def test_stop_drains_a_call_in_progress_before_terminating() -> None:
    rec = Recorder()
    node = shoal.Node("t", store="memory://", drain_timeout=WAIT)
    await node.start()
    pid = await node.spawn(Probe, rec)
    release, started = asyncio.Event(), asyncio.Event()

    async def finish_work(server: Probe, caller: shoal.Caller) -> Any:
        started.set()
        await release.wait()
        server.rec.add("work done", server.pid)
        return "complete"

    call = asyncio.ensure_future(node.call(pid, finish_work))
    await started.wait()
    stopping = asyncio.ensure_future(node.stop())
    # One turn lets stop() run up to its drain, where it must wait.
    await asyncio.sleep(0)
    assert not call.done() and not stopping.done()
    assert rec.items == []
    release.set()
    assert await asyncio.wait_for(call, WAIT) == "complete"
    await asyncio.wait_for(stopping, WAIT)
    assert [item[0] for item in rec.items] == ["work done", "terminate"]


async def test_stop_leaves_every_group_before_draining() -> None:
    node = shoal.Node("t", store="memory://", drain_timeout=WAIT)
    await node.start()
    pid = await node.spawn(Probe)
    await node.groups.join("g", pid)
    sub = node.groups.subscribe("g")
    release, started = asyncio.Event(), asyncio.Event()
    call = asyncio.ensure_future(node.call(pid, block(release, started)))
    await started.wait()
    stopping = asyncio.ensure_future(node.stop())
    event = await asyncio.wait_for(sub.get(), WAIT)
    assert (event.kind, event.pids, event.reason) == ("leave", (pid,), "shutdown")
    # Left, yet still draining the call in flight.
    assert node.groups.get_members("g") == []
    with pytest.raises(shoal.NoMembers):
        node.groups.select("g")
    assert not call.done()
    release.set()
    assert await call == "released"
    await asyncio.wait_for(stopping, WAIT)


async def test_a_process_crashing_while_draining_does_not_hold_up_stop() -> None:
    node = shoal.Node("t", store="memory://", drain_timeout=30.0)
    await node.start()
    pid = await node.spawn(Probe)
    release, started = asyncio.Event(), asyncio.Event()

    async def crash_when_released(server: Probe, caller: shoal.Caller) -> Any:
        started.set()
        await release.wait()
        raise ValueError("mid-drain")

    call = asyncio.ensure_future(node.call(pid, crash_when_released))
    await started.wait()
    stopping = asyncio.ensure_future(node.stop())
    release.set()
    with pytest.raises(shoal.CallError):
        await call
    await asyncio.wait_for(stopping, WAIT)


async def test_a_stopped_node_refuses_to_spawn(node: shoal.Node) -> None:
    await node.stop()
    await node.stop()  # idempotent
    with pytest.raises(shoal.ShoalError):
        await node.spawn(Probe)


async def test_a_call_to_a_process_of_a_stopped_node_raises_no_such_process(
    node: shoal.Node,
) -> None:
    pid = await node.spawn(Probe)
    await node.stop()
    with pytest.raises(shoal.NoSuchProcess):
        await node.call(pid, "x")


async def test_wait_fenced_returns_why_the_node_fenced_itself() -> None:
    # What `shoal run` waits on to exit 3: a public call, not the replication's.
    async with shoal.Node("w", store="memory://", listen=None) as node:
        assert node.fenced is None
        pid = await node.spawn(Probe)
        waiting = asyncio.ensure_future(node.wait_fenced())
        assert node._replication is not None
        node._replication.fence("creation 2 holds the name now")
        assert await asyncio.wait_for(waiting, WAIT) == "creation 2 holds the name now"
        assert node.fenced == "creation 2 holds the name now"
        assert not node.is_alive(pid)  # a fenced node serves nothing


async def test_a_fenced_node_refuses_to_spawn() -> None:
    # A fenced node no longer owns its name: nothing may start under it,
    # or the app's own code would bring the zombie back to life locally.
    async with shoal.Node("w", store="memory://", listen=None) as node:
        assert node._replication is not None
        node._replication.fence("creation 2 holds the name now")
        with pytest.raises(shoal.ShoalError, match="not running"):
            await node.spawn(Probe)
        assert node.processes() == []


async def test_wait_fenced_on_a_node_never_started_says_it_is_not_running() -> None:
    with pytest.raises(shoal.ShoalError, match="not running"):
        await shoal.Node("w", store="memory://", listen=None).wait_fenced()
