"""Supervisors: processes that start, watch and restart other processes (OTP).

Owns a supervisor's children: their specs in start order, the pid each
runs as, and the times of recent restarts. The data it is configured from
lives in ``childspec.py``; the API that asks a supervisor about its children
(``start_child``, ``which_children``, ...) is in ``supervision.py``, as
calls to the supervisor process, so it works by pid from any node.

Rules:

- Rule 1: a supervisor traps exits and links each child when it starts it
  (the link is made before the child's ``init`` runs). It learns of a
  child's exit only as an :class:`~shoal.Exit` message, one at a time,
  between calls: every decision about children is made in the supervisor's
  own process, so no two decisions race.
- Rule 2: children start in spec order and stop in reverse order. A child
  counts as started once its ``init`` returned *and* it joined its spec's
  groups: only then does the next child start, or ``start_child`` return.
- Rule 3: stopping a child: unlink it, send it the exit signal
  ``"shutdown"`` (its ``terminate`` runs), wait up to its ``shutdown``
  seconds, then kill it; ``"brutal_kill"`` kills at once. Unlinking first
  means the Exit of a child the supervisor stopped never reaches it as a
  crash; an Exit already queued from a pid that is no longer a child is
  ignored (a child whose start failed, or one stopped meanwhile).
- Rule 4: restart intensity: each restart is timed; more than
  ``intensity`` within ``period`` seconds and the supervisor logs one
  report, stops its children (Rule 3, reverse order) and exits with
  ``"shutdown"``. Its parent (a supervisor traps exits) sees that Exit and
  counts a restart of its own, so a crash loop escalates up the tree.
- Rule 5: a restart whose start fails counts as one more restart and is
  tried again at once; Rule 4 bounds the tries.
- Rule 6: an exit signal from its parent (the supervisor that started it),
  or from the node itself (code outside any process calling
  ``node.exit(sup, reason)``), stops the supervisor with that reason, after
  its children. Other exit signals from non-children are ignored (OTP).
  Once its node is stopping (G4), a child's exit is never restarted.
- Rule 7: children are started from ``codeload.current_class(spec.cls)``,
  so after a hot reload new children run the new code.
- Rule 8: a child spec's ``name`` is registered once the child started,
  before its groups are joined and before it counts as started; if the
  name is taken, the child is stopped and its start failed. A global name
  still held by the child's previous process (its exit path released it,
  and the store's delete is on its way) is waited for, at most
  :data:`NAME_RELEASE_WAIT` seconds, with the one backoff schedule.
- Bounds: one entry per child spec (dynamic children of a
  ``simple_one_for_one`` are removed when they exit for good); the restart
  times hold at most ``intensity + 1`` entries within ``period``.

Reports go to the ``shoal`` logger with ``record.shoal_supervisor``, a
:class:`~shoal.runtime.childspec.SupervisorLog`: one record per restart
(WARNING), one per failed restart start (ERROR), one when it gives up
(ERROR).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar

from shoal._backoff import backoff_delays
from shoal.errors import (
    CallError,
    CallTimeout,
    ChildError,
    ChildExists,
    ChildRunning,
    ChildStartFailed,
    NameInUse,
    NoSuchChild,
    NoSuchProcess,
    ProcessExited,
    ShoalError,
)
from shoal.pid import KILLED, NORMAL, SHUTDOWN, Global, Pid, Reason
from shoal.runtime.checks import MAX_TIMEOUT
from shoal.runtime.childspec import (
    ChildCounts,
    ChildInfo,
    ChildSpec,
    Strategy,
    SupervisorLog,
    SupervisorSpec,
    class_name,
)
from shoal.runtime.codeload import current_class
from shoal.runtime.genserver import GenServer
from shoal.runtime.notices import Exit

__all__ = ["REQUEST_TAG", "Supervisor"]

log = logging.getLogger("shoal")

REQUEST_TAG = "$shoal.supervisor"
"""First element of every request the supervision API sends a supervisor."""

NAME_RELEASE_WAIT = 5.0
"""Seconds a restart waits for its previous process's global name to be
released in the store before the restart counts as failed (Rule 8)."""

KILL_WAIT = 5.0
"""Seconds to wait for a killed child's exit path to finish before giving
up on it (only code that swallows cancellation takes that long)."""


class _Child:
    """One child: its spec and, while it runs, its pid."""

    __slots__ = ("last", "pid", "spec")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        # Invariant: set while the child runs (started, joined, not yet
        # seen to exit); the supervisor's _by_pid maps it back to self.
        self.pid: Pid | None = None
        # The pid it ran as before: the holder of its global name until the
        # release of that name reaches the store (Rule 8).
        self.last: Pid | None = None


def _restarted(restart: str, reason: Reason) -> bool:
    if restart == "permanent":
        return True
    if restart == "transient":
        return reason not in (NORMAL, SHUTDOWN)
    return False


class Supervisor(GenServer):
    """A process that starts children, restarts them when they exit, and
    stops them when it stops: OTP's supervisor (see the module header).

    Configure it either way:

    - subclass it and override :meth:`children` (OTP's ``init/1``), with
      the flags as class attributes ``strategy``, ``intensity``, ``period``;
    - or from data: ``await node.spawn(shoal.Supervisor, SupervisorSpec(...))``.

    ``await node.spawn(MySupervisor, ...)`` returns once every child started
    (and joined its groups); if one fails, the ones started are stopped and
    ``spawn`` raises :class:`~shoal.CallError` naming
    :class:`~shoal.ChildStartFailed`. A supervisor under another one is
    given as ``ChildSpec(id, MySupervisor)`` (its ``type`` and ``shutdown``
    default to ``"supervisor"`` and ``"infinity"``).

    Do not override ``init``, ``handle_call``, ``handle_info`` or
    ``terminate``: they are the supervisor.
    """

    is_supervisor: ClassVar[bool] = True
    strategy: ClassVar[Strategy] = "one_for_one"
    """The restart strategy when :meth:`children` returns child specs."""
    intensity: ClassVar[int] = 1
    """Restarts allowed within ``period`` (OTP's default, 1)."""
    period: ClassVar[float] = 5.0
    """Seconds over which restarts are counted (OTP's default, 5)."""
    shutdown_timeout: ClassVar[float] = MAX_TIMEOUT  # its terminate stops its children
    mailbox_size: ClassVar[int | None] = None

    def children(self, *args: Any, **kwargs: Any) -> Sequence[ChildSpec] | SupervisorSpec:
        """Override: the child specs, given ``spawn``'s arguments; or a
        whole :class:`SupervisorSpec` (flags and children). The default
        accepts a ``SupervisorSpec`` as the one argument (the data form)."""
        if len(args) == 1 and not kwargs and isinstance(args[0], SupervisorSpec):
            return args[0]
        return ()

    # -- the behaviour -------------------------------------------------------------

    async def init(self, *args: Any, **kwargs: Any) -> None:
        found = self.children(*args, **kwargs)
        if not isinstance(found, SupervisorSpec):
            cls = type(self)
            found = SupervisorSpec(children=tuple(found), strategy=cls.strategy,
                                   intensity=cls.intensity, period=cls.period)
        self.trap_exit = True
        self._flags = found
        # Invariant: children in start order; _by_pid maps each running
        # child's pid to its entry (and nothing else).
        self._children: list[_Child] = []
        self._by_pid: dict[Pid, _Child] = {}
        self._restarts: deque[float] = deque()
        self._template: ChildSpec | None = None
        if found.strategy == "simple_one_for_one":
            self._template = found.children[0]
            return
        for spec in found.children:
            child = _Child(spec)
            self._children.append(child)
            try:
                await self._start(child)
            except ShoalError as exc:
                await self._stop_all()
                raise ChildStartFailed(self.pid, spec.id, _describe(exc)) from None

    async def handle_info(self, message: Any) -> None:
        if not isinstance(message, Exit):
            log.debug("supervisor %s: unexpected message %r ignored", self.pid, message)
            return
        child = self._by_pid.pop(message.pid, None)
        if child is None:
            own = self._process.parent
            if message.pid == own or message.pid == self.node.self_pid:
                self.stop(message.reason)  # Rule 6
            return  # Rule 3: an Exit from a former child
        child.pid = None
        spec = child.spec
        if self.node.stopping:
            return  # G4: the node stops every process itself; nothing restarts
        if not _restarted(spec.restart, message.reason):
            if spec.restart == "temporary" or self._template is not None:
                self._children.remove(child)
            return
        await self._restart(child, message.reason)

    async def handle_call(self, request: Any, caller: Any) -> Any:
        if not isinstance(request, (tuple, list)) or len(request) < 2 \
                or request[0] != REQUEST_TAG:
            return await super().handle_call(request, caller)
        op, args = request[1], request[2:]
        try:
            if op == "which_children":
                return ["ok", self._which()]
            if op == "count_children":
                return ["ok", self._count()]
            if op == "start_child" and len(args) == 1:
                return ["ok", await self._start_child(args[0])]
            if op == "terminate_child" and len(args) == 1:
                await self._terminate_child(args[0])
                return ["ok", None]
            if op == "restart_child" and len(args) == 1:
                return ["ok", await self._restart_child(args[0])]
            if op == "delete_child" and len(args) == 1:
                self._delete_child(args[0])
                return ["ok", None]
        except ChildExists as exc:
            return ["error", exc.problem, exc.child, exc.pid]
        except ChildError as exc:
            return ["error", exc.problem, exc.child, str(exc)]
        except ChildStartFailed as exc:
            return ["error", "start_failed", exc.child, exc.detail]
        return await super().handle_call(request, caller)

    async def terminate(self, reason: Reason) -> None:
        await self._stop_all()

    # -- starting and stopping children ---------------------------------------------

    async def _start(self, child: _Child) -> Pid:
        """Start one child and join its groups (Rule 2, Rule 7).

        Raises:
            ShoalError: its ``init`` raised or stopped, or the node refused.
        """
        spec = child.spec
        shutdown = spec.shutdown
        timeout = shutdown if isinstance(shutdown, float) else \
            MAX_TIMEOUT if shutdown == "infinity" else None
        node = self.node
        pid = await node.spawn_opt(current_class(spec.cls), args=spec.args,
                                   kwargs=dict(spec.kwargs), link=True, parent=self.pid,
                                   shutdown_timeout=timeout)
        child.pid = pid
        self._by_pid[pid] = child
        try:
            if spec.name is not None:
                await self._register(child, pid)
            for scope, group in spec.groups:
                await node.scope(scope).join(group, pid)
        except NoSuchProcess:
            pass  # it exited already: its Exit is on its way, and restarts it
        except ShoalError:
            await self._shutdown(child)  # its name is taken: it does not count as started
            raise
        child.last = pid
        return pid

    async def _register(self, child: _Child, pid: Pid) -> None:
        """Register a started child under its spec's name (Rule 8).

        Raises:
            NameInUse: another process holds the name.
            StoreError: the store did not take a global name.
        """
        name, node = child.spec.name, self.node
        if not isinstance(name, Global):
            node.register(str(name), pid)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + NAME_RELEASE_WAIT
        delays = backoff_delays(initial=0.005, maximum=0.2)
        while True:
            try:
                await node.register_global(name.name, pid)
                return
            except NameInUse as exc:
                # Held by the child's previous process, whose exit path
                # releases it in the background: wait for that, bounded.
                if child.last is None or exc.holder != str(child.last) \
                        or loop.time() > deadline:
                    raise
            await asyncio.sleep(next(delays))

    async def _shutdown(self, child: _Child) -> None:
        """Stop one child (Rule 3); its spec stays."""
        pid = child.pid
        if pid is None:
            return
        child.pid = None
        del self._by_pid[pid]
        node = self.node
        node.unlink(self.pid, pid)
        shutdown = child.spec.shutdown
        if shutdown != "brutal_kill":
            node.exit(pid, SHUTDOWN)
            try:
                await node.wait_exit(pid, shutdown if isinstance(shutdown, float)
                                     else MAX_TIMEOUT)
                return
            except CallTimeout:
                log.warning("supervisor %s: child %r (%s) did not stop within %gs; killed",
                            self.pid, child.spec.id, pid, shutdown)
        node.exit(pid, "kill")
        try:
            await node.wait_exit(pid, KILL_WAIT)
        except CallTimeout:
            log.error("supervisor %s: child %r (%s) ignored being killed", self.pid,
                      child.spec.id, pid)

    async def _stop_all(self) -> None:
        for child in reversed(self._children):
            await self._shutdown(child)

    async def _restart(self, child: _Child, reason: Reason) -> None:
        """Restart after ``child`` exited with ``reason``, by the strategy
        (Rule 4, Rule 5). Raises Stop when the intensity is exceeded."""
        while True:
            restarts = self._count_restart()
            if restarts > self._flags.intensity:
                self._give_up(child, reason, restarts)
            try:
                pid = await self._restart_by_strategy(child)
            except ShoalError as exc:
                log.error("supervisor %s: restarting child %r failed: %s", self.pid,
                          child.spec.id, _describe(exc), extra={"shoal_supervisor": SupervisorLog(
                              self.pid, "restart_failed", self._shown_id(child), reason,
                              restarts)})
                reason = _reason_of(exc)
                continue
            self.node.counters.restarts += 1  # shoal_restarts_total
            log.warning("supervisor %s: child %r exited (%s); restarted as %s (restart %d "
                        "within %gs)", self.pid, self._shown_id(child), reason, pid, restarts,
                        self._flags.period, extra={"shoal_supervisor": SupervisorLog(
                            self.pid, "restarted", self._shown_id(child), reason, restarts,
                            pid)})
            return

    async def _restart_by_strategy(self, child: _Child) -> Pid:
        strategy = self._flags.strategy
        if strategy in ("one_for_one", "simple_one_for_one"):
            return await self._start(child)
        index = self._children.index(child)
        affected = self._children if strategy == "one_for_all" else self._children[index:]
        for other in reversed(affected):
            await self._shutdown(other)
        # Temporary children stopped on account of another are not restarted (OTP).
        self._children = [c for c in self._children
                          if c is child or c not in affected or c.spec.restart != "temporary"]
        started: Pid | None = None
        for other in [c for c in self._children if c in affected]:
            try:
                pid = await self._start(other)
            except ShoalError:
                # Stop what this attempt started, so the next one begins clean.
                for done in reversed(self._children):
                    if done in affected:
                        await self._shutdown(done)
                raise
            if other is child:
                started = pid
        assert started is not None  # child is among the affected
        return started

    def _count_restart(self) -> int:
        now = self._loop_time()
        window = self._restarts
        window.append(now)
        while window and window[0] < now - self._flags.period:
            window.popleft()
        while len(window) > self._flags.intensity + 1:
            window.popleft()  # the bound: more than this gives up anyway
        return len(window)

    def _give_up(self, child: _Child, reason: Reason, restarts: int) -> None:
        log.error("supervisor %s: child %r exited (%s); %d restarts within %gs exceed the "
                  "intensity %d: stopping every child and exiting with 'shutdown'",
                  self.pid, self._shown_id(child), reason, restarts, self._flags.period,
                  self._flags.intensity, extra={"shoal_supervisor": SupervisorLog(
                      self.pid, "gave_up", self._shown_id(child), reason, restarts)})
        self.stop(SHUTDOWN)  # terminate stops the children, in reverse order

    def _loop_time(self) -> float:
        return asyncio.get_running_loop().time()  # the clock of every deadline in shoal

    def _shown_id(self, child: _Child) -> str | None:
        return None if self._template is not None else child.spec.id

    # -- the API's requests (supervision.py) ---------------------------------------------

    def _find(self, key: Any) -> _Child:
        if self._template is not None:
            raise ChildError(self.pid, key, "simple_one_for_one")
        for child in self._children:
            if child.spec.id == key:
                return child
        raise NoSuchChild(self.pid, key, "not_found")

    def _which(self) -> list[ChildInfo]:
        return [ChildInfo(self._shown_id(c), c.pid, c.spec.type or "worker",
                          class_name(current_class(c.spec.cls))) for c in self._children]

    def _count(self) -> ChildCounts:
        kinds = [c.spec.type for c in self._children]
        return ChildCounts(len(kinds), sum(1 for c in self._children if c.pid is not None),
                           kinds.count("supervisor"), kinds.count("worker"))

    async def _start_child(self, given: Any) -> Pid:
        template = self._template
        if template is not None:
            if not isinstance(given, (tuple, list)):
                raise ChildError(self.pid, given, "bad_spec", "start_child of a simple_one_for_one "
                                 f"needs a tuple of arguments, not {type(given).__name__}")
            spec = ChildSpec(template.id, template.cls, args=(*template.args, *given),
                             kwargs=template.kwargs, restart=template.restart,
                             shutdown=template.shutdown, type=template.type,
                             groups=template.groups)
        elif isinstance(given, ChildSpec):
            spec = given
            for child in self._children:
                if child.spec.id == spec.id:
                    raise ChildExists(self.pid, spec.id, "already_started" if child.pid
                                      else "already_present", child.pid)
        else:
            raise ChildError(self.pid, given, "bad_spec",
                             f"start_child needs a shoal.ChildSpec, not {type(given).__name__}")
        child = _Child(spec)
        self._children.append(child)
        try:
            return await self._start(child)
        except ShoalError as exc:
            self._children.remove(child)
            raise ChildStartFailed(self.pid, spec.id, _describe(exc)) from None

    async def _terminate_child(self, key: Any) -> None:
        if self._template is not None:
            child = self._by_pid.get(key) if isinstance(key, Pid) else None
            if child is None:
                raise NoSuchChild(self.pid, key, "not_found")
            await self._shutdown(child)
            self._children.remove(child)
            return
        child = self._find(key)
        await self._shutdown(child)
        if child.spec.restart == "temporary":
            self._children.remove(child)

    async def _restart_child(self, key: Any) -> Pid:
        child = self._find(key)
        if child.pid is not None:
            raise ChildRunning(self.pid, key, "running")
        try:
            return await self._start(child)
        except ShoalError as exc:
            raise ChildStartFailed(self.pid, key, _describe(exc)) from None

    def _delete_child(self, key: Any) -> None:
        child = self._find(key)
        if child.pid is not None:
            raise ChildRunning(self.pid, key, "running")
        self._children.remove(child)


def _describe(exc: ShoalError) -> str:
    if isinstance(exc, CallError):
        return f"{exc.remote_type}: {exc.remote_message}"
    return f"{type(exc).__name__}: {exc}"


def _reason_of(exc: ShoalError) -> Reason:
    if isinstance(exc, ProcessExited):
        return exc.reason
    if isinstance(exc, CallError):
        return f"{exc.remote_type}: {exc.remote_message}"
    return KILLED if isinstance(exc, CallTimeout) else str(exc)
