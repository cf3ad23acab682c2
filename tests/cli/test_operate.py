"""ping, call and cast by pid, evict and drain, driven through ``main(argv)``.

The serving nodes run in the test's event loop; each command runs in a
thread, as a shell would run it beside them, and joins the cluster briefly.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import shoal
from shoal.cli import main
from shoal.testing.cluster import wait_until

SECRET = "cli-test-secret-0123456789abcdef"


class Counter(shoal.GenServer):
    async def init(self) -> None:
        self.n = 0

    async def handle_call(self, request: object, caller: shoal.Caller) -> object:
        if request == "get":
            return self.n
        self.n += 1
        return self.n

    async def handle_cast(self, request: object) -> None:
        self.n += 100


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SHOAL_SECRET", SECRET)
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


def out_json(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


# -- ping -------------------------------------------------------------------------------


async def test_ping_a_node_gives_its_incarnation_and_round_trip(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    node, _ = api
    assert await shell("ping", "api-1", "--store", store_url, "--json") == 0
    answer = out_json(capsys)
    assert isinstance(answer, dict)
    assert answer["node"] == "api-1" and answer["creation"] == node.creation
    assert answer["alive"] is True and answer["processes"] == 2
    assert answer["rtt_ms"] > 0 and answer["version"] == shoal.__version__


async def test_ping_a_pid_says_alive_or_dead(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    node, pids = api
    assert await shell("ping", str(pids[0]), "--store", store_url) == 0
    assert "alive" in capsys.readouterr().out
    node.kill(pids[1])
    await node.wait_exit(pids[1])
    assert await shell("ping", str(pids[1]), "--store", store_url, "--json") == 1
    answer = out_json(capsys)
    assert isinstance(answer, dict) and answer["alive"] is False
    earlier = shoal.Pid("api-1", node.creation - 1, pids[0].serial)
    assert await shell("ping", str(earlier), "--store", store_url, "--json") == 1
    answer = out_json(capsys)
    assert isinstance(answer, dict) and answer["alive"] is False
    assert answer["why"] == "a pid of an earlier incarnation of its node"


async def test_ping_an_unknown_node_or_a_malformed_pid_is_one_line(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert await shell("ping", "api-9", "--store", store_url) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no live node named 'api-9'" in err and "api-1" in err
    assert await shell("ping", "<api-1.x.3>", "--store", store_url) == 2
    assert "pid" in capsys.readouterr().err


# -- call and cast by pid ----------------------------------------------------------------


async def test_call_and_cast_reach_one_pid(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    node, pids = api
    assert await shell("call", str(pids[1]), '"incr"', "--store", store_url) == 0
    assert out_json(capsys) == 1
    assert await shell("cast", str(pids[1]), '"bump"', "--store", store_url, "--json") == 0
    assert out_json(capsys) == {"pid": str(pids[1]), "delivered": True}
    # delivered means in the mailbox before the command returned
    assert await node.call(pids[1], "get") == 101
    assert await node.call(pids[0], "get") == 0


async def test_cast_to_a_group_names_the_member_it_reached(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    node, pids = api
    assert await shell("cast", "counters", '"bump"', "--store", store_url, "--json") == 0
    answer = out_json(capsys)
    assert isinstance(answer, dict) and answer["delivered"] is True
    reached = shoal.Pid.parse(answer["pid"])
    assert reached in pids and await node.call(reached, "get") == 100


async def test_cast_to_a_dead_pid_says_it_was_not_delivered(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    node, pids = api
    node.kill(pids[0])
    await node.wait_exit(pids[0])
    assert await shell("cast", str(pids[0]), "1", "--store", store_url) == 1
    assert "not delivered" in capsys.readouterr().out


# -- evict ------------------------------------------------------------------------------


async def test_evict_removes_a_live_member_that_keeps_running(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    node, pids = api
    assert await shell("evict", "counters", str(pids[0]), "--store", store_url, "--yes",
                       "--json") == 0
    answer = out_json(capsys)
    assert isinstance(answer, dict)
    assert answer["plan"]["evict"] == [str(pids[0])]
    assert answer["plan"]["live_members_before"] == 2
    assert answer["plan"]["live_members_after"] == 1
    assert answer["results"] == [{"node": "api-1", "evicted": [str(pids[0])],
                                  "live_members_left": 1}]
    assert node.groups.get_members("counters") == [pids[1]]
    assert node.is_alive(pids[0])  # out of the group, not killed


async def test_evict_of_every_member_as_an_inverted_filter_would_is_refused(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    node, pids = api
    argv = ["evict", "counters", *map(str, pids), "--store", store_url, "--yes"]
    assert await shell(*argv) == 1
    err = capsys.readouterr().err
    assert "without a live member" in err and err.count("\n") == 1
    assert sorted(node.groups.get_members("counters")) == sorted(pids)
    assert await shell(*argv, "--allow-empty") == 0
    assert node.groups.get_members("counters") == []


async def test_evict_refuses_pids_that_are_not_members_and_changes_nothing(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    node, pids = api
    other = await node.spawn(Counter)
    assert await shell("evict", "counters", str(pids[0]), str(other), "--store", store_url,
                       "--yes") == 1
    assert f"not members of group 'counters' (scope 'default'): {other}" in \
        capsys.readouterr().err
    assert await shell("evict", "nobody", str(pids[0]), "--store", store_url, "--yes") == 1
    assert "has no members" in capsys.readouterr().err
    assert sorted(node.groups.get_members("counters")) == sorted(pids)


async def test_evict_without_yes_and_without_a_terminal_is_refused_but_dry_run_shows_the_plan(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    node, pids = api
    assert await shell("evict", "counters", str(pids[0]), "--store", store_url) == 2
    assert "--yes" in capsys.readouterr().err
    assert await shell("evict", "counters", str(pids[0]), "--store", store_url,
                       "--dry-run") == 0
    out = capsys.readouterr().out
    assert str(pids[0]) in out and "dry run: nothing changed" in out
    assert "live members: 2 now, 1 after" in out
    assert sorted(node.groups.get_members("counters")) == sorted(pids)


# -- drain ------------------------------------------------------------------------------


async def test_drain_stops_a_node_and_returns_once_it_is_out(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    node, _ = api
    async with shoal.Node("api-2", store=store_url, secret=SECRET) as other:
        worker = await other.spawn(Counter)
        await other.groups.join("counters", worker)
        await other.groups.sync()
        assert await shell("drain", "api-2", "--store", store_url, "--yes", "--json") == 0
        answer = out_json(capsys)
        assert isinstance(answer, dict)
        assert answer["node"] == "api-2" and answer["processes"] == 1
        assert answer["memberships"] == {"default/counters": 1}
        await asyncio.wait_for(other.wait_stopped(), 10)
        assert other.stopping and not other.running
    await wait_until(lambda: worker not in node.groups.get_members("counters"),
                     what="the drained node's member gone")
    assert await shell("nodes", "--store", store_url, "--json") == 0
    assert [n["name"] for n in json.loads(capsys.readouterr().out)] == ["api-1"]


async def test_drain_of_an_unknown_node_is_one_line(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert await shell("drain", "api-7", "--store", store_url, "--yes") == 1
    err = capsys.readouterr().err
    assert "no live node named 'api-7'" in err and err.count("\n") == 1


RUN_APP = '''
import shoal


class Worker(shoal.GenServer):
    async def handle_call(self, request, caller):
        return request

    async def terminate(self, reason):
        print(f"worker terminated {reason}", flush=True)


async def setup(node):
    pid = await node.spawn(Worker)
    await node.groups.join("workers", pid)
    await node.groups.sync()
'''


async def test_drain_of_a_shoal_run_node_exits_it_with_0_after_terminate(
        tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import sys

    (tmp_path / "drain_app_for_tests.py").write_text(RUN_APP, encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shoal.cli", "run", "drain_app_for_tests:setup",
        "--node", "svc-1", "--store", store_url, cwd=tmp_path,
        env=dict(os.environ, SHOAL_SECRET=SECRET),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        ready = await asyncio.wait_for(process.stdout.readline(), 30)
        assert b"ready" in ready
        assert await shell("drain", "svc-1", "--store", store_url, "--yes") == 0
        assert "node svc-1 drained: 1 process(es), 1 membership(s) in 1 group(s)" in \
            capsys.readouterr().out
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert "worker terminated shutdown" in out.decode()
    assert "stopping (drained)" in err.decode() and "draining node svc-1" in err.decode()


async def test_commands_ignore_the_http_address_meant_for_the_serving_node(
        api: tuple[shoal.Node, list[shoal.Pid]], store_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:  # the serving node's endpoint holds this port
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("SHOAL_HTTP", f"127.0.0.1:{busy.getsockname()[1]}")
        assert await shell("ping", "api-1", "--store", store_url) == 0
