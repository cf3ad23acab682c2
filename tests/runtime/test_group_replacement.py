"""A group call whose members died waits a moment for a replacement
(``runtime/group_retry.py``, Rule 2), instead of failing ``NoMembers``
while a supervisor is already starting one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.runtime.group_retry import REPLACEMENT_WAIT, replacement_wait
from shoal.testing.cluster import wait_until

SECRET = "group-replacement-secret-0123456789abcdef"


class Gate(shoal.GenServer):
    """``"hold"`` blocks the process until ``gate`` is set; else echoes."""

    async def init(self, gate: asyncio.Event) -> None:
        self.gate = gate

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if request == "hold":
            await self.gate.wait()
        return request


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[shoal.Node, shoal.Node]]:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("host", store=store, secret=SECRET) as host, \
            shoal.Node("caller", store=store, secret=SECRET) as caller:
        yield host, caller


async def test_a_call_whose_member_died_takes_its_replacement_not_no_members(
        nodes: tuple[shoal.Node, shoal.Node]) -> None:
    host, caller = nodes
    gate = asyncio.Event()
    first = await host.spawn(Gate, gate)
    await host.groups.join("g", first)
    await wait_until(lambda: caller.groups.get_members("g") == [first], what="the member")
    held = asyncio.create_task(caller.call(first, "hold"))
    await wait_until(lambda: (p := host.local_process(first)) is not None and p.current
                     is not None, what="the member busy")
    call = asyncio.create_task(caller.groups.call("g", "hello", timeout=5.0))
    await wait_until(lambda: len(host.local_process(first).mailbox) == 1,  # type: ignore[union-attr]
                     what="the group call queued behind the held one")
    host.kill(first)  # the queued call is answered "no such process": it never started
    second = await host.spawn(Gate, gate)  # as a supervisor would, at once
    await host.groups.join("g", second)
    assert await call == "hello"
    with pytest.raises(shoal.ProcessExited):
        await held


async def test_an_empty_group_still_fails_at_once(node: shoal.Node) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(shoal.NoMembers):
        await node.groups.call("nobody", "hello", timeout=5.0)
    assert loop.time() - began < REPLACEMENT_WAIT / 2


def test_the_wait_needs_evidence_of_a_death_and_stays_within_the_deadline() -> None:
    pid = shoal.Pid("n", 1, 1)
    died = [shoal.NoSuchProcess(pid)]
    down = [shoal.NodeDown("n")]
    assert replacement_wait(died, [], lambda _: False, 5.0) == REPLACEMENT_WAIT
    assert replacement_wait(died, [], lambda _: False, 0.2) == 0.2
    assert replacement_wait(died, [], lambda _: False, 0.0) == 0.0
    assert replacement_wait([], [pid], lambda _: True, 5.0) == REPLACEMENT_WAIT
    assert replacement_wait(down, [pid], lambda _: False, 5.0) == 0.0  # unreachable only
    assert replacement_wait([], [], lambda _: False, 5.0) == 0.0  # empty
