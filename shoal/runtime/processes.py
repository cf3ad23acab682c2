"""The process table: every process of this node not yet dead, and pid serials.

Owns: ``_procs`` (pid -> Process, in spawn order), the serial counter
new pids are numbered from, and the counter of the node's references.
Everything else on the node finds a process through this table's methods;
only ``spawn`` and ``discard`` change it.

Rules:

- Rule 1: a process is in the table from its spawn until its exit path's
  asynchronous half ends (``Signals.process_dead`` discards it): an exiting
  process is still found by ``get`` (so a kill can cut its ``terminate``
  short, and stop can wait for it), but not by ``live``.
- Rule 2: processes are spawned only while the table is open: from the
  node's start until its stop begins. Arguments are all checked before a
  pid is taken, and a process is in the table before its ``init`` runs.
- Rule 3: serials start at 1 and are never reused within an incarnation;
  serial 0 names the node itself (exit signals sent from code outside any
  process come from ``Pid(node, creation, 0)``).
- Rule 4: a node's stop (G4) first waits for every process to be idle
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
from typing import Any

from shoal.errors import BadArgument, CallTimeout, ShoalError
from shoal.pid import NOPROC, SHUTDOWN, Pid, Reason
from shoal.runtime.checks import check_pid, check_timeout
from shoal.runtime.notices import Ref
from shoal.runtime.process import Behaviour, ExitHooks, Process, current_process, mailbox_limit

__all__ = ["ProcessTable"]

log = logging.getLogger("shoal")


class ProcessTable:
    """The node's processes not yet dead (see the module header).

    Args:
        name: the node's name.
        creation: the node's creation (its incarnation).
        mailbox_size: the node's default mailbox bound.
    """

    def __init__(self, name: str, creation: int, mailbox_size: int | None) -> None:
        self.name = name
        self.creation = creation
        self.mailbox_size = mailbox_size
        self._open = False
        self._serials = itertools.count(1)
        self._refs = itertools.count(1)
        # Invariant: every process not yet DEAD, in spawn order.
        self._procs: dict[Pid, Process] = {}
        # The hot paths (call, cast, send) look a pid up once per message:
        # the dict's own bound method, not a wrapper around it.
        self.get: Callable[[Pid], Process | None] = self._procs.get

    def new_ref(self) -> Ref:
        """A new reference, unique on this node (monitors, subscriptions)."""
        return Ref(self.name, self.creation, next(self._refs))

    def open(self) -> None:
        """The node started: spawns are accepted (Rule 2)."""
        self._open = True

    def close(self) -> None:
        """The node's stop began: spawns are refused (Rule 2)."""
        self._open = False

    async def spawn(
        self,
        node: object,
        behaviour: type[Behaviour],
        hooks: ExitHooks,
        link_pids: Callable[[Pid, Pid], None],
        *,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None,
        link: bool,
        mailbox_size: int | None,
        trap_exit: bool,
        shutdown_timeout: float | None,
        parent: Pid | None,
    ) -> Pid:
        """``Node.spawn_opt`` (see it for the arguments; the node checked
        that ``behaviour`` is a GenServer): ``node`` is what the
        process's GenServer sees as its node, ``hooks`` its exit path's hooks,
        ``link_pids`` links it with its parent."""
        if not isinstance(args, tuple):
            raise BadArgument("args", args, "a tuple")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise BadArgument("kwargs", kwargs, "a dict")
        limit = mailbox_limit(mailbox_size, behaviour.mailbox_size, self.mailbox_size)
        timeout = check_timeout(
            behaviour.shutdown_timeout if shutdown_timeout is None else shutdown_timeout,
            "shutdown_timeout",
        )
        if not self._open:
            raise ShoalError(f"node {self.name!r} is not running")
        # Checked here, not left to link(): a bad parent found after the
        # process is registered would leave it in the table, never started,
        # and stop() would wait for it forever.
        if parent is not None:
            check_pid("parent", parent)
        if link and parent is None:
            me = current_process.get()
            if me is None:
                raise BadArgument("link", link, "link=True only from inside a process")
            parent = me.pid
        pid = Pid(self.name, self.creation, next(self._serials))
        proc = Process(node, pid, behaviour(), hooks=hooks, limit=limit,
                       trap_exit=bool(trap_exit), shutdown_timeout=timeout, parent=parent)
        self._procs[pid] = proc
        if link and parent is not None:
            link_pids(parent, pid)
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        proc.task = loop.create_task(proc.run(args, kwargs or {}, started), name=f"shoal {pid}")
        await started
        return pid

    def discard(self, pid: Pid) -> None:
        """Remove a process whose exit path ended (Rule 1)."""
        self._procs.pop(pid, None)

    def live(self, pid: Pid) -> Process | None:
        """The process for ``pid`` if it is alive (not exiting), else None."""
        proc = self._procs.get(pid)
        return proc if proc is not None and proc.alive else None

    def pids(self) -> list[Pid]:
        """Pids of every live process, oldest first."""
        return [p.pid for p in self._procs.values() if p.alive]

    async def wait_exit(self, pid: Pid, timeout: float) -> Reason:
        """``Node.wait_exit``: the exit reason once ``pid`` is dead.

        Raises:
            CallTimeout: it is still alive after ``timeout`` seconds.
        """
        proc = self._procs.get(check_pid("pid", pid))
        seconds = check_timeout(timeout)
        if proc is None:
            return NOPROC
        try:
            return await asyncio.wait_for(asyncio.shield(proc.done), seconds)
        except TimeoutError:
            raise CallTimeout(pid, seconds) from None

    def all(self) -> list[Process]:
        """Every process not yet dead, oldest first (a copy: safe to iterate
        while processes exit)."""
        return list(self._procs.values())

    async def drain(self, timeout: float) -> None:
        """Wait until every process is idle, at most ``timeout`` seconds in
        all (Rule 4); a timeout is logged, not raised."""
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
        """Stop every process, newest first, each bounded (Rule 4)."""
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
