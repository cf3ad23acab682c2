"""Every public entry point rejects a bad argument with BadArgument naming
the parameter, before doing anything (nothing needs undoing)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from runtime_servers import Probe

import shoal

NOT_PIDS: list[Any] = [None, "t.1.1", ("t", 1, 1), 7, ["not", "hashable"]]
# Where a registered name is accepted (call, cast, send, monitor, link), a
# str is a name: one that names no process raises NoSuchProcess (test_names.py).
NOT_TARGETS: list[Any] = [v for v in NOT_PIDS if not isinstance(v, str)]
# Past one year (MAX_TIMEOUT) a timeout is refused: 1e308 once raised
# OverflowError from the event loop and 1e17 a BadArgument naming a wire field.
BAD_TIMEOUTS: list[Any] = [0, -1, math.nan, math.inf, 1e308, 1e17, 10**400,
                           365 * 24 * 3600 + 1, "1", None, True]
BAD_GROUPS: list[Any] = ["", None, 3, ["g"], "x" * 2000]

Case = tuple[str, Callable[[shoal.Node, shoal.Pid], Any]]


def _cases() -> list[Any]:
    cases: list[Any] = []

    def add(argument: str, values: list[Any],
            make: Callable[[Any], Callable[[shoal.Node, shoal.Pid], Any]],
            name: str) -> None:
        for n, value in enumerate(values):
            cases.append(pytest.param(argument, make(value), id=f"{name}-{n}"))

    # processes
    add("behaviour", [Probe(), object, "Probe", None],
        lambda v: lambda node, pid: node.spawn(v), "spawn")
    add("args", [[1], "a", None], lambda v: lambda node, pid: node.spawn_opt(Probe, args=v),
        "spawn_opt.args")
    add("kwargs", [[("a", 1)], "a"],
        lambda v: lambda node, pid: node.spawn_opt(Probe, kwargs=v), "spawn_opt.kwargs")
    add("mailbox_size", [0, -2, 1.5, "3", 2**0 - 1],
        lambda v: lambda node, pid: node.spawn_opt(Probe, mailbox_size=v),
        "spawn_opt.mailbox_size")
    add("shutdown_timeout", [*BAD_TIMEOUTS[:-2], True],
        lambda v: lambda node, pid: node.spawn_opt(Probe, shutdown_timeout=v),
        "spawn_opt.shutdown_timeout")
    add("parent", NOT_PIDS[1:],
        lambda v: lambda node, pid: node.spawn_opt(Probe, link=True, parent=v),
        "spawn_opt.parent")
    add("link", [True], lambda v: lambda node, pid: node.spawn_opt(Probe, link=v),
        "spawn_opt.link-outside-a-process")
    # messaging
    add("pid", NOT_TARGETS, lambda v: lambda node, pid: node.call(v, "x"), "call.pid")
    add("timeout", BAD_TIMEOUTS, lambda v: lambda node, pid: node.call(pid, "x", timeout=v),
        "call.timeout")
    add("pid", NOT_TARGETS, lambda v: lambda node, pid: node.cast(v, "x"), "cast.pid")
    add("pid", NOT_TARGETS, lambda v: lambda node, pid: node.send(v, "x"), "send.pid")
    add("pid", NOT_PIDS, lambda v: lambda node, pid: node.wait_exit(v), "wait_exit.pid")
    add("timeout", BAD_TIMEOUTS, lambda v: lambda node, pid: node.wait_exit(pid, v),
        "wait_exit.timeout")
    add("pid", NOT_PIDS, lambda v: lambda node, pid: node.is_alive(v), "is_alive.pid")
    # monitors, links, exit signals
    add("pid", NOT_TARGETS, lambda v: lambda node, pid: node.monitor(v, watcher=pid),
        "monitor.pid")
    add("watcher", NOT_PIDS[1:], lambda v: lambda node, pid: node.monitor(pid, watcher=v),
        "monitor.watcher")
    add("watcher", [None], lambda v: lambda node, pid: node.monitor(pid, watcher=v),
        "monitor.no-watcher-outside-a-process")
    add("ref", [None, "ref", 1], lambda v: lambda node, pid: node.demonitor(v), "demonitor")
    add("a", NOT_TARGETS, lambda v: lambda node, pid: node.link(v, pid), "link.a")
    add("b", NOT_TARGETS, lambda v: lambda node, pid: node.link(pid, v), "link.b")
    add("a", NOT_TARGETS, lambda v: lambda node, pid: node.unlink(v, pid), "unlink.a")
    add("b", NOT_TARGETS, lambda v: lambda node, pid: node.unlink(pid, v), "unlink.b")
    add("pid", NOT_PIDS, lambda v: lambda node, pid: node.exit(v, "x"), "exit.pid")
    add("reason", [None, "", 3, shoal.Crash(type="x", message="y")],
        lambda v: lambda node, pid: node.exit(pid, v), "exit.reason")
    add("pid", NOT_PIDS, lambda v: lambda node, pid: node.kill(v), "kill.pid")
    # groups
    add("scope", ["", None, "a/b", ["s"]], lambda v: lambda node, pid: node.scope(v), "scope")
    add("group", BAD_GROUPS, lambda v: lambda node, pid: node.groups.join(v, pid), "join.group")
    add("pids", [*NOT_PIDS, [pid_of_elsewhere()]],
        lambda v: lambda node, pid: node.groups.join("g", v), "join.pids")
    add("group", BAD_GROUPS, lambda v: lambda node, pid: node.groups.leave(v, pid),
        "leave.group")
    add("pids", [*NOT_PIDS, pid_of_elsewhere()],
        lambda v: lambda node, pid: node.groups.leave("g", v), "leave.pids")
    add("group", BAD_GROUPS, lambda v: lambda node, pid: node.groups.get_members(v),
        "get_members")
    add("group", BAD_GROUPS, lambda v: lambda node, pid: node.groups.get_local_members(v),
        "get_local_members")
    add("group", BAD_GROUPS, lambda v: lambda node, pid: node.groups.select(v), "select.group")
    add("strategy", ["", "closest", None, ["random"]],
        lambda v: lambda node, pid: node.groups.select("g", strategy=v), "select.strategy")
    add("key", [None, object(), {1}],
        lambda v: lambda node, pid: node.groups.select("g", strategy="hash", key=v),
        "select.key")
    add("group", BAD_GROUPS, lambda v: lambda node, pid: node.groups.call(v, "x"),
        "group-call.group")
    add("timeout", BAD_TIMEOUTS, lambda v: lambda node, pid: node.groups.call("g", "x",
                                                                             timeout=v),
        "group-call.timeout")
    add("strategy", ["", "closest", None],
        lambda v: lambda node, pid: node.groups.call("g", "x", strategy=v),
        "group-call.strategy")
    add("key", [None, object()],
        lambda v: lambda node, pid: node.groups.call("g", "x", strategy="hash", key=v),
        "group-call.key")
    add("group", BAD_GROUPS, lambda v: lambda node, pid: node.groups.cast(v, "x"),
        "group-cast.group")
    # (None is valid here: it subscribes to the whole scope.)
    add("group", [g for g in BAD_GROUPS if g is not None],
        lambda v: lambda node, pid: node.groups.subscribe(v), "subscribe.group")
    add("limit", [0, -1, 1.5, "10", None],
        lambda v: lambda node, pid: node.groups.subscribe("g", limit=v), "subscribe.limit")
    add("group", BAD_GROUPS, lambda v: lambda node, pid: node.groups.monitor(v, watcher=pid),
        "groups-monitor.group")
    add("ref", [None, "r"], lambda v: lambda node, pid: node.groups.demonitor(v),
        "groups-demonitor.ref")
    return cases


def pid_of_elsewhere() -> shoal.Pid:
    return shoal.Pid("some-other-node", 1, 1)


@pytest.mark.parametrize(("argument", "use"), _cases())
async def test_bad_argument_is_rejected_and_named(
    node: shoal.Node, argument: str, use: Callable[[shoal.Node, shoal.Pid],
                                                   Awaitable[Any] | Any],
) -> None:
    pid = await node.spawn(Probe)
    before = (node.processes(), node.statistics())
    with pytest.raises(shoal.BadArgument) as info:
        result = use(node, pid)
        if isinstance(result, Awaitable):
            await result
    assert info.value.argument == argument, info.value
    assert argument in str(info.value)
    # Nothing was done: no process started or stopped, nothing joined.
    assert (node.processes(), repr(node.statistics())) == (before[0], repr(before[1]))
    assert node.is_alive(pid)


@pytest.mark.parametrize("timeout", [1e308, 1e17, 365 * 24 * 3600 + 1])
async def test_a_call_to_another_node_with_a_huge_timeout_names_timeout(
        node: shoal.Node, timeout: float) -> None:
    with pytest.raises(shoal.BadArgument) as info:
        await node.call(shoal.Pid("some-other-node", 1, 1), "x", timeout=timeout)
    assert info.value.argument == "timeout"
    assert "one year" in str(info.value)


async def test_a_timeout_of_exactly_one_year_is_accepted(node: shoal.Node) -> None:
    pid = await node.spawn(Probe)
    year = 365 * 24 * 3600
    assert await node.call(pid, "ping", timeout=year) == "ping"
    assert await node.call(pid, "ping", timeout=float(year)) == "ping"
    await node.groups.join("g", pid)
    assert await node.groups.call("g", "ping", timeout=year) == "ping"


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"name": ""}, "name"),
        ({"heartbeat_timeout": 1e308}, "heartbeat_timeout"),
        ({"session_ttl": math.nan}, "session_ttl"),
        ({"name": None}, "name"),
        ({"name": "a/b"}, "name"),
        ({"name": "x" * 300}, "name"),
        ({"name": 5}, "name"),
        ({"drain_timeout": 0}, "drain_timeout"),
        ({"drain_timeout": "5"}, "drain_timeout"),
        ({"drain_timeout": math.inf}, "drain_timeout"),
        ({"drain_timeout": -1.0}, "drain_timeout"),
    ],
)
def test_node_with_a_bad_argument_is_rejected_and_named(kwargs: dict[str, Any],
                                                         argument: str) -> None:
    with pytest.raises(shoal.BadArgument) as info:
        shoal.Node(**{"name": "t", "store": "memory://", **kwargs})
    assert info.value.argument == argument


def test_bad_argument_is_a_usage_error_and_a_value_error() -> None:
    error = shoal.BadArgument("x", 1, "something else")
    assert isinstance(error, shoal.UsageError)
    assert isinstance(error, ValueError)
    assert error.not_started
