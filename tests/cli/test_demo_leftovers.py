"""``shoal demo``'s last line of defence: kill, by PID, its own node processes still running.

``kill_leftovers`` runs after the demo's event loop is gone (a second
Ctrl-C during the clean-up, say). It must kill a child that still runs,
reap one that already exited, and leave alone a pid that is not its child.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from shoal.cli.demo import kill_leftovers


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None  # no such process


def test_a_running_child_is_killed_and_reaped() -> None:
    child = subprocess.Popen(["sleep", "60"])
    assert kill_leftovers({"n1": [child.pid]}) == [child.pid]
    assert _state(child.pid) is None  # killed and reaped: gone, not a zombie


def test_an_exited_child_is_reaped_not_signalled() -> None:
    child = subprocess.Popen(["true"])
    # Wait for it to exit without reaping it: it stays a zombie for kill_leftovers.
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    assert _state(child.pid) == "Z"
    assert kill_leftovers({"n1": [child.pid]}) == []
    assert _state(child.pid) is None


def test_a_pid_that_is_not_a_child_is_left_alone() -> None:
    parent = os.getppid()  # alive, and never this process's child
    assert kill_leftovers({"n1": [parent]}) == []
    assert _state(parent) not in (None, "Z")
