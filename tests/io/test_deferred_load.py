"""A process that answers later (``NOREPLY``) still counts its work: its
``backlog`` adds to its queue length, which ``least_loaded`` compares on its
own node and which every reply reports to a caller on another node; and the
handler knows the caller's timeout from ``Caller.timeout``, for a caller on
its node and for one on another node alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from group_waits import members_seen

import shoal
from shoal.runtime.admin import admin_request

SECRET = b"deferred-load-test-secret-0123456789"
WAIT = 5.0


class Holder(shoal.GenServer):
    """Keeps the callers of ``"hold"`` and says it has that many to do;
    ``"timeout"`` answers the caller's timeout; ``"release"`` answers them all."""

    async def init(self) -> None:
        self.held: list[shoal.Caller] = []

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if request == "hold":
            self.held.append(caller)
            self.backlog = len(self.held)
            return shoal.NOREPLY
        if request == "timeout":
            return caller.timeout
        if request == "release":
            for held in self.held:
                held.reply("released")
            self.held = []
            self.backlog = 0
        return request


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[shoal.Node, shoal.Node]]:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", cluster="deferred", store=store, secret=SECRET) as a, \
            shoal.Node("b", cluster="deferred", store=store, secret=SECRET) as b:
        yield a, b




async def test_least_loaded_counts_the_calls_a_local_member_holds(node: shoal.Node) -> None:
    busy, idle = await node.spawn(Holder), await node.spawn(Holder)
    await node.groups.join("g", [busy, idle])
    held = [asyncio.ensure_future(node.call(busy, "hold")) for _ in range(3)]
    assert await node.call(busy, "ping") == "ping"  # the holds were taken
    # Its mailbox is empty, but it has three calls to answer: of two members
    # drawn (power of two choices), the idle one wins unless both draws are
    # the busy one (1 in 4); with loads equal, each would win half the picks.
    picks = [node.groups.select("g", strategy="least_loaded") for _ in range(400)]
    assert picks.count(idle) > 0.65 * len(picks)
    await node.call(busy, "release")
    assert await asyncio.gather(*held) == ["released"] * 3


async def test_a_reply_to_another_node_reports_the_backlog(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    holder = await b.spawn(Holder)
    await b.groups.join("g", holder)
    await members_seen(a, "g", 1, WAIT)
    held = [asyncio.ensure_future(b.call(holder, "hold")) for _ in range(4)]
    assert await a.groups.call("g", "ping", timeout=WAIT, strategy="least_loaded") == "ping"
    assert a.cluster_view.reported_queue_lengths()[holder] == 4
    assert await a.groups.call("g", "release", timeout=WAIT) == "release"
    assert await asyncio.gather(*held) == ["released"] * 4


async def test_the_handler_knows_the_callers_timeout_from_either_node(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    holder = await b.spawn(Holder)
    assert await b.call(holder, "timeout", 2.5) == 2.5
    # From another node: what was left of it when the call went out.
    assert 2.0 < await a.call(holder, "timeout", 2.5) <= 2.5


async def test_shoal_members_shows_the_calls_a_member_holds(
        pair: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = pair
    holder = await b.spawn(Holder)
    await b.groups.join("g", holder)
    held = [asyncio.ensure_future(b.call(holder, "hold")) for _ in range(2)]
    assert await b.call(holder, "ping") == "ping"
    rows = await a.call(shoal.Pid("b", b.creation, 0), admin_request("members", {"group": "g"}))
    assert [(row["pid"], row["queue_len"]) for row in rows] == [(holder, 2)]
    await b.call(holder, "release")
    await asyncio.gather(*held)
