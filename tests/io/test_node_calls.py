"""Calls between in-process nodes on loopback sharing one SQLite store.

What a caller sees when a call crosses nodes and something is wrong: its
own request (a usage error, never retried), a member whose owner said "no
such process" (never selected again), a liveness question about a remote
pid (asked of its owner), a node that refuses this one (said once, not
redialled in a loop). Every wait is bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import shoal

SECRET = "node-calls-test-secret-0123456789"
WAIT = 5.0


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


async def wait_members(node: shoal.Node, group: str, count: int) -> list[shoal.Pid]:
    """Wait, on group events, until ``node`` sees ``count`` members."""
    async with node.groups.subscribe(group) as sub:
        members = list(sub.members)
        async with asyncio.timeout(WAIT):
            while len(members) != count:
                event = await sub.get()
                for pid in event.pids:
                    if event.kind == "join":
                        members.append(pid)
                    else:
                        members.remove(pid)
    return members


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[shoal.Node, shoal.Node]]:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", store=store, secret=SECRET) as a, \
            shoal.Node("b", store=store, secret=SECRET) as b:
        yield a, b


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


# -- a caller's mistake is not "no members" ------------------------------------------


@pytest.mark.parametrize("request_", [2**64, "\ud800", _deep(300)],
                         ids=["int-2**64", "lone-surrogate", "300-deep"])
async def test_a_group_call_whose_request_cannot_be_encoded_raises_bad_argument_at_once(
        pair: tuple[shoal.Node, shoal.Node], request_: Any) -> None:
    a, b = pair
    pids = [await a.spawn(Echo) for _ in range(3)]
    await a.groups.join("g", pids)
    await wait_members(b, "g", 3)
    for strategy in ("random", "round_robin", "least_loaded"):
        with pytest.raises(shoal.BadArgument) as info:
            await b.groups.call("g", request_, timeout=WAIT, strategy=strategy)
        assert info.value.argument == "request"
    # Nothing was marked tried or unroutable: the next good call is served.
    assert await b.groups.call("g", "fine", timeout=WAIT) == "fine"


# -- "no such process" is remembered until the removal arrives -----------------------


async def test_a_member_whose_owner_said_no_such_process_is_not_offered_again(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    live = await a.spawn(Echo)
    await a.groups.join("g", live)
    await wait_members(b, "g", 1)
    # A pid of a's incarnation that a does not host, listed in b's view as
    # when b has not yet heard of its exit (the removal is in flight).
    gone = shoal.Pid("a", a.creation, 10**6)
    b._table.join("default", "g", [gone])
    with pytest.raises(shoal.NoSuchProcess):
        await b.call(gone, "x", WAIT)
    picks = {b.groups.select("g", strategy=s, key="k")
             for s in ("round_robin", "random", "least_loaded", "hash") for _ in range(10)}
    assert picks == {live}
    assert gone in b.groups.get_members("g")  # still a member until its removal
    # The removal arrives: the mark goes with it.
    b._table.remove_pid(gone, "noproc")
    assert not b._table.is_marked_dead(gone)


async def test_a_group_call_that_learns_no_such_process_does_not_try_it_next_time(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    gone = shoal.Pid("a", a.creation, 10**6)
    b._table.join("default", "lonely", [gone])
    with pytest.raises(shoal.NoMembers) as first:
        await b.groups.call("lonely", "x", timeout=WAIT)
    assert first.value.tried == 1
    with pytest.raises(shoal.NoMembers) as second:
        b.groups.select("lonely")
    assert second.value.tried == 0


# -- selection over local and remote members ---------------------------------------


async def test_selection_prefers_local_members_and_counts_every_join(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    here = await a.spawn(Echo)
    there = [await b.spawn(Echo) for _ in range(2)]
    await a.groups.join("g", here)
    await b.groups.join("g", [there[0], there[0], there[1]])
    await wait_members(a, "g", 4)
    # local_first (the default): a's own member whenever it has one.
    assert {a.groups.select("g") for _ in range(300)} == {here}
    # random: uniform over the joins, wherever they are. Bounds are six
    # standard deviations of 4,000 draws (27 for p = 1/4, 32 for p = 1/2).
    picks = Counter(a.groups.select("g", strategy="random") for _ in range(4_000))
    assert 835 <= picks[here] <= 1_165 and 835 <= picks[there[1]] <= 1_165
    assert 1_810 <= picks[there[0]] <= 2_190
    # Without a local member, local_first draws from every member, per join.
    await a.groups.leave("g", here)
    fallback = Counter(a.groups.select("g") for _ in range(3_000))
    assert set(fallback) == set(there)
    assert 1_850 <= fallback[there[0]] <= 2_150  # p = 2/3: sd 26


# -- is a remote process alive: asked of its owner, never guessed --------------------


async def test_is_alive_refuses_another_nodes_pid_and_names_ask_alive(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    pid = await a.spawn(Echo)
    with pytest.raises(shoal.BadArgument, match="ask_alive") as info:
        b.is_alive(pid)
    assert info.value.argument == "pid"
    assert a.is_alive(pid)


async def test_the_clean_up_filter_keeps_every_live_remote_member(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    # The story's script was filter(not is_alive, members): it must find no
    # live member dead.
    a, b = pair
    pids = [await a.spawn(Echo) for _ in range(3)]
    await a.groups.join("g", pids)
    members = await wait_members(b, "g", 3)
    assert [p for p in members if not await b.ask_alive(p, timeout=WAIT)] == []
    # The probe's monitors are gone again: the owner keeps no watcher for them.
    assert await b.call(pids[0], "after", WAIT) == "after"  # behind the DEMONITORs
    for pid in pids:
        proc = a.local_process(pid)
        assert proc is not None and not proc.monitored_by


async def test_ask_alive_is_false_only_on_evidence_of_death(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    live, doomed = await a.spawn(Echo), await a.spawn(Echo)
    await a.groups.join("g", doomed)
    await wait_members(b, "g", 1)
    a.kill(doomed)
    await a.wait_exit(doomed)
    assert await b.ask_alive(live) is True
    assert await b.ask_alive(doomed) is False  # the owner answered: no such process
    assert await b.ask_alive(shoal.Pid("a", a.creation, 10**6)) is False
    assert await b.ask_alive(shoal.Pid("a", a.creation - 1, live.serial)) is False  # older
    # Its own pids, and the local answer for a dead one.
    mine = await b.spawn(Echo)
    assert await b.ask_alive(mine) is True
    b.kill(mine)
    await b.wait_exit(mine)
    assert await b.ask_alive(mine) is False


async def test_ask_alive_raises_when_the_owner_cannot_be_asked(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    _, b = pair
    with pytest.raises(shoal.NodeDown):
        await b.ask_alive(shoal.Pid("nobody-knows", 1, 1), timeout=1.0)
    with pytest.raises(shoal.BadArgument):
        await b.ask_alive(shoal.Pid("nobody-knows", 1, 1), timeout=0)


# -- a node that refused this one says so, once --------------------------------------


async def test_a_node_with_the_wrong_secret_is_told_so_and_does_not_redial_in_a_loop(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", store=store, secret=SECRET) as a, \
            shoal.Node("b", store=store, secret="another-secret-entirely-0123456789") as b:
        pids = [await a.spawn(Echo) for _ in range(3)]
        await a.groups.join("g", pids)
        await wait_members(b, "g", 3)  # b reads the store; a refuses its proof
        caplog.set_level(logging.WARNING, logger="shoal")
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(20):
            with pytest.raises(shoal.NoMembers) as caught:
                await b.groups.call("g", "x", timeout=WAIT)
            # One member tried: its node refused, so its other members are
            # skipped; the reason is in the error, not only a count.
            assert caught.value.tried == 1
            assert "authentication refused by node 'a'" in str(caught.value)
            assert "secrets differ" in str(caught.value)
            with pytest.raises(shoal.NodeDown) as direct:
                await b.call(pids[0], "x", WAIT)
            assert direct.value.refused and direct.value.not_started
            assert "secrets differ" in str(direct.value)
        assert loop.time() - started < WAIT / 2  # no call waited for its deadline
        # One dial, refused once: one line on each side, not one per call.
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) <= 2, warnings
        assert await a.call(pids[0], "still serving", WAIT) == "still serving"


async def test_a_refusing_node_restarted_with_the_right_secret_is_called_at_once(
        tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("b", store=store, secret=SECRET) as b:
        async with shoal.Node("a", store=store, secret="a-wrong-secret-0123456789abcdef") as a:
            assert a.address is not None
            port = a.address[1]
            wrong = await a.spawn(Echo)
            await a.groups.join("g", wrong)
            await wait_members(b, "g", 1)
            with pytest.raises(shoal.NodeDown) as info:
                await b.call(wrong, "x", WAIT)
            assert info.value.refused
        await wait_members(b, "g", 0)
        # Same name, same address, the right secret: a new incarnation.
        async with shoal.Node("a", store=store, secret=SECRET,
                              listen=f"127.0.0.1:{port}") as fixed:
            right = await fixed.spawn(Echo)
            await fixed.groups.join("g", right)
            await wait_members(b, "g", 1)
            assert await b.call(right, "x", WAIT) == "x"  # not held for the old refusal


async def test_a_node_falling_silent_just_after_answering_a_call_breaks_nothing(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    """An answered call leaves ``pending`` when its answer is read, and its
    caller forgets the ref when it runs next: silence noticed in between
    (a fail-if-silent call's ref with no pending entry) must not raise."""
    a, b = pair
    pid = await a.spawn(Echo)
    await a.groups.join("g", pid)
    await wait_members(b, "g", 1)
    assert await b.groups.call("g", "hello", idempotent=True) == "hello"  # fail-if-silent
    remote = b._remote
    answered_not_forgotten = max(remote.pending, default=10_000) + 1
    remote._fail_if_silent.add(answered_not_forgotten)
    remote.on_peer_silent("a", a.creation)  # raised KeyError
    assert b.groups.get_members("g") == [pid]
    remote.forget(answered_not_forgotten)
    assert answered_not_forgotten not in remote._fail_if_silent


async def test_the_caller_of_a_remote_call_has_every_attribute(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair

    class Look(shoal.GenServer):
        async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
            assert all(hasattr(caller, name) for name in shoal.Caller.__slots__)
            return [caller.pid, caller.timeout, caller.gave_up, repr(caller)]

    class Asker(shoal.GenServer):
        async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
            return await self.call(request, None, timeout=2.5)

    callee = await b.spawn(Look)
    asker = await a.spawn(Asker)
    # The first call dials: it carries what is left of its timeout.
    pid, timeout, gave_up, text = await a.call(callee, None, timeout=WAIT)
    assert (pid, gave_up, text) == (None, False, "<Caller from None>")
    assert WAIT - 1 < timeout <= WAIT
    assert await a.call(asker, callee, timeout=WAIT) == [asker, 2.5, False,
                                                         f"<Caller from {asker}>"]


async def test_a_remote_call_to_a_process_running_its_terminate_fails_with_no_such_process(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    terminating, release = asyncio.Event(), asyncio.Event()

    class Slow(shoal.GenServer):
        async def terminate(self, reason: Any) -> None:
            terminating.set()
            await release.wait()

    pid = await b.spawn(Slow)
    assert await a.ask_alive(pid, timeout=WAIT)
    b.exit(pid, "going")
    async with asyncio.timeout(WAIT):
        await terminating.wait()
    with pytest.raises(shoal.NoSuchProcess):
        await a.call(pid, "x", timeout=WAIT)
    release.set()
    assert await b.wait_exit(pid, WAIT) == "going"
