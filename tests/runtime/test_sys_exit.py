"""``sys.exit()`` in a hook ends that process, as a crash, never the node.

In a threaded program SystemExit ends only its thread; a shoal process is
the unit of failure in the same way. Before, SystemExit escaped the
process's task, stopped the event loop and left the caller it was serving
waiting until its deadline.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

import shoal


class Quitter(shoal.GenServer):
    async def init(self, at_init: bool = False) -> None:
        if at_init:
            sys.exit(2)

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if request == "quit":
            sys.exit(3)
        return request

    async def handle_cast(self, request: Any) -> None:
        sys.exit()

    async def terminate(self, reason: shoal.Reason) -> None:
        sys.exit(4)


async def test_sys_exit_in_a_call_fails_that_call_and_ends_that_process_only(
        node: shoal.Node) -> None:
    pid, other = await node.spawn(Quitter), await node.spawn(Quitter)
    await node.groups.join("quitters", [pid, other])
    exited = asyncio.create_task(node.wait_exit(pid))
    with pytest.raises(shoal.CallError) as raised:
        await node.call(pid, "quit", timeout=2.0)
    assert raised.value.remote_type == "builtins.SystemExit"
    assert raised.value.remote_message == "3"
    reason = await exited
    assert isinstance(reason, shoal.Crash) and reason.type == "builtins.SystemExit"
    assert node.groups.get_members("quitters") == [other]
    assert node.running and await node.call(other, "still here") == "still here"


async def test_the_crash_report_names_the_call_that_exited(
        node: shoal.Node, caplog: pytest.LogCaptureFixture) -> None:
    pid = await node.spawn(Quitter)
    with pytest.raises(shoal.CallError):
        await node.call(pid, "quit", timeout=2.0)
    await node.wait_exit(pid)
    reports = [r.shoal_crash for r in caplog.records if hasattr(r, "shoal_crash")]
    assert len(reports) == 1 and "quit" in reports[0].line()
    assert "call" in reports[0].line()


async def test_sys_exit_in_a_cast_or_in_init_is_a_crash(node: shoal.Node) -> None:
    pid = await node.spawn(Quitter)
    exited = asyncio.create_task(node.wait_exit(pid))
    node.cast(pid, "bye")
    reason = await exited
    assert isinstance(reason, shoal.Crash) and reason.type == "builtins.SystemExit"
    with pytest.raises(shoal.CallError, match="SystemExit"):
        await node.spawn(Quitter, at_init=True)
    assert node.running
