"""Cluster-wide registered names between in-process nodes sharing one store.

The store decides who holds a name (a create-if-absent of ``names/<name>``
under the holder's session): exactly one of two racing registrations wins,
the loser hears who won; a name goes with its process's exit, with its
node's stop, and with its node's store session; ``shoal.Global(name)``
reaches its holder from any node. Waits on another node's view are bounded
polls (``wait_until``); nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.membership.names import decode_holder
from shoal.store import Changes, MemoryStore
from shoal.testing.cluster import wait_until

SECRET = "global-names-test-secret-0123456789"
WAIT = 5.0
RACE_ROUNDS = 25


class Echo(shoal.GenServer):
    async def init(self, box: list[Any] | None = None) -> None:
        self.box = box if box is not None else []

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if request == "whoami":
            return [self.node.name, self.pid]
        if request == "crash":
            raise RuntimeError("asked to crash")
        return request

    async def handle_cast(self, request: Any) -> None:
        self.box.append(("cast", request))

    async def handle_info(self, message: Any) -> None:
        self.box.append(("info", message))


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[shoal.Node, shoal.Node]]:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", store=store, secret=SECRET) as a, \
            shoal.Node("b", store=store, secret=SECRET) as b:
        yield a, b


async def seen(node: shoal.Node, name: str, pid: shoal.Pid | None) -> None:
    await wait_until(lambda: node.whereis_global(name) == pid, timeout=WAIT,
                     what=f"{node.name} to see {name!r} held by {pid}")


async def test_a_global_name_reaches_its_holder_from_another_node(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    box: list[Any] = []
    pid = await a.spawn(Echo, box)
    await a.register_global("billing", pid)
    assert a.whereis_global("billing") == pid  # its own node knows at once
    await seen(b, "billing", pid)
    assert a.registered_global() == b.registered_global() == ["billing"]
    assert await b.call(shoal.Global("billing"), "whoami") == ["a", pid]
    b.cast(shoal.Global("billing"), "c")
    b.send(shoal.Global("billing"), "i")
    await wait_until(lambda: box == [("cast", "c"), ("info", "i")], timeout=WAIT,
                     what="the cast and the send by global name")


async def test_a_held_global_name_is_refused_naming_the_holder_on_every_node(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    holder, other_a, other_b = await a.spawn(Echo), await a.spawn(Echo), await b.spawn(Echo)
    await a.register_global("billing", holder)
    for node, pid in ((a, other_a), (b, other_b)):
        with pytest.raises(shoal.NameInUse, match=f"global name 'billing' is held by {holder}"):
            await node.register_global("billing", pid)
    assert a.whereis_global("billing") == holder


async def test_a_global_name_dies_with_its_process_on_every_node(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    pid = await a.spawn(Echo)
    await a.register_global("billing", pid)
    await seen(b, "billing", pid)
    with pytest.raises(shoal.CallError):
        await b.call(shoal.Global("billing"), "crash")
    assert a.whereis_global("billing") is None  # in the holder's exit path
    await seen(b, "billing", None)
    with pytest.raises(shoal.NoSuchProcess, match="no process registered globally as 'billing'"):
        await b.call(shoal.Global("billing"), "whoami")
    successor = await b.spawn(Echo)
    await b.register_global("billing", successor)  # free for anyone now
    await seen(a, "billing", successor)
    assert await a.call(shoal.Global("billing"), "whoami") == ["b", successor]


async def test_unregister_global_frees_the_name_and_the_process_keeps_running(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    pid = await a.spawn(Echo)
    await a.register_global("billing", pid)
    await a.unregister_global("billing")
    assert a.whereis_global("billing") is None
    assert await a.call(pid, "still") == "still"
    other = await b.spawn(Echo)
    await b.register_global("billing", other)
    with pytest.raises(shoal.BadArgument, match="held by a process of this node"):
        await a.unregister_global("billing")  # held on b: a cannot release it
    assert b.whereis_global("billing") == other


async def test_register_global_refuses_bad_arguments(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    pid = await a.spawn(Echo)
    for name in ("", "a/b", 7):
        with pytest.raises(shoal.BadArgument):
            await a.register_global(name, pid)  # type: ignore[arg-type]
    with pytest.raises(shoal.BadArgument, match="a pid of this node"):
        await b.register_global("billing", pid)
    a.kill(pid)
    with pytest.raises(shoal.NoSuchProcess):
        await a.register_global("billing", pid)
    with pytest.raises(shoal.BadArgument):
        shoal.Global("a/b")
    assert a.whereis_global("billing") is None and b.whereis_global("billing") is None


async def test_two_nodes_racing_for_one_name_exactly_one_wins(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    wins = {"a": 0, "b": 0}
    for round_ in range(RACE_ROUNDS):
        name = f"leader-{round_}"
        pa, pb = await a.spawn(Echo), await b.spawn(Echo)
        results = await asyncio.gather(a.register_global(name, pa),
                                       b.register_global(name, pb), return_exceptions=True)
        winners = [node for node, r in zip((a, b), results, strict=True) if r is None]
        losers = [r for r in results if r is not None]
        assert len(winners) == 1 and len(losers) == 1, results
        winner_pid = pa if winners[0] is a else pb
        assert isinstance(losers[0], shoal.NameInUse), losers[0]
        assert str(winner_pid) in str(losers[0])
        wins[winners[0].name] += 1
        await seen(a, name, winner_pid)
        await seen(b, name, winner_pid)
    assert sum(wins.values()) == RACE_ROUNDS


async def test_a_stopped_node_releases_its_global_names(tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("b", store=store, secret=SECRET) as b:
        async with shoal.Node("a", store=store, secret=SECRET) as a:
            pid = await a.spawn(Echo)
            await a.register_global("billing", pid)
            await seen(b, "billing", pid)
        await seen(b, "billing", None)
        await b.register_global("billing", await b.spawn(Echo))


async def test_the_store_holds_the_name_under_the_holders_session(tmp_path: Path) -> None:
    store = shoal.store.open_store(f"sqlite://{tmp_path}/cluster.db")
    try:
        async with shoal.Node("a", store=store, secret=SECRET) as a:
            pid = await a.spawn(Echo)
            await a.register_global("billing", pid)
            snap = await store.snapshot("names/")
            entry = snap.entries["names/billing"]
            assert decode_holder(entry.value) == pid
            node_entry = (await store.snapshot("nodes/a")).entries["nodes/a"]
            assert entry.session == node_entry.session
    finally:
        await store.close()


async def test_a_name_lost_with_the_session_is_dropped_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    async with shoal.Node("a", store=store, listen=None) as a:
        pid = await a.spawn(Echo)
        await a.register_global("billing", pid)
        # Someone removes the key (as the store does when the session ends).
        intruder = await store.open_session("operator", b"", 5.0)
        with caplog.at_level(logging.WARNING, logger="shoal"):
            await intruder.apply([shoal.store.Delete(key="names/billing")])
            await wait_until(lambda: "lost its global name 'billing'" in caplog.text,
                             timeout=WAIT, what="the lost name to be logged")
        assert a.whereis_global("billing") is None
        assert await a.call(pid, "still") == "still"  # the process keeps running
        await intruder.apply([shoal.store.Create(key="names/billing", value=b"\x93\xa1x\x01\x01")])
        with pytest.raises(shoal.NameInUse, match=r"<x\.1\.1>"):
            await a.register_global("billing", pid)
        await intruder.close()


def gated(store: MemoryStore) -> tuple[asyncio.Event, asyncio.Event]:
    """Hold every ``Create`` of ``store``'s sessions until the returned
    ``release`` is set; ``reached`` is set when one waits there."""
    reached, release = asyncio.Event(), asyncio.Event()
    real_open = store.open_session

    async def open_session(name: str, info: bytes, ttl: float) -> Any:
        session = await real_open(name, info, ttl)
        real_apply = session.apply

        async def apply(ops: Any) -> int:
            if any(isinstance(op, shoal.store.Create) for op in ops):
                reached.set()
                await release.wait()
            return await real_apply(ops)

        session.apply = apply  # type: ignore[method-assign]
        return session

    store.open_session = open_session  # type: ignore[method-assign]
    return reached, release


async def test_a_process_that_exits_while_its_name_is_being_registered_leaves_no_name(
        ) -> None:
    store = MemoryStore()
    reached, release = gated(store)
    async with shoal.Node("a", store=store, listen=None) as a:
        pid = await a.spawn(Echo)
        registering = asyncio.ensure_future(a.register_global("billing", pid))
        await asyncio.wait_for(reached.wait(), WAIT)
        a.kill(pid)  # exits while the store is deciding
        release.set()
        with pytest.raises(shoal.NoSuchProcess):
            await registering
        assert a.whereis_global("billing") is None

        # The key was created, then deleted in the background: the store's
        # history shows both, the delete last.
        seen: list[str] = []
        watch: Any = store.watch("names/", 0)
        async with asyncio.timeout(WAIT), contextlib.aclosing(watch):
            async for item in watch:
                assert isinstance(item, Changes)
                seen += [e.kind for e in item.events if e.key == "names/billing"]
                if seen[-1:] == ["delete"]:
                    break
        assert seen == ["put", "delete"]
        successor = await a.spawn(Echo)
        await a.register_global("billing", successor)
        assert a.whereis_global("billing") == successor
