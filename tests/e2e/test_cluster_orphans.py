"""A LocalCluster whose test runner is killed mid-test leaves no node behind,
not even one a hang test holds stopped (SIGSTOP)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from shoal.testing import wait_until

SCRIPT = '''
import asyncio
from shoal.testing import LocalCluster

async def main():
    async with LocalCluster(["n1", "n2"]) as cluster:
        print(" ".join(str(node.pid) for node in cluster.nodes.values()), flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
'''


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_nodes_stop_when_the_process_that_started_them_is_killed(tmp_path: Path) -> None:
    # n2 is stopped as a hang test stops a node: a SIGTERM would wait for a
    # SIGCONT that never comes; the kernel's SIGKILL does not.
    (tmp_path / "runner.py").write_text(SCRIPT, encoding="utf-8")
    runner = await asyncio.create_subprocess_exec(
        sys.executable, str(tmp_path / "runner.py"), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    assert runner.stdout is not None
    line = await asyncio.wait_for(runner.stdout.readline(), 60)
    nodes = [int(pid) for pid in line.split()]
    assert len(nodes) == 2 and all(alive(pid) for pid in nodes)
    try:
        os.kill(nodes[1], signal.SIGSTOP)
        os.kill(runner.pid, signal.SIGKILL)  # the runner dies without stopping anything
        await runner.wait()
        await wait_until(lambda: not any(alive(pid) for pid in nodes), timeout=30,
                         what="the orphaned nodes to stop")
    finally:
        for pid in nodes:  # the runner's children, started for this test: never leak them
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
