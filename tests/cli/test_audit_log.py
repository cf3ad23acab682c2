"""The audit helper (shoal/cli/audit.py): a record written by one operator is
read back, newest first, by another reading the same store; a record that
cannot be written never hides the change's outcome."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import shoal
from shoal.cli import audit, main
from shoal.store import SqliteStore


async def _cluster(tmp_path: Path) -> str:
    db = tmp_path / "cluster.db"
    async with SqliteStore(db):
        pass
    return f"sqlite://{db}"


async def test_a_record_is_read_back_by_another_operator_newest_first(tmp_path: Path) -> None:
    url = await _cluster(tmp_path)
    first = await audit.record(url, None, command="evict", args={"group": "g"},
                               outcome="done", evidence={"plan": {"evict": ["<a.1.2>"]}})
    second = await audit.record(url, None, command="drain", args={"node": "n1"},
                                outcome="refused", why="no live node\nnamed 'n1'")
    rows = await audit.read(url, None, 10)
    assert [r["seq"] for r in rows] == [second, first]
    newest = rows[0]
    assert newest["command"] == "drain" and newest["outcome"] == "refused"
    assert newest["why"] == "no live node named 'n1'"  # one line
    assert {"v", "time", "user", "host", "args", "evidence"} <= set(newest)
    assert newest["time"].endswith("Z") and newest["user"] and newest["host"]
    assert rows[1]["evidence"] == {"plan": {"evict": ["<a.1.2>"]}}
    assert [r["seq"] for r in await audit.read(url, None, 1)] == [second]


async def test_no_record_is_written_where_there_is_no_cluster(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "cluster.db"
    with pytest.raises(shoal.StoreUnavailable, match="no cluster at"):
        await audit.record(f"sqlite://{missing}", None, command="drain", args={},
                           outcome="done")
    assert not missing.parent.exists()


def test_evidence_over_the_record_limit_is_replaced_by_a_note() -> None:
    value = audit.encode("reap", {}, "done", evidence={"remove": ["x" * 1000] * 400})
    assert b"over the" in value and len(value) < 2000


def test_an_unwritable_record_warns_after_the_outcome_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    note = audit.Audit(f"sqlite://{tmp_path / 'gone' / 'cluster.db'}", None, "drain",
                       {"node": "n1"})
    print("node n1 drained")
    with pytest.raises(SystemExit) as exit_info:
        note.done()
    assert exit_info.value.code == 1
    out, err = capsys.readouterr()
    assert out == "node n1 drained\n"
    assert err.startswith("warning: the audit record could not be written: no cluster at")
    assert err.count("\n") == 1


# -- every applied command writes its record, read by another operator ---------------

SECRET = "audit-test-secret-0123456789abcdef"


class Counter(shoal.GenServer):
    async def handle_call(self, request: object, caller: shoal.Caller) -> object:
        return request


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SHOAL_SECRET", SECRET)
    monkeypatch.setenv("LOGNAME", "alice")  # the operator who acts
    return f"sqlite://{tmp_path}/cluster.db"


@pytest.fixture
async def api(store_url: str) -> AsyncIterator[tuple[shoal.Node, list[shoal.Pid]]]:
    async with shoal.Node("api-1", store=store_url, secret=SECRET) as node:
        pids = [await node.spawn(Counter) for _ in range(2)]
        await node.groups.join("counters", pids)
        await node.groups.sync()
        yield node, pids


async def shell(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def another_operator(store_url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """``shoal audit`` as another operator would run it: its own process."""
    env = {**os.environ, "LOGNAME": "bob"}
    return subprocess.run([sys.executable, "-m", "shoal.cli", "audit", "--store", store_url,
                           *argv], capture_output=True, text=True, timeout=60, check=False,
                          env=env)


async def test_every_applied_change_and_every_refusal_is_in_the_log_for_everyone(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, pids = api
    # refused: the inverted filter (every live member)
    assert await shell("evict", "counters", *map(str, pids), "--store", store_url,
                       "--yes") == 1
    # done
    assert await shell("evict", "counters", str(pids[0]), "--store", store_url, "--yes") == 0
    # refused: an unknown node
    assert await shell("drain", "api-9", "--store", store_url, "--yes") == 1
    # done, nothing to reap
    assert await shell("reap", "--apply", "--yes", "--store", store_url) == 0
    # not changes: a dry run, bad usage, a plan without --yes off a terminal
    assert await shell("evict", "counters", str(pids[1]), "--store", store_url,
                       "--allow-empty", "--dry-run") == 0
    assert await shell("evict", "counters", str(pids[1]), "--store", store_url,
                       "--allow-empty") == 2
    assert await shell("reap", "--store", store_url) == 0
    capsys.readouterr()

    seen = await asyncio.to_thread(another_operator, store_url, "--json")
    assert seen.returncode == 0, seen.stderr
    rows = json.loads(seen.stdout)
    assert [(r["command"], r["outcome"]) for r in rows] == [
        ("reap", "done"), ("drain", "refused"), ("evict", "done"), ("evict", "refused")]
    for row in rows:
        assert {"seq", "v", "time", "user", "host", "command", "args", "outcome", "why",
                "evidence"} <= set(row)
        assert row["user"] == "alice"
    reap, drain, evicted, refused = rows
    assert reap["evidence"]["remove"] == [] and reap["evidence"]["live"] == 1
    assert drain["args"]["node"] == "api-9" and "no live node named 'api-9'" in drain["why"]
    assert evicted["evidence"]["plan"]["evict"] == [str(pids[0])]
    assert evicted["evidence"]["results"][0]["evicted"] == [str(pids[0])]
    assert refused["why"].startswith("evicting would leave group 'counters'")
    assert refused["evidence"]["plan"]["live_members_after"] == 0
    assert sorted(refused["args"]["pids"]) == sorted(map(str, pids))

    table = await asyncio.to_thread(another_operator, store_url, "--limit", "2")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "WHO", "COMMAND", "OUTCOME", "WHAT"]
    assert len(lines) == 3 and "reap" in lines[1] and "alice@" in lines[1]
    assert "drain" in lines[2] and "refused" in lines[2] and "no live node" in lines[2]
    future = await asyncio.to_thread(another_operator, store_url, "--since",
                                     "2999-01-01T00:00:00Z", "--json")
    assert json.loads(future.stdout) == []


async def test_a_drain_is_recorded_with_what_was_drained(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    async with shoal.Node("api-2", store=store_url, secret=SECRET) as other:
        await other.groups.join("counters", await other.spawn(Counter))
        await other.groups.sync()
        assert await shell("drain", "api-2", "--store", store_url, "--yes") == 0
        await asyncio.wait_for(other.wait_stopped(), 10)
    capsys.readouterr()
    rows = await audit.read(store_url, None, 5)
    assert rows[0]["command"] == "drain" and rows[0]["outcome"] == "done"
    assert rows[0]["evidence"]["memberships"] == {"default/counters": 1}


async def test_a_change_whose_record_cannot_be_written_still_reports_its_outcome(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    node, pids = api

    async def unwritable(*args: object, **kwargs: object) -> int:
        raise shoal.StoreUnavailable("store is read-only for this test")

    monkeypatch.setattr(audit, "record", unwritable)
    assert await shell("evict", "counters", str(pids[0]), "--store", store_url, "--yes") == 1
    out, err = capsys.readouterr()
    assert f"node api-1 evicted {pids[0]}" in out  # the outcome, printed first
    assert err == ("warning: the audit record could not be written: "
                   "store is read-only for this test\n")
    assert node.groups.get_members("counters") == [pids[1]]
    assert await shell("evict", "counters", str(pids[1]), "--store", store_url, "--yes") == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("error: evicting would leave group")
    assert err[1].startswith("warning: the audit record could not be written")


@pytest.mark.parametrize("argv", [["--limit", "0"], ["--since", "yesterday"], ["--bogus"]])
def test_audit_bad_arguments_exit_2_on_one_line(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--store", f"sqlite://{tmp_path}/c.db", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.lower().startswith("error")]) == 1
