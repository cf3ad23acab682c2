"""Start test processes so that they die with the test runner that started them.

A test runner killed mid-test (SIGKILL, a CI timeout) leaves nothing behind:
each process asks the Linux kernel for SIGKILL when the thread that started
it dies (``PR_SET_PDEATHSIG``), then checks that its parent is still the
runner (it may have died before the request took effect: then it exits at
once). SIGKILL, not SIGTERM: a node or etcd member a hang test stopped with
SIGSTOP would never act on a SIGTERM.

- Nodes (``LocalCluster``): ``python -m shoal.testing.launch PARENT_PID
  shoal-cli-args...`` runs ``python -m shoal.cli`` with those arguments in
  this same process.
- Other programs (etcd members): :func:`spawn_tied` runs this file as a
  script (``--exec``: standard library only, ~20 ms), which execs the
  program in place, so its PID is the program's own (tests signal it). The
  kernel ties the signal to the *thread* that forked, so ``spawn_tied``
  forks from one thread of this module that lives as long as the process,
  not from the caller's (``asyncio.to_thread`` workers come and go).

Why a launcher rather than ``preexec_fn``: ``preexec_fn`` runs Python
between fork and exec in a child of a process that may hold other threads'
locks (the etcd client's gRPC threads), and nodes then failed to start. The
launcher sets the signal after a clean exec, in a process of its own.
Elsewhere than Linux no signal is asked for.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys
import threading
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["spawn_tied"]

PR_SET_PDEATHSIG = 1  # linux/prctl.h
USAGE = ("usage: python -m shoal.testing.launch PARENT_PID [shoal arguments...]\n"
         "       python launch.py PARENT_PID --exec PROGRAM [arguments...]")


def _tie_to(parent: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        sys.exit(f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}")
    if os.getppid() != parent:  # the parent died before the request took effect
        sys.exit(f"the process that started this one ({parent}) is gone")


def main(argv: list[str]) -> None:
    if not argv or not argv[0].isdigit() or (argv[1:2] == ["--exec"] and len(argv) < 3):
        sys.exit(USAGE)
    parent, args = int(argv[0]), argv[1:]
    _tie_to(parent)
    if args[:1] == ["--exec"]:
        os.execvp(args[1], args[1:])  # no return
    sys.argv = ["shoal", *args]
    runpy.run_module("shoal.cli", run_name="__main__", alter_sys=True)


_spawner: tuple[int, ThreadPoolExecutor] | None = None
_spawner_lock = threading.Lock()


def spawn_tied(command: list[str], output: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start ``command`` (a program and its arguments) in a new session, writing
    stdout and stderr to ``output``, so that it dies with this process.

    Returns:
        The process; its PID is ``command``'s own once the launcher exec'd it.
    """
    # Imported here, not at the top: the --exec path (this file as a script)
    # needs neither, and starts faster without them.
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    global _spawner
    with _spawner_lock:
        if _spawner is None or _spawner[0] != os.getpid():  # none yet, or a forked child's
            _spawner = (os.getpid(), ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="shoal-spawner"))
        executor = _spawner[1]
    launcher = [sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid()), "--exec"]
    return executor.submit(subprocess.Popen, [*launcher, *command], stdout=output,
                            stderr=subprocess.STDOUT, start_new_session=True).result()


if __name__ == "__main__":
    main(sys.argv[1:])
