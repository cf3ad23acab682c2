"""Local registered names (Erlang's register/whereis): what a user relies on.

A name names one live process of its node and dies with it, in the
synchronous half of the exit path, so ``whereis`` never answers a dead pid;
anywhere a pid is accepted, the name is accepted too.
"""

from __future__ import annotations

import asyncio

import pytest
from runtime_servers import WAIT, Probe, Recorder, crash, stop

import shoal

# -- register, whereis, registered, unregister -------------------------------------------


async def test_a_registered_name_is_found_and_listed(node: shoal.Node) -> None:
    pid = await node.spawn(Probe)
    assert node.whereis("db") is None
    node.register("db", pid)
    assert node.whereis("db") == pid
    assert node.registered() == ["db"]


async def test_unregister_frees_the_name_and_the_process_keeps_running(
        node: shoal.Node) -> None:
    pid = await node.spawn(Probe)
    node.register("db", pid)
    node.unregister("db")
    assert node.whereis("db") is None and node.registered() == []
    assert await node.call(pid, "still here") == "still here"
    node.register("cache", pid)  # free to take another name now
    assert node.whereis("cache") == pid


async def test_a_taken_name_is_refused_naming_its_holder(node: shoal.Node) -> None:
    first, second = await node.spawn(Probe), await node.spawn(Probe)
    node.register("db", first)
    with pytest.raises(shoal.NameInUse, match=f"registered name 'db' is held by {first}") as err:
        node.register("db", second)
    assert err.value.holder == str(first)
    assert node.whereis("db") == first


async def test_a_process_has_at_most_one_name(node: shoal.Node) -> None:
    pid = await node.spawn(Probe)
    node.register("db", pid)
    with pytest.raises(shoal.BadArgument, match="registered as 'db'"):
        node.register("cache", pid)
    assert node.registered() == ["db"]


async def test_register_refuses_what_erlang_calls_badarg(node: shoal.Node) -> None:
    pid = await node.spawn(Probe)
    for name in ("", "a/b", "x" * 256, 7, None):
        with pytest.raises(shoal.BadArgument) as bad:
            node.register(name, pid)  # type: ignore[arg-type]
        assert bad.value.argument == "name"
    with pytest.raises(shoal.BadArgument):
        node.register("db", ("t", pid.creation, pid.serial))  # type: ignore[arg-type]
    with pytest.raises(shoal.BadArgument, match="a pid of this node"):
        node.register("db", shoal.Pid("elsewhere", 1, 1))
    node.kill(pid)
    await node.wait_exit(pid, WAIT)
    with pytest.raises(shoal.NoSuchProcess):
        node.register("db", pid)
    with pytest.raises(shoal.BadArgument, match="a name registered on this node"):
        node.unregister("db")
    assert node.registered() == []


# -- a name dies with its process -----------------------------------------------------------


@pytest.mark.parametrize("how", ["crash", "stop", "kill", "exit"])
async def test_a_name_dies_with_its_process(node: shoal.Node, how: str) -> None:
    pid = await node.spawn(Probe)
    node.register("db", pid)
    if how == "crash":
        with pytest.raises(shoal.CallError):
            await node.call(pid, crash())
    elif how == "stop":
        await node.call(pid, stop("normal", reply="bye"))
    elif how == "kill":
        node.kill(pid)
    else:
        node.exit(pid, "shutdown")
    assert node.whereis("db") is None
    assert node.registered() == []
    await node.wait_exit(pid, WAIT)
    again = await node.spawn(Probe)
    node.register("db", again)  # the name is free for the next process
    assert node.whereis("db") == again


async def test_whereis_never_answers_a_process_still_in_terminate(node: shoal.Node) -> None:
    rec = Recorder()
    release = asyncio.Event()

    class SlowToStop(Probe):
        async def terminate(self, reason: shoal.Reason) -> None:
            rec.add("terminating", self.pid, self.node.whereis("db"))
            await release.wait()

    pid = await node.spawn(SlowToStop, rec)
    node.register("db", pid)
    node.exit(pid, "shutdown")
    # Gone in the same step that doomed the process, before terminate ran.
    assert node.whereis("db") is None
    seen = await rec.wait_for("terminating", pid)
    assert seen[2] is None
    exited = asyncio.ensure_future(node.wait_exit(pid, WAIT))  # blocked in terminate
    replacement = await node.spawn(Probe)
    node.register("db", replacement)
    assert await node.call("db", "who") == "who"
    release.set()
    assert await exited == "shutdown"
    assert node.whereis("db") == replacement


# -- a name where a pid goes ---------------------------------------------------------------


async def test_call_cast_and_send_by_name(node: shoal.Node) -> None:
    rec = Recorder()
    pid = await node.spawn(Probe, rec)
    node.register("db", pid)
    assert await node.call("db", lambda server, caller: server.pid) == pid
    node.cast("db", "c")
    node.send("db", "i")
    await rec.wait(lambda item: item == ("cast", pid, "c"))
    await rec.wait(lambda item: item == ("info", pid, "i"))


async def test_a_process_calls_another_by_name(node: shoal.Node) -> None:
    callee, caller = await node.spawn(Probe), await node.spawn(Probe)
    node.register("db", callee)
    answer = await node.call(caller, lambda server, _: server.call("db", "q"), timeout=WAIT)
    assert answer == "q"


async def test_an_unknown_name_raises_no_such_process_naming_it(node: shoal.Node) -> None:
    watcher = await node.spawn(Probe)
    with pytest.raises(shoal.NoSuchProcess, match="no process registered as 'ghost'") as err:
        await node.call("ghost", "q")
    assert err.value.pid == "ghost" and err.value.not_started
    for attempt in (lambda: node.cast("ghost", 1), lambda: node.send("ghost", 1),
                    lambda: node.monitor("ghost", watcher=watcher),
                    lambda: node.link(watcher, "ghost")):
        with pytest.raises(shoal.NoSuchProcess, match="'ghost'"):
            attempt()
    assert node.is_alive(watcher)  # nothing reached it


async def test_a_name_that_died_is_unknown_to_callers(node: shoal.Node) -> None:
    pid = await node.spawn(Probe)
    node.register("db", pid)
    node.kill(pid)
    with pytest.raises(shoal.NoSuchProcess, match="'db'"):
        await node.call("db", "q")


async def test_monitor_and_link_by_name_follow_the_named_process(node: shoal.Node) -> None:
    rec = Recorder()
    watcher = await node.spawn(Probe, rec, trap=True)
    target = await node.spawn(Probe)
    node.register("db", target)
    ref = node.monitor("db", watcher=watcher)
    node.link(watcher, "db")
    with pytest.raises(shoal.CallError):
        await node.call(target, crash())
    down = await rec.wait(lambda item: isinstance(item[2], shoal.Down))
    assert down[2].ref == ref and down[2].pid == target
    exit_ = await rec.wait(lambda item: isinstance(item[2], shoal.Exit))
    assert exit_[2].pid == target


async def test_a_tuple_or_other_value_is_still_no_pid(node: shoal.Node) -> None:
    pid = await node.spawn(Probe)
    node.register("db", pid)
    with pytest.raises(shoal.BadArgument):
        await node.call(tuple(pid), "q")
    with pytest.raises(shoal.BadArgument, match="a registered name"):
        node.cast(42, "q")  # type: ignore[arg-type]
