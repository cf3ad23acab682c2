"""``shoal members GROUP --live``: per member, routable or not and why, queue
length and seconds since it joined, from the owners; the default stays
read-only (tests/cli/test_cli.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import shoal
from shoal.cli import main
from shoal.membership.keys import bucket_of, encode_members, member_key
from shoal.store import Put, SqliteStore
from shoal.testing.registration import register_peer

SECRET = "members-live-secret-0123456789abcdef"


class Gate(shoal.GenServer):
    """Answers calls; "hold" blocks it until the test opens the gate."""

    async def init(self, gate: asyncio.Event, entered: asyncio.Event | None = None) -> None:
        self.gate, self.entered = gate, entered

    async def handle_call(self, request: object, caller: shoal.Caller) -> object:
        if request == "hold":
            if self.entered is not None:
                self.entered.set()
            await self.gate.wait()
        return request

    async def handle_cast(self, request: object) -> None:
        pass


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SHOAL_SECRET", SECRET)
    return f"sqlite://{tmp_path}/cluster.db"


@pytest.fixture
async def api(store_url: str) -> AsyncIterator[shoal.Node]:
    async with shoal.Node("api-1", store=store_url, secret=SECRET) as node:
        yield node


async def shell(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_live_members_say_routable_why_queue_and_joined(
        api: shoal.Node, store_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    idle = await api.spawn(Gate, gate)
    busy = await api.spawn(Gate, gate, entered)
    await api.groups.join("work", [idle, busy])
    held = asyncio.ensure_future(api.call(busy, "hold", 30))
    await asyncio.wait_for(entered.wait(), 10)
    for _ in range(3):
        api.cast(busy, "queued")
    # A member whose node has no session (its entry outlived it), and one
    # whose node is registered but answers nobody.
    async with SqliteStore(tmp_path / "cluster.db") as raw:
        silent = await register_peer(raw, "silent-1", 22, address=("127.0.0.1", 9))
        await silent.apply([
            Put(key=member_key("silent-1", 22, "default", "work", bucket_of(5)),
                value=encode_members(bucket_of(5), {5: 2})),
            Put(key=member_key("gone-1", 11, "default", "work", bucket_of(4)),
                value=encode_members(bucket_of(4), {4: 1}))])
        await api.groups.sync()
        try:
            assert await shell("members", "work", "--live", "--timeout", "2",
                               "--store", store_url, "--json") == 0
            rows = {row["pid"]: row for row in json.loads(capsys.readouterr().out)}
            assert await shell("members", "work", "--live", "--timeout", "2",
                               "--store", store_url) == 0
            table = capsys.readouterr().out.splitlines()
        finally:
            gate.set()
            await held
    fields = {"pid", "node", "joins", "routable", "why", "suspect_since_s", "suspected_by",
              "queue_len", "joined_s"}
    assert all(set(row) == fields for row in rows.values())
    ok = rows[str(idle)]
    assert ok["routable"] is True and ok["why"] == "ok" and ok["queue_len"] == 0
    assert ok["node"] == "api-1" and ok["joins"] == 1
    assert isinstance(ok["joined_s"], float) and 0 <= ok["joined_s"] < 60
    assert rows[str(busy)]["queue_len"] == 3 and rows[str(busy)]["routable"] is True
    down = rows[str(shoal.Pid("gone-1", 11, 4))]
    assert down["routable"] is False and down["why"] == "node-down"
    assert down["queue_len"] is None and down["joined_s"] is None
    unreachable = rows[str(shoal.Pid("silent-1", 22, 5))]
    assert unreachable["routable"] is False and unreachable["why"] == "suspect"
    assert unreachable["joins"] == 2
    if unreachable["suspected_by"]:  # a node that tried to reach silent-1 says since when
        assert unreachable["suspect_since_s"] == max(unreachable["suspected_by"].values())
    assert table[0].split() == ["PID", "NODE", "ROUTABLE", "WHY", "QUEUE_LEN", "JOINED_S"]
    assert any(str(idle) in line and " yes " in line for line in table)


async def test_ping_reports_which_nodes_the_node_suspects(
        api: shoal.Node, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    api.cluster_view.set_routable("api-9", False)  # as a silent connection would
    assert await shell("ping", "api-1", "--store", store_url, "--json") == 0
    suspects = json.loads(capsys.readouterr().out)["suspects"]
    assert set(suspects) >= {"api-9"} and suspects["api-9"] >= 0


async def test_joined_since_counts_from_the_first_join_held(
        api: shoal.Node, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    pid = await api.spawn(Gate, asyncio.Event())
    await api.groups.join("a", pid)
    await api.groups.join("a", pid)  # a second join keeps the first time
    await api.groups.join("b", pid)
    await api.groups.sync()
    assert await shell("members", "a", "--live", "--store", store_url, "--json") == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["joins"] == 2 and row["joined_s"] is not None
    await api.groups.leave("a", [pid, pid])
    await api.groups.leave("b", pid)
    assert len(api._joined) == 0


async def test_live_members_of_an_unknown_group_or_store_are_one_line_exit_1(
        api: shoal.Node, store_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert await shell("members", "nobody", "--live", "--store", store_url) == 1
    err = capsys.readouterr().err
    assert "group 'nobody' (scope 'default') has no members" in err and err.count("\n") == 1
    missing = tmp_path / "none" / "c.db"
    assert await shell("members", "g", "--live", "--store", f"sqlite://{missing}") == 1
    assert "no cluster at" in capsys.readouterr().err
    assert await shell("members", "g", "--live", "--timeout", "0", "--store", store_url) == 2
