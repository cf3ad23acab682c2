"""``shoal up`` runs a cluster file's nodes and restarts one that dies;
``shoal down`` stops them all gracefully; a bad file is exit 2 in one line.

Real processes: ``shoal up`` is a child of the test, its nodes are its
children; ``shoal down`` runs through ``main(argv)`` in a thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
from pathlib import Path

import pytest
from up_support import APP, UpProcess, write_cluster

import shoal
from shoal.cli import main
from shoal.cli.upstate import control, write_state
from shoal.testing.cluster import wait_until

NAMES = ["a1", "a2"]


async def shell(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_up_restarts_a_killed_node_and_down_stops_every_node_gracefully(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = write_cluster(tmp_path, NAMES)
    up = UpProcess(toml)
    try:
        await up.start(NAMES)
        assert stat.S_IMODE(up.state_file.stat().st_mode) == 0o600
        await wait_until(lambda: any(line.startswith("a1 | shoal node a1 ready")
                                     for line in up.lines), what="a1's ready line, prefixed")
        killed = up.os_pid("a1")
        os.kill(killed, signal.SIGKILL)
        await wait_until(lambda: up.running_as_another_process("a1", killed),
                         timeout=20, what=f"a1 restarted: {up.text()}")
        await wait_until(lambda: any("node a1 exited by signal SIGKILL; restarting it in"
                                     in line for line in up.lines), what="the restart logged")
        assert up.state()["nodes"]["a1"]["restarts"] == 1

        # One shoal up per cluster and directory: a second one refuses.
        assert await shell("up", str(toml)) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "already runs cluster 't' here" in err, err

        assert await shell("down", str(toml), "--json") == 0
        result = json.loads(capsys.readouterr().out)
        assert result["stopped"] is True and result["up_pid"] == up.process.pid  # type: ignore[union-attr]
        assert set(result["nodes"]) == set(NAMES) and result["after_s"] >= 0
        assert await up.wait_exit() == 0
        for name in NAMES:  # every node ran its terminates: a graceful stop
            assert sum(f"{name} | terminate ran in {name}" == line for line in up.lines) == 2
        assert not up.state_file.exists()
        assert any(line.startswith("up") and "stopped: a1 with status 0, a2 with status 0"
                   in line for line in up.lines), up.text()
    finally:
        await up.stop()


async def test_down_without_a_running_up_says_so_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = write_cluster(tmp_path, NAMES)
    assert await shell("down", str(toml)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no shoal up is running for" in err

    # A state file left by a shoal up that is gone (its pid now another process: ours).
    state = tmp_path / ".shoal" / "up-t.json"
    write_state(state, {"file": str(toml), "up_pid": os.getpid(), "cmdline": ["shoal", "up"],
                        "up_start": "0", "nodes": {"a1": {"os_pid": 4242}}})
    assert await shell("down", str(toml)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stale state file" in err and "a1 pid 4242" in err


@pytest.mark.parametrize(("body", "message"), [
    ('app = "app:setup"\nport = 1\n[[node]]\nname = "a"\n', "unknown key 'port'"),
    ('[[node]]\nname = "a"\n', "missing key 'app'"),
    ('app = "app:setup"\n[[node]]\nname = "a"\n[[node]]\nname = "a"\n',
     "duplicate node name 'a' at node[2].name"),
    ('app = "app:setup"\n[[node]]\nname = "a"\ncolour = "red"\n', "unknown key 'node[1].colour'"),
    ('app = "app:setup"\n[restart]\nwindow_s = -1\n[[node]]\nname = "a"\n',
     "bad value for key 'restart.window_s'"),
    ('app = "app:setup"\n', "missing key 'node'"),
    ('app = "app:setup"\nargs = ["--node", "x"]\n[[node]]\nname = "a"\n',
     "bad value for key 'args'"),
    ('app = [', "not TOML"),
])
def test_a_bad_cluster_file_is_exit_2_with_one_line_naming_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, message: str) -> None:
    toml = tmp_path / "cluster.toml"
    toml.write_text(body)
    for command in ("up", "down", "deploy"):
        assert main([command, str(toml)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / ".shoal").exists()  # nothing was started or written


async def test_up_gives_up_on_a_node_that_keeps_dying_and_keeps_the_others(
        tmp_path: Path) -> None:
    app = APP + '''
async def broken(node):
    raise RuntimeError("this release cannot start")
'''
    toml = write_cluster(tmp_path, ["a1"], app=app, extra="max_restarts = 2\n"
                         '[[node]]\nname = "bad"\napp = "app:broken"\n')
    up = UpProcess(toml)
    try:
        await up.start(["a1"])
        await wait_until(lambda: up.node_state("bad") == "gave-up", timeout=30,
                         what=f"shoal up to give up on bad: {up.text()}")
        info = up.state()["nodes"]["bad"]
        assert (info["starts"], info["restarts"], info["last_exit"]) == (3, 2, 1)
        await wait_until(lambda: any("node bad exited with status 1; 2 restarts within 60s: "
                                     "giving up on it" in line for line in up.lines),
                         what="the give-up logged")
        assert sum("node bad exited with status 1; restarting it in" in line
                   for line in up.lines) == 2
        assert up.node_state("a1") == "running"

        # The control port answers only requests carrying the state file's token.
        state = up.state()
        with pytest.raises(shoal.ShoalError, match="refused: not a control request"):
            await control({**state, "control": {**state["control"], "token": "guess"}},
                          {"op": "status"}, 5)
        status = await control(state, {"op": "status"}, 5)
        assert status["nodes"]["a1"]["os_pid"] == up.os_pid("a1")
        # A restart asked for tries again, with a fresh count, and says how it went.
        with pytest.raises(shoal.ShoalError, match="node bad did not start: backoff, last "
                                                   "exit with status 1"):
            await control(state, {"op": "restart", "node": "bad", "timeout": 20}, 30)
        assert up.state()["nodes"]["bad"]["starts"] == 4
    finally:
        await up.stop()


async def test_ctrl_c_stops_every_node_and_kills_one_that_outlives_the_stop_timeout(
        tmp_path: Path) -> None:
    app = APP + '''
class Stuck(shoal.GenServer):
    async def terminate(self, reason):
        print("stuck in terminate", flush=True)
        await __import__("asyncio").Event().wait()

async def stuck(node):
    await node.spawn(Stuck)
'''
    toml = write_cluster(tmp_path, ["a1"], app=app, extra="")
    toml.write_text(toml.read_text().replace("stop_timeout_s = 15", "stop_timeout_s = 1")
                    + '[[node]]\nname = "hangs"\napp = "app:stuck"\n')
    up = UpProcess(toml)
    try:
        await up.start(["a1", "hangs"])
        assert up.process is not None
        up.process.send_signal(signal.SIGINT)  # what Ctrl-C on its terminal sends
        assert await up.wait_exit() == 0
        lines = up.lines
        # Names are padded to the longest, "hangs": "a1    | ...".
        assert sum(line == "a1    | terminate ran in a1" for line in lines) == 2, up.text()
        assert "hangs | stuck in terminate" in lines
        assert any("node hangs still running 1s after SIGTERM: SIGKILL" in line
                   for line in lines), up.text()
        assert any("stopped: a1 with status 0, hangs by signal SIGKILL" in line
                   for line in lines), up.text()
    finally:
        await up.stop()
