"""The CLI sees every scope, though a node follows only the scopes it opens.

``shoal members`` and ``shoal groups`` read the store itself; ``shoal call
--scope`` runs a short-lived node that never opened that scope before, so it
must load the scope's membership before it picks a member.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import shoal
from shoal.cli import main

SECRET = "cli-scopes-test-secret-0123456789abcdef"


class Echo(shoal.GenServer):
    async def handle_call(self, request: object, caller: shoal.Caller) -> object:
        return [request, str(self.pid)]


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SHOAL_SECRET", SECRET)
    return f"sqlite://{tmp_path}/cluster.db"


@pytest.fixture
async def serving(store_url: str) -> AsyncIterator[shoal.Pid]:
    async with shoal.Node("api-1", store=store_url, secret=SECRET) as node:
        pid = await node.spawn(Echo)
        await node.scope("jobs-eu").join("workers", pid)
        await node.scope("jobs-eu").sync()
        yield pid


async def test_members_and_groups_see_a_scope_no_cli_node_opened(
        serving: shoal.Pid, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await asyncio.to_thread(main, ["groups", "--store", store_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"scope": "jobs-eu", "group": "workers", "members": 1, "nodes": 1}]
    code = await asyncio.to_thread(main, ["members", "workers", "--scope", "jobs-eu",
                                          "--store", store_url, "--json"])
    assert code == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["pid"] for m in listed] == [str(serving)]


async def test_call_with_scope_loads_the_scope_before_choosing_a_member(
        serving: shoal.Pid, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(main, ["call", "workers", '"hi"', "--scope", "jobs-eu",
                                          "--store", store_url])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out) == ["hi", str(serving)]
