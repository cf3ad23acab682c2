"""Process groups on one node: membership, subscriptions and G1 (a node
never selects a dead local process)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from runtime_servers import WAIT, Probe, Recorder, block, crash

import shoal
from shoal.membership.keys import bucket_of, decode_members, member_key

STRATEGY_KEYS: list[tuple[str, Any]] = [
    ("local_first", None), ("random", None), ("round_robin", None),
    ("least_loaded", None), ("hash", "some-key"),
]

# -- membership ------------------------------------------------------------------------


async def test_join_leave_and_reads(node: shoal.Node) -> None:
    a, b = await node.spawn(Probe), await node.spawn(Probe)
    groups = node.groups
    await groups.join("g", a)
    await groups.join("g", [a, b])
    assert groups.get_members("g") == [a, a, b]
    assert groups.get_local_members("g") == [a, a, b]
    assert groups.which_groups() == ["g"]
    assert await groups.leave("g", a) is True
    assert sorted(groups.get_members("g")) == [a, b]
    assert await groups.leave("g", [a, b]) is True
    assert groups.get_members("g") == []
    assert groups.which_groups() == []


async def test_leave_answers_like_pg_true_when_anything_left(node: shoal.Node) -> None:
    # Erlang's pg:leave answers ok when at least one listed join was removed,
    # not_joined when none was; leave returns True exactly for ok.
    a, b = await node.spawn(Probe), await node.spawn(Probe)
    await node.groups.join("g", a)
    assert await node.groups.leave("g", []) is False
    assert await node.groups.leave("g", [b, a]) is True  # a left, b was not joined
    assert node.groups.get_members("g") == []
    assert await node.groups.leave("nothing-here", a) is False
    await node.groups.join("g", a)
    assert await node.groups.leave("g", [a, a]) is True  # joined once, listed twice
    assert node.groups.get_members("g") == []
    assert await node.groups.leave("g", [a, b]) is False


async def test_a_process_leaves_every_group_when_it_exits(node: shoal.Node) -> None:
    a, b = await node.spawn(Probe), await node.spawn(Probe)
    for name in ("g", "h"):
        await node.groups.join(name, [a, a, b])
    await node.scope("other").join("g", a)
    node.kill(a)
    assert node.groups.get_members("g") == [b]
    assert node.groups.get_members("h") == [b]
    assert node.scope("other").which_groups() == []


async def test_joining_a_dead_pid_raises_no_such_process(node: shoal.Node) -> None:
    live, dead = await node.spawn(Probe), await node.spawn(Probe)
    node.kill(dead)
    await node.wait_exit(dead)
    for pids in (dead, [live, dead], shoal.Pid(node.name, node.creation, 10**6),
                 shoal.Pid(node.name, node.creation - 1, live.serial)):
        with pytest.raises(shoal.NoSuchProcess):
            await node.groups.join("g", pids)  # type: ignore[arg-type]
    # All are checked before any joins: the live pid did not join either.
    assert node.groups.get_members("g") == []


@pytest.mark.parametrize(
    ("group", "pids", "argument"),
    [
        ("g", shoal.Pid("another-node", 1, 1), "pids"),
        ("g", "not a pid", "pids"),
        ("g", ("t", 1, 1), "pids"),
        ("g", [None], "pids"),
        ("", None, "group"),
        (42, None, "group"),
        (None, None, "group"),
        ("x" * 2000, None, "group"),
    ],
)
async def test_join_with_bad_arguments_names_the_argument(
    node: shoal.Node, group: Any, pids: Any, argument: str,
) -> None:
    pid = await node.spawn(Probe)
    with pytest.raises(shoal.BadArgument) as info:
        await node.groups.join(group, pid if pids is None else pids)
    assert info.value.argument == argument
    with pytest.raises(shoal.BadArgument) as info:
        await node.groups.leave(group, pid if pids is None else pids)
    assert info.value.argument == argument
    assert node.groups.which_groups() == []


async def test_scopes_are_independent(node: shoal.Node) -> None:
    a, b = await node.spawn(Probe), await node.spawn(Probe)
    one, two = node.scope("one"), node.scope("two")
    await one.join("g", a)
    await two.join("g", b)
    assert one.get_members("g") == [a]
    assert two.get_members("g") == [b]
    assert node.groups.get_members("g") == []
    assert one.select("g") == a
    await one.leave("g", a)
    assert two.get_members("g") == [b]
    assert node.scope("one") is one


async def test_groups_of_lists_each_scope_and_group_a_pid_is_in_once(node: shoal.Node) -> None:
    a, b = await node.spawn(Probe), await node.spawn(Probe)
    await node.groups.join("g", [a, a])
    await node.scope("other").join("h", a)
    await node.groups.join("g", b)
    assert node.groups_of(a) == [("default", "g"), ("other", "h")]
    assert node.groups_of(b) == [("default", "g")]
    await node.groups.leave("g", b)
    assert node.groups_of(b) == []
    node.kill(a)
    await node.wait_exit(a)
    assert node.groups_of(a) == []


# -- subscriptions ---------------------------------------------------------------------


async def _next(sub: shoal.Subscription) -> shoal.GroupEvent:
    return await asyncio.wait_for(sub.get(), WAIT)


async def test_subscription_delivers_joins_and_leaves_with_reasons(node: shoal.Node) -> None:
    a, b = await node.spawn(Probe), await node.spawn(Probe)
    await node.groups.join("g", a)
    async with node.groups.subscribe("g") as sub:
        assert sub.members == [a]
        await node.groups.join("g", [b, b])
        await node.groups.join("other", b)
        await node.groups.leave("g", b)
        node.kill(b)  # leaves at once
        node.cast(a, crash("gone"))  # leaves when a runs the cast
        events = [await _next(sub) for _ in range(4)]
    assert [(e.kind, e.pids) for e in events] == [
        ("join", (b, b)), ("leave", (b,)), ("leave", (b,)), ("leave", (a,))]
    assert [e.reason for e in events[:3]] == [None, "left", "killed"]
    assert isinstance(events[3].reason, shoal.Crash)
    assert {(e.scope, e.group, e.ref) for e in events} == {("default", "g", sub.ref)}


async def test_scope_subscription_sees_every_group(node: shoal.Node) -> None:
    a = await node.spawn(Probe)
    await node.groups.join("g", a)
    sub = node.groups.subscribe()
    assert sub.members == {"g": [a]}
    await node.groups.join("h", a)
    await node.scope("elsewhere").join("h", a)
    node.exit(a, "done")
    events = [await _next(sub) for _ in range(3)]
    assert [(e.kind, e.group) for e in events[:1]] == [("join", "h")]
    assert {(e.kind, e.group, e.reason) for e in events[1:]} == {
        ("leave", "g", "done"), ("leave", "h", "done")}
    assert sub.get_nowait() is None
    sub.close()


async def test_subscription_iterates_until_closed(node: shoal.Node) -> None:
    a = await node.spawn(Probe)
    sub = node.groups.subscribe("g")
    await node.groups.join("g", a)
    await node.groups.leave("g", a)
    seen = []
    async with asyncio.timeout(WAIT):
        async for event in sub:
            seen.append(event.kind)
            if len(seen) == 2:
                sub.close()
    assert seen == ["join", "leave"]


async def test_unread_subscription_overflows_and_says_so(node: shoal.Node) -> None:
    a = await node.spawn(Probe)
    sub = node.groups.subscribe("g", limit=3)
    for _ in range(5):
        await node.groups.join("g", a)
    events = [sub.get_nowait() for _ in range(3)]
    assert all(e is not None and e.kind == "join" for e in events)
    with pytest.raises(shoal.SubscriptionOverflow):
        await _next(sub)


async def test_process_subscription_via_groups_monitor(node: shoal.Node) -> None:
    rec = Recorder()
    watcher = await node.spawn(Probe, rec)
    a = await node.spawn(Probe)
    await node.groups.join("g", a)
    ref, members = node.groups.monitor("g", watcher=watcher)
    assert members == [a]
    b = await node.spawn(Probe)
    await node.groups.join("g", b)
    node.kill(a)
    await rec.wait(lambda item: len(rec.of("info")) == 2)
    joined, left = (m for _, _, m in rec.of("info"))
    assert (joined.ref, joined.kind, joined.pids) == (ref, "join", (b,))
    assert (left.ref, left.kind, left.pids, left.reason) == (ref, "leave", (a,), "killed")
    node.groups.demonitor(ref)
    await node.groups.leave("g", b)
    await node.call(watcher, "sync")
    assert len(rec.of("info")) == 2


async def test_monitor_group_from_inside_a_process(node: shoal.Node) -> None:
    rec = Recorder()
    watcher = await node.spawn(Probe, rec)
    ref, members = await node.call(watcher, lambda server, _: server.monitor_group("g"))
    assert members == []
    a = await node.spawn(Probe)
    await node.groups.join("g", a)
    _, _, event = await rec.wait_for("info", watcher)
    assert (event.ref, event.kind, event.pids) == (ref, "join", (a,))


async def test_a_subscriber_that_exits_is_dropped(node: shoal.Node) -> None:
    rec = Recorder()
    watcher = await node.spawn(Probe, rec)
    node.groups.monitor("g", watcher=watcher)
    node.groups.monitor_scope(watcher=watcher)
    node.kill(watcher)
    await node.wait_exit(watcher)
    a = await node.spawn(Probe)
    await node.groups.join("g", a)  # must not try to reach the dead subscriber
    assert rec.of("info") == []
    assert node._hub._by_owner == {}
    assert node._hub._subs == {}


# -- G1: the dead are never selected -----------------------------------------------------


def _assert_only_live_members(node: shoal.Node, group: str) -> None:
    members = node.groups.get_members(group)
    dead = [p for p in members if not node.is_alive(p)]
    assert not dead, f"dead members listed: {dead}"
    if members:
        for strategy, key in STRATEGY_KEYS:
            for _ in range(5):
                pid = node.groups.select(group, strategy=strategy, key=key)
                assert node.is_alive(pid), (strategy, pid)


@pytest.mark.parametrize("how", ["kill", "crash", "stop", "exit", "link"])
async def test_no_code_ever_observes_a_dead_member(node: shoal.Node, how: str) -> None:
    members = [await node.spawn(Probe) for _ in range(4)]
    partner = await node.spawn(Probe)
    node.link(members[0], partner)
    await node.groups.join("g", members)
    observed = 0
    stop_checking = asyncio.Event()

    async def subscriber() -> None:
        nonlocal observed
        async for event in node.groups.subscribe("g"):
            _assert_only_live_members(node, "g")
            observed += 1
            if event.kind == "leave":
                return

    async def every_turn() -> None:
        # Checks at every turn of the loop while the exit unfolds: there is
        # no moment at which a dead member is listed or selectable.
        for _ in range(500):
            if stop_checking.is_set():
                return
            _assert_only_live_members(node, "g")
            await asyncio.sleep(0)
        raise AssertionError("the exit did not finish in 500 turns")

    watching = asyncio.ensure_future(subscriber())
    checking = asyncio.ensure_future(every_turn())
    await asyncio.sleep(0)  # both are now waiting
    victim = members[0]
    if how == "kill":
        node.kill(victim)
    elif how == "crash":
        node.cast(victim, crash())
    elif how == "stop":
        node.send(victim, lambda server: server.stop("done"))
    elif how == "exit":
        node.exit(victim, "evicted")
    else:
        node.kill(partner)
    await node.wait_exit(victim)
    await asyncio.wait_for(watching, WAIT)
    stop_checking.set()
    await checking
    assert observed == 1
    assert sorted(node.groups.get_members("g")) == sorted(members[1:])


async def test_the_exit_path_has_left_the_groups_before_anyone_runs(node: shoal.Node) -> None:
    a, b = await node.spawn(Probe), await node.spawn(Probe)
    await node.groups.join("g", [a, b])
    node.kill(a)  # synchronous: the very next line already sees it gone
    assert node.groups.get_members("g") == [b]
    assert all(node.groups.select("g", strategy=s, key=k) == b for s, k in STRATEGY_KEYS)


async def test_a_join_racing_the_exit_fails_and_never_lists_the_pid(
    node: shoal.Node,
) -> None:
    a = await node.spawn(Probe)
    node.kill(a)  # exiting, its task has not run yet
    with pytest.raises(shoal.NoSuchProcess):
        await node.groups.join("g", a)
    assert node.groups.get_members("g") == []


async def test_a_process_joining_from_terminate_is_refused(node: shoal.Node) -> None:
    outcome: list[BaseException] = []

    class Rejoins(shoal.GenServer):
        async def terminate(self, reason: shoal.Reason) -> None:
            try:
                await self.node.groups.join("g", self.pid)
            except shoal.NoSuchProcess as exc:
                outcome.append(exc)

    pid = await node.spawn(Rejoins)
    node.exit(pid, "bye")
    await node.wait_exit(pid)
    assert len(outcome) == 1
    assert node.groups.get_members("g") == []


async def test_a_process_joining_then_crashing_in_one_handler_is_not_left_behind(
    node: shoal.Node,
) -> None:
    pid = await node.spawn(Probe)

    async def join_then_fail(server: Probe, caller: shoal.Caller) -> None:
        await server.node.groups.join("g", server.pid)
        raise RuntimeError("after joining")

    with pytest.raises(shoal.CallError):
        await node.call(pid, join_then_fail)
    assert node.groups.get_members("g") == []


async def test_the_last_member_leaving_while_a_call_is_picked_raises_no_members(
    node: shoal.Node,
) -> None:
    only = await node.spawn(Probe)
    await node.groups.join("g", only)
    release, started = asyncio.Event(), asyncio.Event()
    busy = asyncio.ensure_future(node.call(only, block(release, started)))
    await started.wait()
    # The group call picks the only member and waits in its mailbox...
    call = asyncio.ensure_future(node.groups.call("g", "hello", timeout=60))
    await asyncio.sleep(0)
    node.kill(only)  # ...which then dies: the request never started.
    with pytest.raises(shoal.NoMembers) as info:
        await asyncio.wait_for(call, WAIT)
    assert info.value.tried == 1
    with pytest.raises(shoal.ProcessExited):
        await busy


async def test_select_on_an_empty_or_missing_group_raises_no_members(
    node: shoal.Node,
) -> None:
    for strategy, key in STRATEGY_KEYS:
        with pytest.raises(shoal.NoMembers) as info:
            node.groups.select("nobody", strategy=strategy, key=key)
        assert (info.value.scope, info.value.group, info.value.tried) == ("default", "nobody", 0)


async def test_sync_waits_until_membership_is_in_the_store() -> None:
    from shoal.store import MemoryStore

    store = MemoryStore()
    async with shoal.Node("writer", store=store, listen=None) as node:
        pid = await node.spawn(Probe)
        await node.groups.join("g", pid)
        await node.groups.sync()
        snapshot = await store.snapshot("scopes/")
        bucket = bucket_of(pid.serial)
        key = member_key("writer", pid.creation, "default", "g", bucket)
        assert list(snapshot.entries) == [key]
        assert decode_members(bucket, snapshot.entries[key].value) == {pid.serial: 1}
        await node.groups.leave("g", pid)
        await node.groups.sync(timeout=2.0)
        assert (await store.snapshot("scopes/")).entries == {}


async def test_sync_rejects_a_bad_timeout(node: shoal.Node) -> None:
    with pytest.raises(shoal.BadArgument) as info:
        await node.groups.sync(timeout=0)
    assert info.value.argument == "timeout"


async def test_statistics_count_processes_groups_and_memberships(node: shoal.Node) -> None:
    a = await node.spawn(Probe)
    b = await node.spawn(Probe)
    await node.groups.join("g", [a, a, b])
    await node.scope("other").join("h", b)
    stats = node.statistics()
    assert (stats.name, stats.processes, stats.groups, stats.memberships) == ("t", 2, 2, 3)
    with pytest.raises(AttributeError):
        stats.processes = 0  # type: ignore[misc]
    node.kill(b)
    assert node.statistics().memberships == 1
