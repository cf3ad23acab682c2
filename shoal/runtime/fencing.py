"""What a node does when it fences itself (``replication.py``, Rule 5).

A fenced node no longer owns its name: a newer incarnation holds it. It
must stop serving at once and never speak for that name again: spawns are
refused, every local process is killed (queued callers get ``NoSuchProcess``, remote callers a
FAIL ``noproc``), redials stop, and the listener and every connection close
with BYE ``"fenced"`` (which, unlike ``"shutdown"``, promises nothing about
calls in flight). The replication has already stopped following and
writing the store.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shoal.runtime.processes import ProcessTable
    from shoal.runtime.remote import Remote

__all__ = ["FENCED", "stop_serving"]

log = logging.getLogger("shoal")

FENCED = "fenced"
"""Exit reason of a fenced node's processes, and its BYE reason."""


def stop_serving(processes: ProcessTable, remote: Remote,
                 why: str) -> asyncio.Task[None] | None:
    """Stop the node of ``processes`` and ``remote`` serving, logging ``why``
    in one line.

    Returns:
        The task closing its connections (for its owner to keep), or None
        when the node has no listener.
    """
    log.error("node %s (creation %d) fenced: %s; it stops serving, never writes to the "
              "store again, and should exit", processes.name, processes.creation, why,
              extra={"shoal_event": {"event": "fenced", "creation": processes.creation,
                                     "reason": why}})
    processes.close()  # nothing new starts under a name we no longer own
    for pid in processes.pids():
        proc = processes.live(pid)
        if proc is not None:
            proc.kill(FENCED)
    remote.close()
    manager = remote.manager
    if manager is None:
        return None
    return asyncio.get_running_loop().create_task(manager.close(FENCED),
                                                  name=f"shoal fence {processes.name}")
