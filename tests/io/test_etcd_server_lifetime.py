"""Throwaway etcd members die with the process that started them (etcd_server Rule 4).

A test runner cut short (SIGKILL, a CI timeout) used to leave its etcd
servers running, holding ports, disk and CPU. Members are now tied to their
starter by the kernel's parent-death signal; these tests kill a starter with
SIGKILL and check that its member goes, and that a member started from a
thread that then ends keeps running (the signal follows the forking thread).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shoal.testing.etcd_server import etcd_binary, start_etcd

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="PR_SET_PDEATHSIG is Linux's")

WAIT = 15.0  # bound on every wait, seconds

STARTER = """\
import sys
from shoal.testing.etcd_server import start_etcd
etcd = start_etcd(base_dir=sys.argv[1])
print(etcd.members[0].pid, flush=True)
sys.stdin.read()  # until the test kills this process
"""


def _started_at(pid: int) -> str | None:
    """The start time of a live (not zombie) process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def test_a_member_dies_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    starter = subprocess.Popen([sys.executable, "-c", STARTER, str(tmp_path)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    member_pid = 0
    try:
        assert starter.stdout is not None
        member_pid = int(starter.stdout.readline())  # after the member was healthy
        started = _started_at(member_pid)
        assert started is not None, "the member was not running"
        # Its PID is etcd's own (the launcher exec'd it): fault tests signal it.
        assert os.readlink(f"/proc/{member_pid}/exe") == os.path.realpath(etcd_binary())
        member = os.pidfd_open(member_pid)  # readable once that very process has ended
        try:
            os.kill(starter.pid, signal.SIGKILL)
            starter.wait(WAIT)
            ended, _, _ = select.select([member], [], [], WAIT)
        finally:
            os.close(member)
        assert ended, f"etcd member {member_pid} outlived the process that started it"
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait(WAIT)
        if member_pid and _started_at(member_pid) is not None:  # the test failed: clean up
            os.kill(member_pid, signal.SIGKILL)


def test_a_member_restarted_from_a_thread_outlives_the_thread() -> None:
    with start_etcd() as etcd:
        first = etcd.members[0].pid
        worker = threading.Thread(target=etcd.restart_member, args=(0,))
        worker.start()
        worker.join(WAIT)
        assert not worker.is_alive()
        restarted = etcd.members[0].pid
        assert restarted is not None and restarted != first
        # The thread that asked is gone; the member still answers.
        etcd.wait_healthy(0, WAIT)
        assert etcd.put("/lifetime/after-thread", "x") > 0
        assert etcd.members[0].process is not None
        assert etcd.members[0].process.poll() is None
