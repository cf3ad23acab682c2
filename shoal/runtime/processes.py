"""The process table: every process of this node not yet dead, and pid serials.

Owns: ``_procs`` (pid -> Process, in spawn order) and the serial counter
new pids are numbered from. Everything else on the node finds a process
through this table's methods; only ``add`` and ``discard`` change it.

Rules:

- Rule 1: a process is in the table from its spawn until its exit path's
  asynchronous half ends (``Signals.process_dead`` discards it): an exiting
  process is still found by ``get`` (so a kill can cut its ``terminate``
  short, and stop can wait for it), but not by ``live``.
- Rule 2: serials start at 1 and are never reused within an incarnation;
  serial 0 names the node itself (exit signals sent from code outside any
  process come from ``Pid(node, creation, 0)``).
- Rule 3: a node's stop (G4) first waits for every process to be idle
  (``drain``, bounded), then stops them newest first (``stop_all``), so
  children stop before the parents that spawned them; each is bounded by
  its ``shutdown_timeout``, and one that ignores being killed is abandoned
  rather than hang the stop (G6).
- Bounds: one entry per process not yet dead; a process's entry goes in
  its own exit path, so the table holds no more than the node runs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal.pid import SHUTDOWN, Pid

if TYPE_CHECKING:
    from shoal.runtime.process import Process

__all__ = ["ProcessTable"]

log = logging.getLogger("shoal")


class ProcessTable:
    """The node's processes not yet dead (see the module header).

    Args:
        name: the node's name.
        creation: the node's creation (its incarnation).
    """

    def __init__(self, name: str, creation: int) -> None:
        self.name = name
        self.creation = creation
        self._serials = itertools.count(1)
        # Invariant: every process not yet DEAD, in spawn order.
        self._procs: dict[Pid, Process] = {}
        # The hot paths (call, cast, send) look a pid up once per message:
        # the dict's own bound method, not a wrapper around it.
        self.get: Callable[[Pid], Process | None] = self._procs.get

    def new_pid(self) -> Pid:
        """The pid for the next process spawned (Rule 2)."""
        return Pid(self.name, self.creation, next(self._serials))

    def add(self, proc: Process) -> None:
        """Enter a process just spawned."""
        self._procs[proc.pid] = proc

    async def run(self, proc: Process, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Start the task of a process just added; returns once its ``init``
        returned (its failure is raised here, see ``Process.run``)."""
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        proc.task = loop.create_task(proc.run(args, kwargs, started), name=f"shoal {proc.pid}")
        await started

    def discard(self, pid: Pid) -> None:
        """Remove a process whose exit path ended (Rule 1)."""
        self._procs.pop(pid, None)

    def live(self, pid: Pid) -> Process | None:
        """The process for ``pid`` if it is alive (not exiting), else None."""
        proc = self._procs.get(pid)
        return proc if proc is not None and proc.alive else None

    def all(self) -> list[Process]:
        """Every process not yet dead, oldest first (a copy: safe to iterate
        while processes exit)."""
        return list(self._procs.values())

    async def drain(self, timeout: float) -> None:
        """Wait until every process is idle, at most ``timeout`` seconds in
        all (Rule 3); a timeout is logged, not raised."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for proc in self.all():
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("node %s: drain timed out after %gs", self.name, timeout)
                return
            idle = proc.wait_idle()
            if idle is None:
                continue
            try:
                await asyncio.wait_for(idle, remaining)
            except TimeoutError:
                log.warning("node %s: drain timed out after %gs", self.name, timeout)
                return

    async def stop_all(self) -> None:
        """Stop every process, newest first, each bounded (Rule 3)."""
        for proc in reversed(self.all()):
            await _stop(proc)


async def _stop(proc: Process) -> None:
    proc.kill(SHUTDOWN)
    try:
        await asyncio.wait_for(asyncio.shield(proc.done), proc.shutdown_timeout + 1.0)
    except TimeoutError:
        proc.kill(SHUTDOWN, brutal=True)
        try:
            await asyncio.wait_for(asyncio.shield(proc.done), 1.0)
        except TimeoutError:
            # Its code swallowed the cancellation: give up on it (G6)
            # rather than hang the node's stop.
            log.error("process %s ignored being killed; abandoning it", proc.pid)
            proc.abandon()
