"""Start a LocalCluster node so that it stops when its test runner dies.

``python -m shoal.testing.launch PARENT_PID shoal-cli-args...`` asks the
Linux kernel to send this process SIGTERM when the thread that started it
dies (``PR_SET_PDEATHSIG``), checks that this parent is still PARENT_PID
(it may have died between the fork and the request: then it stops at once),
and runs ``python -m shoal.cli`` with the remaining arguments in this same
process. So a test runner killed with SIGKILL mid-test leaves no node
process behind.

Why a launcher rather than ``preexec_fn``: ``preexec_fn`` runs Python
between fork and exec in a child of a process that may hold other threads'
locks (the etcd client's gRPC threads), and nodes then failed to start. The
launcher sets the signal after a clean exec, in a process of its own.
Elsewhere than Linux it only runs ``shoal.cli``.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def main(argv: list[str]) -> None:
    if not argv or not argv[0].isdigit():
        sys.exit("usage: python -m shoal.testing.launch PARENT_PID [shoal arguments...]")
    parent, args = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
        if os.getppid() != parent:  # the parent died before the request took effect
            sys.exit(f"the process that started this node ({parent}) is gone")
    sys.argv = ["shoal", *args]
    runpy.run_module("shoal.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
