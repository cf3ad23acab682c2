"""Helpers for the tests of ``shoal up``, ``down`` and ``deploy``: a cluster
file with a small app in a temporary directory, and a running ``shoal up``
whose output the test reads line by line.

Every process is started here and stopped by its PID (``UpProcess.stop``:
SIGTERM, then SIGKILL after a bounded wait), even after a failed test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import shoal
from shoal.cli.upstate import read_state
from shoal.testing.cluster import wait_until

__all__ = ["APP", "UpProcess", "write_cluster"]

APP = '''
import os
import shoal

class Echo(shoal.GenServer):
    async def init(self, name):
        self.name = name

    async def handle_call(self, request, caller):
        if request == "health" and os.environ.get("SICK"):
            raise RuntimeError("sick on purpose")
        return [self.name, request]

    async def terminate(self, reason):
        print(f"terminate ran in {self.name}", flush=True)

async def setup(node):
    for _ in range(2):
        await node.groups.join("work", await node.spawn(Echo, node.name))
'''


def write_cluster(directory: Path, names: list[str], *, app: str = APP,
                  extra: str = "") -> Path:
    """Write ``app.py`` and ``cluster.toml`` (a cluster named "t") into ``directory``."""
    (directory / "app.py").write_text(app)
    nodes = "".join(f'[[node]]\nname = "{name}"\n' for name in names)
    toml = directory / "cluster.toml"
    toml.write_text('cluster = "t"\napp = "app:setup"\n'
                    'args = ["--heartbeat-timeout", "1", "--session-ttl", "2"]\n'
                    '[restart]\nbackoff_initial_s = 0.1\nbackoff_max_s = 0.5\n'
                    'stop_timeout_s = 15\n' + extra + nodes)
    return toml


class UpProcess:
    """A ``shoal up`` child of the test; ``lines`` is everything it printed."""

    def __init__(self, toml: Path) -> None:
        self.toml = toml
        self.state_file = toml.parent / ".shoal" / "up-t.json"
        self.lines: list[str] = []
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, names: list[str], timeout: float = 30) -> UpProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shoal.cli", "up", str(self.toml),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={k: v for k, v in os.environ.items()
                 if k not in ("SHOAL_SECRET", "SHOAL_SECRET_FILE")})
        self._reader = asyncio.create_task(self._read())
        await wait_until(lambda: all(self.node_state(n) == "running" for n in names),
                         timeout=timeout, what=f"nodes {names} running: {self.text()}")
        return self

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines[-60:])

    def state(self) -> dict[str, Any]:
        return read_state(self.state_file) or {}

    def node_state(self, name: str) -> str | None:
        info = self.state().get("nodes", {}).get(name)
        return info.get("state") if isinstance(info, dict) else None

    def running_as_another_process(self, name: str, old_pid: int) -> bool:
        """Whether ``name`` runs, as an OS process other than ``old_pid``: one
        read of the state file (it changes between two reads while a node
        restarts)."""
        info = self.state().get("nodes", {}).get(name)
        if not isinstance(info, dict):
            return False
        pid = info.get("os_pid")
        return info.get("state") == "running" and isinstance(pid, int) and pid != old_pid

    def os_pid(self, name: str) -> int:
        pid = self.state()["nodes"][name]["os_pid"]
        assert isinstance(pid, int)
        return pid

    async def wait_exit(self, timeout: float = 30) -> int:
        assert self.process is not None
        code = await asyncio.wait_for(self.process.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        return code

    async def stop(self) -> None:
        """Stop it (and so its nodes) if it still runs."""
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            await self.wait_exit(30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def creations(node: shoal.Node, names: list[str]) -> dict[str, int]:
    """The creation each node of ``names`` has in ``node``'s view."""
    out = {}
    for name in names:
        peer = node.cluster_view.peer(name)
        assert peer is not None, f"node {name} not seen"
        out[name] = peer.creation
    return out
