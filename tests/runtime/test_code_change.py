"""Node.code_change: a process migrates its state in line with its messages."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import shoal


class Versioned(shoal.GenServer):
    async def init(self) -> None:
        self.state: Any = {"count": 1}
        self.seen: list[Any] = []

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if request == "state":
            return self.state
        if request == "slow":
            await asyncio.sleep(0)
            self.seen.append("slow")
            return "done"
        raise shoal.BadRequest(request)

    async def code_change(self, old_version: Any, extra: Any) -> None:
        if extra == "boom":
            raise ValueError("cannot migrate")
        self.seen.append(("code_change", old_version))
        self.state = {"counts": [self.state["count"]], "from": old_version}


async def test_code_change_migrates_state_and_the_process_keeps_serving(
        node: shoal.Node) -> None:
    pid = await node.spawn(Versioned)
    await node.code_change(pid, "v1", None)
    assert await node.call(pid, "state") == {"counts": [1], "from": "v1"}


async def test_code_change_runs_after_messages_already_queued(node: shoal.Node) -> None:
    pid = await node.spawn(Versioned)
    slow = asyncio.ensure_future(node.call(pid, "slow"))
    await asyncio.sleep(0)  # let the call reach the mailbox first
    await node.code_change(pid, "v1")
    assert await slow == "done"
    proc = node.local_process(pid)
    assert proc is not None
    assert proc.server.seen == ["slow", ("code_change", "v1")]  # type: ignore[attr-defined]


async def test_code_change_that_raises_crashes_the_process_with_that_error(
        node: shoal.Node) -> None:
    pid = await node.spawn(Versioned)
    with pytest.raises(shoal.CallError) as info:
        await node.code_change(pid, "v1", "boom")
    assert info.value.remote_type == "builtins.ValueError"
    assert await node.wait_exit(pid) != shoal.NORMAL
    assert not node.is_alive(pid)


async def test_code_change_of_a_dead_process_is_no_such_process(node: shoal.Node) -> None:
    pid = await node.spawn(Versioned)
    node.kill(pid)
    with pytest.raises(shoal.NoSuchProcess):
        await node.code_change(pid, "v1")


@pytest.mark.parametrize("timeout", [0, -1, "1", None])
async def test_code_change_rejects_a_bad_timeout(node: shoal.Node, timeout: Any) -> None:
    pid = await node.spawn(Versioned)
    with pytest.raises(shoal.BadArgument) as info:
        await node.code_change(pid, "v1", timeout=timeout)
    assert info.value.argument == "timeout"
