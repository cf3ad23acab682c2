"""Bounded mailboxes: a full mailbox refuses work at once, never notices."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from runtime_servers import WAIT, Probe, Recorder, block

import shoal


async def _full(node: shoal.Node, size: int, rec: Recorder | None = None, *,
                trap: bool = False) -> tuple[shoal.Pid, asyncio.Event, list[asyncio.Future[Any]]]:
    """A process busy with one call and ``size`` more calls queued."""
    pid = await node.spawn_opt(Probe, args=(rec,), kwargs={"trap": trap}, mailbox_size=size)
    release, started = asyncio.Event(), asyncio.Event()
    busy = asyncio.ensure_future(node.call(pid, block(release, started), timeout=WAIT))
    await started.wait()  # taken out of the mailbox: the mailbox is empty again
    queued = [asyncio.ensure_future(node.call(pid, n, timeout=WAIT)) for n in range(size)]
    await asyncio.sleep(0)  # one turn: each queued call reaches the mailbox
    return pid, release, [busy, *queued]


async def test_calls_beyond_the_bound_raise_overloaded_at_once(node: shoal.Node) -> None:
    pid, release, pending = await _full(node, 3)
    with pytest.raises(shoal.Overloaded) as info:
        await asyncio.wait_for(node.call(pid, "one too many", timeout=60), 0.5)
    assert info.value.pid == pid
    assert info.value.limit == 3
    assert info.value.not_started
    release.set()
    assert await asyncio.gather(*pending) == ["released", 0, 1, 2]
    assert await node.call(pid, "room again") == "room again"


async def test_casts_and_sends_beyond_the_bound_raise_overloaded(node: shoal.Node) -> None:
    pid, release, pending = await _full(node, 1)
    with pytest.raises(shoal.Overloaded):
        node.cast(pid, "x")
    with pytest.raises(shoal.Overloaded):
        node.send(pid, "x")
    release.set()
    await asyncio.gather(*pending)


async def test_the_behaviours_mailbox_size_is_the_default_bound(node: shoal.Node) -> None:
    class Small(Probe):
        mailbox_size = 1

    pid = await node.spawn(Small)
    release, started = asyncio.Event(), asyncio.Event()
    busy = asyncio.ensure_future(node.call(pid, block(release, started)))
    await started.wait()
    node.cast(pid, "fits")
    with pytest.raises(shoal.Overloaded):
        node.cast(pid, "does not fit")
    release.set()
    await busy

    unbounded = await node.spawn_opt(Small, mailbox_size=None)
    release2, started2 = asyncio.Event(), asyncio.Event()
    busy = asyncio.ensure_future(node.call(unbounded, block(release2, started2)))
    await started2.wait()
    for n in range(100):
        node.cast(unbounded, n)
    release2.set()
    await busy


async def test_down_and_exit_notices_are_never_refused(node: shoal.Node) -> None:
    rec = Recorder()
    pid, release, pending = await _full(node, 1, rec, trap=True)
    watched = await node.spawn(Probe)
    linked = await node.spawn(Probe)
    ref = node.monitor(watched, watcher=pid)
    node.link(pid, linked)
    await node.groups.join("g", watched)
    node.groups.monitor("g", watcher=pid)
    node.kill(watched)
    node.exit(linked, "bye")
    await node.wait_exit(linked)
    release.set()
    await asyncio.gather(*pending)
    infos = [message for _, _, message in await _all_infos(rec, 3)]
    assert shoal.Down(ref=ref, pid=watched, reason="killed") in infos
    assert shoal.Exit(pid=linked, reason="bye") in infos
    assert any(isinstance(m, shoal.GroupEvent) and m.kind == "leave" for m in infos)


async def _all_infos(rec: Recorder, n: int) -> list[tuple[Any, ...]]:
    await rec.wait(lambda item: len(rec.of("info")) >= n)
    return rec.of("info")


async def test_group_call_retries_an_overloaded_member_on_another(node: shoal.Node) -> None:
    full, release, pending = await _full(node, 1)
    other = await node.spawn(Probe)
    await node.groups.join("g", [full, other])
    key = _key_for(node, "g", full)
    reply = await node.groups.call("g", lambda server, _: server.pid, strategy="hash",
                                   key=key, timeout=WAIT)
    assert reply == other
    release.set()
    await asyncio.gather(*pending)


def _key_for(node: shoal.Node, group: str, pid: shoal.Pid) -> int:
    """A hash key that routes to ``pid`` (hash selection is deterministic)."""
    for key in range(1000):
        if node.groups.select(group, strategy="hash", key=key) == pid:
            return key
    raise AssertionError("no key routes there")


async def test_the_nodes_mailbox_size_bounds_behaviours_that_set_none() -> None:
    class Bounded(Probe):
        mailbox_size = 5

    async with shoal.Node("m", store="memory://", mailbox_size=2) as node:
        pid = await node.spawn(Probe)  # Probe sets no bound: the node's applies
        release, started = asyncio.Event(), asyncio.Event()
        busy = asyncio.ensure_future(node.call(pid, block(release, started), timeout=WAIT))
        await started.wait()
        node.cast(pid, 1)
        node.cast(pid, 2)
        with pytest.raises(shoal.Overloaded) as info:
            node.cast(pid, 3)
        assert info.value.limit == 2
        release.set()
        await busy
        # A behaviour's own bound wins; spawn_opt(mailbox_size=None) opts out.
        own = await node.spawn(Bounded)
        opted_out = await node.spawn_opt(Probe, mailbox_size=None)
        for target, room in ((own, 5), (opted_out, 100)):
            release, started = asyncio.Event(), asyncio.Event()
            busy = asyncio.ensure_future(node.call(target, block(release, started),
                                                   timeout=WAIT))
            await started.wait()
            for n in range(room):
                node.cast(target, n)
            release.set()
            await busy


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_a_bad_node_mailbox_size_is_refused_naming_it(bad: Any) -> None:
    with pytest.raises(shoal.BadArgument) as info:
        shoal.Node("m", store="memory://", mailbox_size=bad)
    assert info.value.argument == "mailbox_size"
