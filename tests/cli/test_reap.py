"""``shoal reap``: evidence of death or nothing, and never a live member.

The story's clean-up: an operator removing "dead" members with a filter
that was inverted removed every live one. reap takes no filter: it removes
only entries with evidence of death, which a live member never has, and
keeps what it cannot ask about.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

import shoal
from shoal.cli import audit, main
from shoal.membership.keys import encode_members, member_key
from shoal.store import Changes, Put, Session, Store, open_store
from shoal.testing.registration import register_peer

SECRET = "reap-test-secret-0123456789abcdef"


class Worker(shoal.GenServer):
    async def handle_call(self, request: object, caller: shoal.Caller) -> object:
        return request


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SHOAL_SECRET", SECRET)
    return f"sqlite://{tmp_path}/cluster.db"


@pytest.fixture
async def api(store_url: str) -> AsyncIterator[tuple[shoal.Node, list[shoal.Pid]]]:
    async with shoal.Node("api-1", store=store_url, secret=SECRET) as node:
        pids = [await node.spawn(Worker) for _ in range(3)]
        await node.groups.join("workers", pids)
        await node.groups.sync()
        yield node, pids


async def shell(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


Plant = Callable[..., Awaitable[str]]


@pytest.fixture
async def plant(store_url: str) -> AsyncIterator[Plant]:
    """Write a membership entry nobody's process backs, from another session
    (as a hand-written clean-up script or a lost leave would leave one)."""
    store = open_store(store_url)
    writers: list[Session] = []

    async def write(node: str, creation: int, serial: int, group: str = "workers") -> str:
        bucket = serial >> 6
        key = member_key(node, creation, "default", group, bucket)
        writer = await register_peer(store, f"hand-writer-{len(writers)}", 1)
        writers.append(writer)  # kept open: ending it would delete the entry with it
        await writer.apply([Put(key=key, value=encode_members(bucket, {serial: 1}))])
        return key

    yield write
    for writer in writers:
        await writer.close()
    await store.close()


async def test_a_healthy_cluster_has_nothing_to_reap_and_says_so(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert await shell("reap", "--store", store_url) == 0
    assert "nothing to reap: 3 live member(s)" in capsys.readouterr().out
    assert await shell("reap", "--store", store_url, "--apply", "--yes", "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer == {"remove": [], "unreachable_kept": [], "held": [], "live": 3,
                      "applied": None}


async def test_a_forged_entry_in_a_live_owners_keys_is_undone_by_the_owner_itself(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        plant: Plant, capsys: pytest.CaptureFixture[str]) -> None:
    node, _ = api
    store = open_store(store_url)
    try:
        start = (await store.snapshot("scopes/")).revision
        key = await plant("api-1", node.creation, 64 * 40 + 1)
        await asyncio.wait_for(deleted(store, key, start), 10)  # the owner's rewrite
    finally:
        await store.close()
    assert await shell("reap", "--store", store_url) == 0
    assert "nothing to reap" in capsys.readouterr().out


async def deleted(store: Store, key: str, revision: int) -> None:
    """Return once the store deletes ``key`` after ``revision``."""
    async for item in store.watch(key, revision):
        if isinstance(item, Changes) and any(
                e.key == key and e.kind == "delete" for e in item.events):
            return


async def test_entries_of_an_ended_incarnation_are_planned_with_evidence_then_removed(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        plant: Plant, capsys: pytest.CaptureFixture[str]) -> None:
    node, pids = api
    old_key = await plant("api-1", node.creation - 1, 5)
    assert await shell("reap", "--store", store_url, "--json") == 0
    plan = json.loads(capsys.readouterr().out)
    assert [(r["pid"], r["evidence"]) for r in plan["remove"]] == [
        (str(shoal.Pid("api-1", node.creation - 1, 5)), "session-ended")]
    assert plan["live"] == 3 and plan["held"] == []
    store = open_store(store_url)
    try:
        assert old_key in (await store.snapshot("scopes/")).entries  # a plan changes nothing
        assert await shell("reap", "--store", store_url, "--apply", "--yes", "--json") == 0
        applied = json.loads(capsys.readouterr().out)["applied"]
        assert applied == {"deleted_keys": [old_key], "forgotten": [], "skipped": 0}
        assert old_key not in (await store.snapshot("scopes/")).entries
    finally:
        await store.close()
    assert sorted(node.groups.get_members("workers")) == sorted(pids)
    assert await shell("reap", "--store", store_url) == 0
    assert "nothing to reap" in capsys.readouterr().out
    # Only the --apply is in the audit log, with each entry's evidence.
    [record] = await audit.read(store_url, None, 10)
    assert record["command"] == "reap" and record["outcome"] == "done"
    assert record["evidence"]["remove"] == [
        {"scope": "default", "group": "workers",
         "pid": str(shoal.Pid("api-1", node.creation - 1, 5)), "evidence": "session-ended"}]
    assert record["evidence"]["applied"]["deleted_keys"] == [old_key]


async def test_a_group_that_looks_mostly_dead_is_held_not_emptied(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        plant: Plant, capsys: pytest.CaptureFixture[str]) -> None:
    node, _ = api
    for serial in (5, 64 + 5, 128 + 5):  # three buckets: three entries
        await plant("api-1", node.creation - 1, serial)
    assert await shell("reap", "--store", store_url, "--apply", "--yes") == 1
    out = capsys.readouterr().out
    assert "held: default/workers: 3 of 6 entries look dead at once" in out
    assert "cut off" in out
    snapshot = await open_store(store_url).snapshot("scopes/default/api-1/")
    assert any(f"/{node.creation - 1}/" in key for key in snapshot.entries)
    [record] = await audit.read(store_url, None, 10)  # a held group: nothing removed, refused
    assert record["command"] == "reap" and record["outcome"] == "refused"
    assert "held default/workers: 3 of 6 entries look dead at once" in record["why"]


async def test_apply_needs_yes_without_a_terminal_and_yes_needs_apply(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        plant: Plant, capsys: pytest.CaptureFixture[str]) -> None:
    node, _ = api
    key = await plant("api-1", node.creation - 1, 5)
    assert await shell("reap", "--store", store_url, "--apply") == 2
    assert "--yes" in capsys.readouterr().err
    assert await shell("reap", "--store", store_url, "--yes") == 2
    assert key in (await open_store(store_url).snapshot("scopes/")).entries


async def test_a_stopped_node_is_unreachable_and_kept_never_reaped(
        tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "reap_app_for_tests.py").write_text(
        "import shoal\n\n"
        "class W(shoal.GenServer):\n    pass\n\n"
        "async def setup(node):\n"
        "    await node.groups.join('workers', [await node.spawn(W) for _ in range(2)])\n"
        "    await node.groups.sync()\n", encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shoal.cli", "run", "reap_app_for_tests:setup",
        "--node", "svc-1", "--store", store_url, cwd=tmp_path,
        env=dict(os.environ, SHOAL_SECRET=SECRET),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        assert b"ready" in await asyncio.wait_for(process.stdout.readline(), 30)
        os.kill(process.pid, signal.SIGSTOP)  # hung: its flock held, its session live
        try:
            assert await shell("reap", "--store", store_url, "--timeout", "0.5",
                               "--apply", "--yes", "--json") == 0
        finally:
            os.kill(process.pid, signal.SIGCONT)
        answer = json.loads(capsys.readouterr().out)
        assert answer["remove"] == [] and answer["live"] == 0
        assert len(answer["unreachable_kept"]) == 2
        assert answer["applied"] is None
        entries = (await open_store(store_url).snapshot("scopes/default/svc-1/")).entries
        assert len(entries) == 1  # its bucket, untouched
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
