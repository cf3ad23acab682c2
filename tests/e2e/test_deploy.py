"""``shoal deploy`` of a ``shoal up`` cluster, and the old way of deploying.

- A rolling deploy under a steady stream of group calls fails no call and
  gives every node a new incarnation.
- A deploy whose new code fails its gate (it does not rejoin its group, or
  its health call fails) stops after the first node, exits 1 naming the
  node and why, and leaves the others serving, untouched.
- The story's case (c): deploying "the old way" (kill -9 each node and let
  ``shoal up`` start it again) while ``shoal reap`` plans in a loop: reap
  never lists a live member, and finds nothing once the nodes are back.

Real processes: ``shoal up`` and its nodes; the commands run through
``main(argv)`` in a thread, the client node in the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Stream
from up_support import APP, UpProcess, creations, write_cluster

import shoal
from shoal.cli import main
from shoal.store import read_snapshot
from shoal.testing.cluster import wait_until

NAMES = ["a1", "a2", "a3"]


async def shell(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def store_of(toml: Path) -> str:
    return f"sqlite://{toml.parent}/.shoal/cluster.db"


async def started(tmp_path: Path, app: str = APP) -> tuple[Path, UpProcess]:
    toml = write_cluster(tmp_path, NAMES, app=app)
    up = UpProcess(toml)
    await up.start(NAMES)
    return toml, up


async def serving(client: shoal.Node) -> None:
    await wait_until(lambda: len(client.groups.get_members("work")) == 2 * len(NAMES),
                     timeout=15, what="every node's two workers at the client")


async def test_a_rolling_deploy_under_a_stream_of_group_calls_fails_no_call(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml, up = await started(tmp_path)
    try:
        async with shoal.Node("test-client", store=store_of(toml), cluster="t") as client:
            await serving(client)
            before = await creations(client, NAMES)
            stream = Stream(client, "work", callers=4, pause=0.002).start()
            await stream.wait_calls(100)

            # A plan only; then a guard that refuses before any drain.
            assert await shell("deploy", str(toml), "--dry-run", "--json") == 0
            dry = json.loads(capsys.readouterr().out)
            assert dry["plan"]["nodes"] == NAMES and dry["results"] == [] and dry["ok"]
            code = await shell("deploy", str(toml), "--yes", "--json", "--gate-timeout", "1",
                               "--min-available", "work=5")
            out = capsys.readouterr()
            assert code == 1 and json.loads(out.out)["failed"] == {
                "node": "a1", "step": "check",
                "reason": "draining a1 would leave 4 live member(s) in default/work, fewer "
                          "than --min-available 5; refused"}
            assert await creations(client, NAMES) == before

            code = await shell("deploy", str(toml), "--yes", "--json", "--gate-timeout", "20",
                               "--min-available", "work=4",
                               "--health-call", "work", '"health"')
            await stream.wait_calls(100)
            await stream.stop()
            out = capsys.readouterr()
            assert code == 0, out.err
            assert stream.failures() == []
            result = json.loads(out.out)
            assert result["ok"] is True and result["failed"] is None
            assert result["plan"]["nodes"] == NAMES and result["plan"]["batches"] == [
                ["a1"], ["a2"], ["a3"]]
            assert result["plan"]["restart_via"] == "shoal-up"
            assert result["plan"]["up_pid"] == up.state()["up_pid"]
            after = await creations(client, NAMES)
            for row, name in zip(result["results"], NAMES, strict=True):
                assert row["node"] == name and row["ok"] is True and row["reason"] is None
                assert row["old_creation"] == before[name]
                assert row["new_creation"] == after[name] != before[name]
                assert row["groups"] == {"default/work": [2, 2]}
                assert row["drained"]["memberships"] == {"default/work": 2}
            # every node kept serving: the new incarnations answer calls
            await stream_once(client, after)
        assert await shell("audit", "--store", store_of(toml), "--cluster", "t", "--json") == 0
        records = json.loads(capsys.readouterr().out)
        assert [(r["command"], r["outcome"]) for r in records] == [
            ("deploy", "done"), ("deploy", "refused")]  # newest first; the dry run is not one
        assert [row["node"] for row in records[0]["evidence"]["results"]] == NAMES
    finally:
        await up.stop()


async def test_two_nodes_at_a_time_keep_the_minimum_and_fail_no_call(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml, up = await started(tmp_path)
    try:
        async with shoal.Node("test-client", store=store_of(toml), cluster="t") as client:
            await serving(client)
            before = await creations(client, NAMES)
            stream = Stream(client, "work", callers=4, pause=0.002).start()
            await stream.wait_calls(100)
            code = await shell("deploy", str(toml), "--yes", "--json", "--gate-timeout", "1",
                               "--max-unavailable", "2", "--min-available", "work=3")
            refused = json.loads(capsys.readouterr().out)
            assert code == 1 and refused["failed"]["step"] == "check"
            assert refused["failed"]["reason"].startswith(
                "draining a1, a2 would leave 2 live member(s) in default/work")
            assert await creations(client, NAMES) == before

            code = await shell("deploy", str(toml), "--yes", "--json", "--gate-timeout", "20",
                               "--max-unavailable", "2", "--min-available", "work=2")
            await stream.wait_calls(100)
            await stream.stop()
            out = capsys.readouterr()
            assert code == 0, out.err
            result = json.loads(out.out)
            assert result["plan"]["batches"] == [["a1", "a2"], ["a3"]]
            after = await creations(client, NAMES)
            assert all(after[name] != before[name] for name in NAMES)
            assert [r["new_creation"] for r in result["results"]] == [after[n] for n in NAMES]
            assert stream.failures() == []
    finally:
        await up.stop()


async def stream_once(client: shoal.Node, incarnations: dict[str, int]) -> None:
    members = client.groups.get_members("work")
    for pid in members:
        assert incarnations[pid.node] == pid.creation
        assert await client.call(pid, "hello") == [pid.node, "hello"]


NOT_REJOINING = APP.replace('node.groups.join("work"', 'node.groups.join("elsewhere"')
SICK = APP.replace('os.environ.get("SICK")', "True")


@pytest.mark.parametrize(("new_code", "reason"), [
    (NOT_REJOINING, "did not rejoin its groups within 4s: default/work 0 of 2"),
    (SICK, "health call to <a1."),
])
async def test_a_deploy_whose_new_code_fails_its_gate_stops_after_the_first_node(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], new_code: str,
        reason: str) -> None:
    toml, up = await started(tmp_path)
    try:
        async with shoal.Node("test-client", store=store_of(toml), cluster="t") as client:
            await serving(client)
            before = await creations(client, NAMES)
            (tmp_path / "app.py").write_text(new_code)  # the new release, broken
            stream = Stream(client, "work", callers=4, pause=0.002).start()
            await stream.wait_calls(100)
            code = await shell("deploy", str(toml), "--yes", "--json", "--gate-timeout", "4",
                               "--health-call", "work", '"health"')
            await stream.wait_calls(100)
            await stream.stop()
            out = capsys.readouterr()
            assert code == 1
            error = out.err.strip().splitlines()[-1]
            assert error.startswith("error: deploy stopped at node a1 (gate): ") and \
                reason in error and error.endswith("; untouched: a2, a3"), out.err
            result = json.loads(out.out)
            assert result["ok"] is False
            assert result["failed"]["node"] == "a1" and result["failed"]["step"] == "gate"
            assert reason in result["failed"]["reason"]
            assert [r["node"] for r in result["results"]] == ["a1"]
            # the others were left untouched and serving
            after = await creations(client, NAMES)
            assert after["a1"] != before["a1"]
            assert (after["a2"], after["a3"]) == (before["a2"], before["a3"])
            assert stream.failures() == []
            assert {"a2", "a3"} <= {o.node for o in stream.outcomes[-100:]}
            assert up.node_state("a2") == up.node_state("a3") == "running"
        assert await shell("audit", "--store", store_of(toml), "--cluster", "t", "--json") == 0
        (record,) = json.loads(capsys.readouterr().out)
        assert record["command"] == "deploy" and record["outcome"] == "failed"
        assert record["why"] == error.removeprefix("error: ")
    finally:
        await up.stop()


async def incarnations_in_store(store: str) -> set[tuple[str, int]]:
    snapshot = await read_snapshot(store, "scopes/", cluster="t")
    return {(key.split("/")[2], int(key.split("/")[3])) for key in snapshot.entries}


async def test_deploying_the_old_way_reap_never_lists_a_live_member(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml, up = await started(tmp_path)
    store = store_of(toml)
    plans: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def reap_loop() -> None:
        for _ in range(5000):  # bounded; each plan is a whole `shoal reap`, ~30 ms
            if done.is_set():
                return
            code = await shell("reap", "--store", store, "--cluster", "t", "--json",
                               "--timeout", "2")
            out = capsys.readouterr().out
            assert code == 0
            plans.append(json.loads(out))

    try:
        async with shoal.Node("test-client", store=store, cluster="t") as client:
            await serving(client)
            killed: set[tuple[str, int]] = set()
            reaper = asyncio.create_task(reap_loop())
            for name in NAMES:
                old = client.cluster_view.peer(name)
                assert old is not None
                killed.add((name, old.creation))
                count = len(plans)
                os.kill(up.os_pid(name), signal.SIGKILL)
                await wait_until(lambda n=name, c=old.creation: (  # type: ignore[misc]
                    (p := client.cluster_view.peer(n)) is not None and p.creation != c
                    and sum(m.node == n for m in client.groups.get_members("work")) == 2),
                    timeout=20, what=f"{name} back with its workers")
                await wait_until(lambda c=count: len(plans) > c + 1, timeout=20,  # type: ignore[misc]
                                 what="reap to plan while the node came back")
            current = set((await creations(client, NAMES)).items())
            for _ in range(400):  # bounded: the killed incarnations' keys leave the store
                if await incarnations_in_store(store) <= current:
                    break
                await asyncio.sleep(0.05)
            assert await incarnations_in_store(store) == current
            done.set()
            await asyncio.wait_for(reaper, 30)
            for plan in plans:
                for entry in plan["remove"]:
                    pid = shoal.Pid.parse(entry["pid"])
                    assert (pid.node, pid.creation) in killed, (entry, plan)
            assert up.state()["nodes"]["a1"]["restarts"] == 1
            code = await shell("reap", "--store", store, "--cluster", "t", "--json")
            final = json.loads(capsys.readouterr().out)
            assert code == 0 and final["remove"] == [] and final["held"] == []
            assert final["live"] == 2 * len(NAMES)
    finally:
        done.set()
        await up.stop()


async def test_a_deploy_with_the_teams_own_restart_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No shoal up: the nodes are started by the test, and restarted by the
    given command (which records the new process's pid for the clean-up)."""
    toml = write_cluster(tmp_path, ["b1", "b2"])
    store = store_of(toml)
    # The subshell execs the node, so $! is the node's pid; paths are absolute.
    run = (f"(cd {tmp_path} && exec {sys.executable} -m shoal.cli run app:setup "
           f"--node {{node}} --store {store} --cluster t)")
    started_pids: list[int] = []
    try:
        for name in ("b1", "b2"):
            process = await asyncio.create_subprocess_shell(
                run.replace("{node}", name)
                + f" > {tmp_path}/{name}.0.log 2>&1 & echo $! > {tmp_path}/{name}.pid")
            await process.wait()
            started_pids.append(int((tmp_path / f"{name}.pid").read_text()))
        async with shoal.Node("test-client", store=store, cluster="t") as client:
            await wait_until(lambda: len(client.groups.get_members("work")) == 4, timeout=20,
                             what="both nodes serving")
            before = await creations(client, ["b1", "b2"])
            command = (run + f" > {tmp_path}/{{node}}.1.log 2>&1 & "
                       f"echo $! > {tmp_path}/{{node}}.pid")
            code = await shell("deploy", "--store", store, "--cluster", "t", "--yes", "--json",
                               "--restart-cmd", command, "--gate-timeout", "20",
                               "--node", "b1", "--node", "b2")
            started_pids += [int((tmp_path / f"{n}.pid").read_text()) for n in ("b1", "b2")]
            out = capsys.readouterr()
            assert code == 0, out.err
            result = json.loads(out.out)
            assert result["plan"]["restart_via"] == "command"
            assert result["plan"]["nodes"] == ["b1", "b2"]
            after = await creations(client, ["b1", "b2"])
            assert [r["new_creation"] for r in result["results"]] == [after["b1"], after["b2"]]
            assert after["b1"] != before["b1"] and after["b2"] != before["b2"]

            code = await shell("deploy", "--store", store, "--cluster", "t", "--yes",
                               "--restart-cmd", "echo no such unit; exit 3", "--node", "b2")
            assert code == 1
            err = capsys.readouterr().err.strip().splitlines()[-1]
            assert err == ("error: deploy stopped at node b2 (restart): restart command "
                           "'echo no such unit; exit 3' exited with status 3: no such unit")
    finally:
        for pid in started_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
