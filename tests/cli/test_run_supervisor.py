"""``shoal run MODULE:FACTORY``: a node whose application is a supervision tree.

The node starts the tree's top supervisor; when that supervisor gives up,
the node stops and the command exits 4 (``EXIT_SUPERVISOR``) so that the
OS-level supervisor sees it. Run as a real subprocess, as systemd would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from shoal.cli.main import main
from shoal.cli.running import EXIT_SUPERVISOR

SECRET = "run-supervisor-secret-0123456789abcdef"

APP = '''
import shoal


class Flaky(shoal.GenServer):
    """Crashes right after each start: a crash loop."""

    async def init(self):
        self.send(self.pid, "die")

    async def handle_info(self, message):
        raise RuntimeError("flaky worker gives up")


class Steady(shoal.GenServer):
    async def init(self):
        print("steady started", flush=True)

    async def terminate(self, reason):
        print(f"steady terminated {reason}", flush=True)


def crash_loop():
    return shoal.SupervisorSpec(children=[shoal.ChildSpec("steady", Steady),
                                          shoal.ChildSpec("flaky", Flaky)],
                                intensity=2, period=60)


class Tree(shoal.Supervisor):
    def children(self):
        return [shoal.ChildSpec("steady", Steady)]


def not_a_tree():
    return 42
'''


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "tree_app_for_tests.py").write_text(APP, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tree_app_for_tests", raising=False)
    monkeypatch.setenv("SHOAL_SECRET", SECRET)
    return tmp_path


async def _run(app: Path, target: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shoal.cli", "run", f"tree_app_for_tests:{target}",
        "--node", "tree", "--store", f"sqlite://{app}/cluster.db", cwd=app,
        env=dict(os.environ, SHOAL_SECRET=SECRET),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_run_exits_4_when_the_top_supervisor_gives_up(app: Path) -> None:
    code, out, err = await _run(app, "crash_loop")
    assert code == EXIT_SUPERVISOR == 4, err
    assert "ready on" in out  # it served before giving up
    # the supervisor stopped its other child, in order, before the node stopped
    assert "steady terminated shutdown" in out
    assert "exceed the intensity 2" in err and "'flaky'" in err
    assert "its top supervisor" in err


async def test_run_starts_a_supervisor_subclass_and_stops_it_on_sigterm(app: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shoal.cli", "run", "tree_app_for_tests:Tree",
        "--node", "tree", "--store", f"sqlite://{app}/cluster.db", cwd=app,
        env=dict(os.environ, SHOAL_SECRET=SECRET),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        lines = [await asyncio.wait_for(process.stdout.readline(), 30) for _ in range(2)]
        # the tree is up (its child started) before the node says it is ready
        assert lines[0] == b"steady started\n" and b"ready on" in lines[1]
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert out.decode() == "steady terminated shutdown\n"


async def test_run_exits_1_when_the_top_supervisor_cannot_start(app: Path) -> None:
    (app / "tree_app_for_tests.py").write_text(APP + '''

class Broken(shoal.GenServer):
    async def init(self):
        raise RuntimeError("cannot start")


def broken():
    return shoal.SupervisorSpec(children=[shoal.ChildSpec("steady", Steady),
                                          shoal.ChildSpec("broken", Broken)])
''', encoding="utf-8")
    code, out, err = await _run(app, "broken")
    assert code == 1
    assert "ready on" not in out and "steady terminated shutdown" in out
    assert "ChildStartFailed" in err and "cannot start" in err


def test_run_refuses_a_factory_that_returns_no_supervisor(
        app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite://{app}/cluster.db"
    assert main(["run", "tree_app_for_tests:not_a_tree", "--node", "t", "--store", store]) == 2
    assert "shoal.Supervisor subclass" in capsys.readouterr().err
