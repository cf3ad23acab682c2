"""One process: a mailbox, the loop that feeds the behaviour, and the exit path.

The exit path has two halves, and the split is the point of this module:

- ``begin_exit`` is synchronous and runs the moment the process is doomed
  (its handler raised, it returned ``Stop``, it was killed, its node stops).
  It marks the process dead for routing, removes it from every group, and
  fails the callers still queued. Because it never awaits, no other code on
  the node runs between "doomed" and "out of every group" (G1).
- ``_finish`` runs in the process's own task afterwards: ``terminate``
  (bounded by ``shutdown_timeout``), then DOWN to monitors and exit signals
  to links, then removal from the node's process table.

Failure rules for callers, decided here once:

- the caller being served when the handler raises gets ``CallError``;
- when the process exits while serving a call for another reason, that
  caller gets ``ProcessExited`` (delivery unknown);
- callers still queued get ``NoSuchProcess`` (their request never started);
- a caller that gave up (timed out, cancelled) before its request started
  is skipped: its request is dropped unrun.

The mailbox is a deque plus one waiter future: cheaper than an
``asyncio.Queue`` and enough for a single consumer. Its bound (``limit``)
applies to calls, casts and sends; it comes from ``spawn_opt``, else the
behaviour's ``mailbox_size``, else the node's ``mailbox_size``
(:func:`mailbox_limit`); ``shoal run`` gives its node a default bound
(``RUN_MAILBOX_SIZE``) so that a cast flood is refused, not stored.

A crash (a handler raised) is logged once, at ERROR on the ``shoal`` logger,
as one record: a message line and the traceback. Its record carries
``record.shoal_crash``, a :class:`~shoal.runtime.crashlog.CrashLog` (pid,
reason, the behaviour's class, the kind and bounded repr of the message
being handled: ``crashlog.py``), so a log pipeline reads them without
parsing the message; other records have no such attribute.

A system message (``SYSTEM``) carries a :class:`SystemOp`: a callable run
with the behaviour between two messages, never during a handler, whose
result answers its caller (``Node.code_change``; a hot reload moves a
process to its new class with one). If it raises, the process crashes as
if a handler had.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Awaitable
from typing import Any, ClassVar, Protocol

from shoal.errors import (
    BadArgument,
    BadRequest,
    CallError,
    NoSuchProcess,
    Overloaded,
    ProcessExited,
)
from shoal.pid import KILLED, NORMAL, Crash, Pid, Reason
from shoal.runtime.caller import Answer, Caller
from shoal.runtime.crashlog import CrashLog, crash_log
from shoal.runtime.notices import NOREPLY, Exit, Stop

__all__ = ["RUN_MAILBOX_SIZE", "Answer", "Behaviour", "Caller", "CrashLog", "ExitHooks",
           "Process", "SystemOp", "current_process", "mailbox_limit"]

log = logging.getLogger("shoal")

RUN_MAILBOX_SIZE = 10_000
"""The mailbox bound of ``shoal run``'s node (``--mailbox-size``): about 3 MB
of small queued casts per process, seconds of backlog for any handler."""

CALL, CAST, INFO, SYSTEM = 0, 1, 2, 3
STARTING, RUNNING, EXITING, DEAD = 0, 1, 2, 3

current_process: contextvars.ContextVar[Process | None] = contextvars.ContextVar(
    "shoal_current_process", default=None
)


def mailbox_limit(given: Any, behaviour: int | None, node: int | None) -> int | None:
    """The mailbox bound of a new process: ``given`` to ``spawn_opt`` (-1 when
    not given), else the behaviour's ``mailbox_size``, else the node's.

    Raises:
        BadArgument: the bound chosen is neither None nor an int >= 1.
    """
    limit = given if given != -1 else behaviour if behaviour is not None else node
    if limit is not None and (type(limit) is not int or limit < 1):
        raise BadArgument("mailbox_size", limit, "None or an int >= 1")
    return limit


class Behaviour:
    """What a process runs: the hooks its loop calls. :class:`shoal.GenServer`
    (``genserver.py``, above this module) is its one subclass, the one users
    derive from, and documents each hook; ``spawn`` accepts subclasses of
    this base only. Defined here so the process layer does not import the
    behaviour layer that imports it."""

    mailbox_size: ClassVar[int | None] = None
    shutdown_timeout: ClassVar[float] = 5.0
    _process: Process

    async def init(self, *args: Any, **kwargs: Any) -> None: ...

    async def handle_call(self, request: Any, caller: Caller) -> Any: ...

    async def handle_cast(self, request: Any) -> None: ...

    async def handle_info(self, message: Any) -> None: ...

    async def terminate(self, reason: Reason) -> None: ...

    async def code_change(self, old_version: Any, extra: Any) -> None: ...


class SystemOp(Protocol):
    """The payload of a system message (see the module header)."""

    def __call__(self, server: Behaviour) -> Awaitable[Any]: ...


class ExitHooks(Protocol):
    """What a process's exit path tells its node (the node's ``Signals``)."""

    def process_exiting(self, proc: Process, reason: Reason) -> None:
        """From the synchronous half: leave every group now (G1)."""

    def process_dead(self, proc: Process, reason: Reason) -> None:
        """Once ``terminate`` returned: Down to monitors, exit signals to links."""


class Process:
    """Runtime state of one process. Internal: users see pids and GenServers."""

    __slots__ = (
        "_idle",
        "backlog",
        "brutal",
        "current",
        "done",
        "handling",
        "hooks",
        "limit",
        "links",
        "mailbox",
        "monitored_by",
        "monitoring",
        "node",
        "parent",
        "pid",
        "reason",
        "server",
        "shutdown_timeout",
        "state",
        "task",
        "trap_exit",
        "waiter",
    )

    def __init__(
        self,
        node: object,
        pid: Pid,
        server: Behaviour,
        *,
        hooks: ExitHooks,
        limit: int | None,
        trap_exit: bool,
        shutdown_timeout: float,
        parent: Pid | None,
    ) -> None:
        self.node = node  # what its GenServer's ``node`` answers
        self.hooks = hooks
        self.pid = pid
        self.server = server
        # Invariant: holds (kind, payload, caller) tuples; len <= limit for
        # calls, casts and sends when limit is set (notices may exceed it).
        self.mailbox: deque[tuple[int, Any, Caller | None]] = deque()
        # Invariant: the loop's wake-up future while it waits for mail (set
        # by the loop, cleared by whoever wakes it), else None.
        self.waiter: asyncio.Future[None] | None = None
        self._idle: asyncio.Future[None] | None = None
        self.limit = limit
        self.backlog = 0  # >= 0: requests held beyond the mailbox (GenServer.backlog)
        self.trap_exit = trap_exit
        self.shutdown_timeout = shutdown_timeout
        self.parent = parent
        self.state = STARTING
        # Invariant: set once, by begin_exit.
        self.reason: Reason | None = None
        self.current: Caller | None = None
        # Invariant: None until a handler raises; then (kind, payload) of the
        # message it was handling, for the crash report.
        self.handling: tuple[int, Any] | None = None
        # Invariant: True only after an untrappable kill; terminate is skipped.
        self.brutal = False
        self.links: set[Pid] = set()
        # Invariant: monitored_by maps monitor refs on this process to the
        # watcher pid; monitoring maps refs this process holds to targets.
        self.monitored_by: dict[Any, Pid] = {}
        self.monitoring: dict[Any, Pid] = {}
        self.task: asyncio.Task[None] | None = None
        self.done: asyncio.Future[Reason] = asyncio.get_running_loop().create_future()
        # A GenServer's runtime half is its Process: a public name for it
        # would take one from every user's subclass.
        server._process = self  # noqa: SLF001

    # -- delivery ---------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.state <= RUNNING

    def queue_len(self) -> int:
        """The work this process has to do: its mailbox plus the requests
        its behaviour holds itself (``backlog``). What ``least_loaded``
        compares, and what a reply to another node reports."""
        return len(self.mailbox) + self.backlog

    def deliver(self, kind: int, payload: Any, caller: Caller | None) -> None:
        """Queue a call, cast or send; bounded by ``limit``.

        Inlined on the hot paths, ``Messaging.call`` (local) and ``Inbound._on_call``
        (remote): keep the three in step (``test_mailbox.py``, ``test_node_bounds.py``).

        Raises:
            NoSuchProcess: the process is exiting or dead.
            Overloaded: the mailbox is full.
        """
        if self.state > RUNNING:
            raise NoSuchProcess(self.pid)
        limit = self.limit
        if limit is not None and len(self.mailbox) >= limit:
            raise Overloaded(self.pid, limit)
        self.mailbox.append((kind, payload, caller))
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def wake(self) -> None:
        """Wake the loop after appending to the mailbox directly."""
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def notify(self, message: Any) -> None:
        """Queue a notice (Down, Exit, GroupEvent): never refused while alive."""
        if self.state > RUNNING:
            return
        self.mailbox.append((INFO, message, None))
        self.wake()

    def wait_idle(self) -> asyncio.Future[None] | None:
        """A future resolved when the mailbox is empty and no hook runs, or
        None if that is already so (or the process is not running)."""
        if self.state != RUNNING or (not self.mailbox and self.current is None
                                     and self.waiter is not None):
            return None
        if self._idle is None:
            self._idle = asyncio.get_running_loop().create_future()
        return self._idle

    # -- the loop ---------------------------------------------------------------

    async def run(self, args: tuple[Any, ...], kwargs: dict[str, Any],
                  started: asyncio.Future[None]) -> None:
        current_process.set(self)
        server = self.server
        try:
            await server.init(*args, **kwargs)
        except asyncio.CancelledError:
            if self.reason is None:
                self.begin_exit(KILLED)
                self._end()
                # spawn() waits on this: it must not wait forever.
                started.set_exception(ProcessExited(self.pid, KILLED))
                raise
            started.set_exception(ProcessExited(self.pid, self.reason))
            self._end()
            return
        except Stop as stop:
            self.begin_exit(stop.reason)
            started.set_exception(ProcessExited(self.pid, stop.reason))
            self._end()
            return
        except (Exception, SystemExit) as exc:  # sys.exit() ends this process only (a crash)
            crash = Crash.from_exception(exc)
            self.begin_exit(crash)
            started.set_exception(CallError(self.pid, crash.type, crash.message, crash.traceback))
            self._end()
            return
        if self.state == STARTING:
            self.state = RUNNING
        started.set_result(None)
        reason: Reason
        try:
            await self._loop(server)
            # The loop returns only when the process doomed itself from its
            # own task (an exit signal it sent to itself).
            reason = self.reason if self.reason is not None else NORMAL
        except Stop as stop:
            caller = self.current
            if caller is not None and stop.has_reply:
                caller.reply(stop.reply)
            reason = stop.reason
        except asyncio.CancelledError:
            if self.reason is None:
                # Cancelled by someone else than its own exit path (the event
                # loop is closing): clean up as killed, and let it propagate.
                self.begin_exit(KILLED)
                self._end()
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # our own exit path cancelled us on purpose
            reason = self.reason
        except (Exception, SystemExit) as exc:  # sys.exit() ends this process only (a crash)
            reason = Crash.from_exception(exc)
            caller = self.current
            if caller is not None:
                caller.fail(CallError(self.pid, reason.type, reason.message, reason.traceback))
            kind, payload = self.handling if self.handling is not None else (SYSTEM, None)
            report = crash_log(self.pid, reason, server, kind, payload)
            log.error("%s\n%s", report.line(), reason.traceback.rstrip(),
                      extra={"shoal_crash": report})
        await self._finish(reason)

    async def _loop(self, server: Behaviour) -> None:
        mailbox = self.mailbox
        loop = asyncio.get_running_loop()
        future: Answer | None = None
        result: Any = None
        kind: int = SYSTEM
        payload: Any = None
        try:
            while self.state == RUNNING:
                if not mailbox:
                    idle = self._idle
                    if idle is not None:
                        self._idle = None
                        if not idle.done():
                            idle.set_result(None)
                    # Drop the last message before waiting: an idle process keeps
                    # no request, Caller, future or reply alive until the next.
                    payload = caller = future = result = None
                    self.waiter = waiter = loop.create_future()
                    await waiter
                    continue
                kind, payload, caller = mailbox.popleft()  # specialized; a bound one is not
                if kind == CALL:
                    assert caller is not None  # a CALL always carries its caller
                    future = caller.answer
                    if future.done():
                        continue  # the caller gave up before we started: drop unrun
                    self.current = caller
                    try:
                        result = await server.handle_call(payload, caller)
                    except BadRequest as exc:
                        caller.fail(exc)
                        result = NOREPLY  # answered
                    self.current = None
                    if result is not NOREPLY:
                        try:  # noqa: SIM105 - suppress() costs two calls per message
                            future.set_result(result)
                        except asyncio.InvalidStateError:
                            pass  # answered (caller.reply), or its caller gave up
                elif kind == CAST:
                    await server.handle_cast(payload)
                elif kind == INFO:
                    if type(payload) is Exit and payload.pid == self.parent:
                        # OTP's gen_server: an exit signal from the parent (its
                        # supervisor) stops a process that traps exits too.
                        raise Stop(payload.reason)
                    await server.handle_info(payload)
                else:  # SYSTEM: a SystemOp, in line with the other messages
                    assert caller is not None  # as a CALL, it carries its caller
                    future = caller.answer
                    if future.done():
                        continue  # its sender gave up (timed out): drop unrun
                    self.current = caller
                    result = await payload(server)
                    self.current = None
                    if not future.done():
                        future.set_result(result)
        except (Exception, SystemExit):
            # Only a handler raises here: kind and payload are its message.
            self.handling = (kind, payload)
            raise

    # -- exit path ----------------------------------------------------------------

    def begin_exit(self, reason: Reason) -> bool:
        """The synchronous half of the exit path (see the module header).
        Returns False if the process was already exiting."""
        if self.state >= EXITING:
            return False
        self.state = EXITING
        self.reason = reason
        # An exiting process serves nothing more: whoever waits for it to
        # become idle (a node draining before it stops) must not wait on.
        idle = self._idle
        if idle is not None:
            self._idle = None
            if not idle.done():
                idle.set_result(None)
        self.hooks.process_exiting(self, reason)
        caller = self.current
        if caller is not None:  # a crash already answered it with CallError
            caller.fail(ProcessExited(self.pid, reason))
        mailbox = self.mailbox
        while mailbox:
            _, _, queued = mailbox.popleft()
            if queued is not None:  # a call or a system message never started
                queued.fail(NoSuchProcess(self.pid))
        return True

    def exit_signal(self, sender: Pid, reason: Reason) -> None:
        """Apply Erlang's exit-signal rules (``signals.py``, Rule 2) to this
        process: ``"kill"`` kills it, untrappably; otherwise a process that
        traps exits gets ``Exit``, one that does not stops unless the reason
        is ``"normal"``."""
        if reason == "kill":
            # Untrappable, and it also reaches a process that is exiting but
            # not dead yet: it cuts short a terminate in progress (a hung
            # terminate must be killable without waiting shutdown_timeout).
            if self.state != DEAD:
                self.kill(KILLED, brutal=True)
            return
        if not self.alive:
            return
        if self.trap_exit:
            self.notify(Exit(pid=sender, reason=reason))
        elif reason != NORMAL:
            self.kill(reason)

    def kill(self, reason: Reason, *, brutal: bool = False) -> None:
        """Exit now with ``reason``: the synchronous half runs here, the rest
        in the process's task. ``brutal`` (an untrappable kill) skips
        ``terminate``, or interrupts it if it is already running."""
        first = self.begin_exit(reason)
        if not first and not (brutal and not self.brutal):
            return
        self.brutal = self.brutal or brutal
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    async def _finish(self, reason: Reason) -> None:
        self.begin_exit(reason)
        if not self.brutal:
            try:
                async with asyncio.timeout(self.shutdown_timeout):
                    await self.server.terminate(self.reason if self.reason is not None
                                                else reason)
            except asyncio.CancelledError:
                if not self.brutal:
                    self._end()
                    raise
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()  # a brutal kill interrupted terminate on purpose
            except TimeoutError:
                log.warning("process %s: terminate took longer than %gs; killed",
                            self.pid, self.shutdown_timeout)
            except (Exception, SystemExit):
                log.exception("process %s: terminate raised", self.pid)
        self._end()

    def abandon(self) -> None:
        """End the exit path without waiting for the process's task: its
        code swallowed the cancellation of a brutal kill (the node's stop
        gives up on it rather than hang)."""
        self._end()

    def _end(self) -> None:
        if self.state == DEAD:
            return
        self.state = DEAD
        reason = self.reason if self.reason is not None else KILLED
        try:
            self.hooks.process_dead(self, reason)
        except Exception:
            # The exit path must finish whatever went wrong: ``done`` is
            # what every waiter (spawn, stop, wait_exit) is blocked on.
            log.exception("process %s: telling its monitors and links failed", self.pid)
        finally:
            if not self.done.done():
                self.done.set_result(reason)

    def __repr__(self) -> str:
        return f"<Process {self.pid} {type(self.server).__name__}>"
