"""Messages between processes: call, cast, send and code_change; is a
process alive.

``Messaging`` is a component of :class:`~shoal.runtime.node.Node`, which
delegates ``call``, ``cast``, ``send``, ``code_change``, ``is_alive`` and
``ask_alive`` to it. A message to a local process goes straight into its
mailbox; one to a pid of another node goes through ``remote.py``.

Owns: nothing that outlives a message but the ``running`` flag (set by the
node's start and stop). A call's deadline lives in the node's
``Deadlines`` (``deadlines.py``), which this part and ``Remote`` share;
its future lives in the caller's ``Caller`` (local) or ``Remote.pending``
(remote) until answered or expired.

Rules:

- Rule 1: every call has a deadline (G6): the caller's future is failed
  with ``CallTimeout`` when it passes, and a late reply is dropped.
- Rule 2: a call to a local pid that is not alive raises ``NoSuchProcess``
  (never started: G3); a cast or send to a dead pid is dropped, as in
  Erlang.
- Rule 3: a plain tuple equal to a pid is not a pid: it is refused with
  ``BadArgument`` rather than routed. A ``str`` or a ``shoal.Global`` is a
  registered name, turned into its pid by the node's ``Names`` only after
  the ``type(pid) is Pid`` test failed (calls by pid pay nothing for it); a
  name that names no process raises ``NoSuchProcess`` naming it.
- Rule 4: when a remote pid's owner answers "no such process" (or the pid
  is of an earlier incarnation), the group table marks it: selection never
  offers it again, though it stays a member until the owner's removal
  arrives through the store (DESIGN.md, "Membership").
- Rule 5: whether a process is alive is answered only by its own node.
  ``is_alive`` is sync and answers for local pids; for a pid of another
  node it raises ``BadArgument`` naming ``ask_alive``, which asks the owner
  within a deadline and raises when it cannot know. Never a confident wrong
  answer: "I could not reach it" is not "dead".
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, NamedTuple

from shoal.errors import BadArgument, NodeDown, NoSuchProcess, Overloaded
from shoal.pid import Global, Pid
from shoal.runtime.checks import MAX_TIMEOUT, check_pid, check_timeout
from shoal.runtime.counters import BUCKETS, LOCAL, NOPROC, OK, REMOTE, Counters, outcome_of
from shoal.runtime.idle import crossed_idle_close
from shoal.runtime.process import (
    CALL,
    CAST,
    INFO,
    RUNNING,
    SYSTEM,
    Behaviour,
    Caller,
    SystemOp,
    current_process,
)

if TYPE_CHECKING:
    from shoal.membership.table import GroupTable
    from shoal.runtime.deadlines import Deadlines
    from shoal.runtime.processes import ProcessTable
    from shoal.runtime.remote import Remote

__all__ = ["DEFAULT_TIMEOUT", "CodeChange", "Messaging"]

DEFAULT_TIMEOUT = 5.0


class CodeChange(NamedTuple):
    """The system message of :meth:`Messaging.code_change`: run the hook."""

    old_version: Any
    extra: Any

    async def __call__(self, server: Behaviour) -> None:
        await server.code_change(self.old_version, self.extra)


# Builds a Caller without running its __init__ (see Messaging.call).
_new_caller = object.__new__
_current_process = current_process.get


class Messaging:
    """call, code_change, cast and send (see the module header).

    Args:
        processes: the node's process table.
        remote: cross-node messaging, for pids of other nodes.
        table: the node's group table (marks pids whose owner said "no
            such process", Rule 4).
        deadlines: the node's call deadlines.
        resolve: turns a registered name (``str`` or ``Global``) into its
            pid, raising ``NoSuchProcess`` naming it when none (``names.py``).
        counters: where calls are counted (``counters.py``); local calls
            are counted, not timed (its Rule 1).
    """

    def __init__(self, processes: ProcessTable, remote: Remote, table: GroupTable,
                 deadlines: Deadlines, resolve: Callable[[Any, str], Pid],
                 counters: Counters | None = None) -> None:
        self.counters = counters if counters is not None else Counters()
        # The rows of the counters the hot paths bump in place (counters.py),
        # bound once: local calls are counted, remote ones counted and timed.
        self._local = self.counters.calls[LOCAL]
        self._remote = self.counters.calls[REMOTE]
        self._remote_durations = self.counters.durations[REMOTE]
        self._sums = self.counters.sums
        self.name = processes.name
        self._processes = processes
        # ProcessTable.get, bound once: called through a local, 3.11
        # specializes the call (a method call of an instance attribute it does not).
        self._process_of = processes.get
        self.remote = remote
        self.table = table
        self._deadlines = deadlines
        self._resolve = resolve
        self._running = False
        self._loop: asyncio.AbstractEventLoop
        self._new_future: Callable[[], asyncio.Future[Any]]

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """The node started: messages to other nodes go out."""
        self._loop = loop
        self._new_future = loop.create_future  # bound once (the hot path)
        self._running = True

    def stop(self) -> None:
        """The node stopped: a call to another node's pid raises ``NoSuchProcess``."""
        self._running = False

    async def call(self, pid: Pid | str | Global, request: Any,
                   timeout: float = DEFAULT_TIMEOUT, *, fail_if_silent: bool = False) -> Any:
        """Send ``request`` to ``pid`` and wait for the reply.

        Args:
            pid: the callee: a Pid, a name registered on this node (``str``)
                or a cluster-wide one (``shoal.Global``).
            request: any value (msgpack-encodable if the callee is remote).
            timeout: seconds to wait for the reply (default 5).
            fail_if_silent: when the callee's node turns silent for the
                heartbeat timeout with the call in flight, fail it at once
                with ``NodeDown`` (delivery unknown) instead of waiting for
                the deadline: for a request that may run twice (an
                idempotent group call's attempts).

        Returns:
            What the callee's ``handle_call`` returned or replied.

        Raises:
            BadArgument: ``pid`` is not a Pid or a name, ``timeout`` is not a
                number of seconds in (0, one year], or the request of a call
                to another node cannot be encoded (not retried by group calls).
            NoSuchProcess: the callee is dead (its request never started),
                or ``pid`` is a name that names no process.
            Overloaded: the callee's mailbox is full, or its node does not
                read what this node sends it (never started).
            CallError: the callee's handler raised while handling it.
            BadRequest: the callee rejected the request.
            ProcessExited: the callee exited while handling it.
            CallTimeout: no reply within ``timeout``; a late reply is dropped.
        """
        try:
            process_of = self._process_of
            proc = process_of(pid)  # type: ignore[arg-type]  # a name finds None
        except TypeError:  # unhashable: certainly not a Pid
            proc = None
        if proc is None or type(pid) is not Pid:  # a plain tuple equal to a pid is no pid
            if type(pid) is not Pid:  # a name, or a wrong argument
                if type(pid) is str or type(pid) is Global:
                    return await self.call(self._resolve(pid, "pid"), request, timeout,
                                           fail_if_silent=fail_if_silent)
                pid = check_pid("pid", pid)
            if timeout is self._deadlines.last_timeout:
                seconds = timeout  # checked when Deadlines took it (the common case)
            elif type(timeout) is float and 0 < timeout <= MAX_TIMEOUT:
                seconds = timeout  # check_timeout's answer, without the call
            else:
                seconds = check_timeout(timeout)
            if pid.node == self.name or not self._running:
                self._local[NOPROC] += 1
                raise NoSuchProcess(pid)
            # A remote call, in this frame (the hot path): sent at once on an
            # open connection, its future awaited here (Remote.start_call).
            started = perf_counter()
            remote = self.remote
            try:
                try:
                    sent = remote.start_call(pid, request, seconds, fail_if_silent)
                    if sent is None:  # no connection to its incarnation yet: dial
                        value = await remote.call(pid, request, seconds,
                                                  fail_if_silent=fail_if_silent)
                    else:
                        ref, answer, calls = sent
                        try:
                            value = await answer
                        except BaseException:
                            remote.forget(ref)
                            raise
                        finally:
                            calls.pop(answer, None)  # deadlines.py Rule 5
                        if fail_if_silent:
                            remote.forget(ref)
                except NodeDown as exc:
                    left = seconds - (perf_counter() - started)
                    if not crossed_idle_close(exc) or left <= 0:
                        raise
                    # Its CALL crossed the callee node's BYE "idle" and was
                    # never read: sent once more, on a new connection (idle.py
                    # Rule 4).
                    value = await remote.call(pid, request, left, fail_if_silent=fail_if_silent)
            except Exception as exc:
                if isinstance(exc, NoSuchProcess):
                    self.table.mark_dead(pid)  # Rule 4
                self.counters.observe(REMOTE, outcome_of(exc), perf_counter() - started)
                raise
            # Counters.observe(REMOTE, OK, ...), inlined (the hot path; keep in step).
            elapsed = perf_counter() - started
            self._remote[OK] += 1
            self._remote_durations[bisect_left(BUCKETS, elapsed)] += 1
            self._sums[REMOTE] += elapsed
            return value
        # A timeout with an armed bucket was checked when the bucket was made
        # (Deadlines.by_timeout holds checked timeouts only): the common case,
        # and commoner still the very float object of the last call.
        deadlines = self._deadlines
        if timeout is deadlines.last_timeout:
            bucket = deadlines.last_bucket
        else:
            bucket = deadlines.by_timeout.get(timeout) if type(timeout) is float else None
        if bucket is None or bucket.timer is None:
            bucket = None
            if type(timeout) is not float:
                timeout = check_timeout(timeout)
            elif not 0 < timeout <= MAX_TIMEOUT:
                check_timeout(timeout)
        new_future = self._new_future  # a local: the call is specialized (as _process_of)
        future: asyncio.Future[Any] = new_future()
        me = _current_process()
        try:
            # Process.deliver, inlined (the hot path; keep the two in step).
            if proc.state > RUNNING:
                raise NoSuchProcess(pid)
            mailbox = proc.mailbox
            limit = proc.limit
            if limit is not None and len(mailbox) >= limit:
                raise Overloaded(pid, limit)
            # Caller(pid, future, timeout) without the call to its __init__
            # (a frame entered from C: ~600 instructions, a fifth of what the
            # call adds to the bare actor's). Every slot is set here.
            caller = _new_caller(Caller)
            caller.pid = me.pid if me is not None else None
            caller.answer = future
            caller.timeout = timeout
            mailbox.append((CALL, request, caller))
            waiter = proc.waiter
            if waiter is not None:
                proc.waiter = None
                if not waiter.done():
                    waiter.set_result(None)
            # Deadlines.add, inlined for the common case of an armed bucket.
            if bucket is not None:
                calls = bucket.current
                calls[future] = pid
            else:
                calls = deadlines.add(future, timeout, pid)
            try:
                result = await future
            finally:
                # Freed now, not at the deadline's next tick (deadlines.py Rule 5).
                calls.pop(future, None)
        except Exception as exc:
            self.counters.failed(LOCAL, exc)
            raise
        self._local[OK] += 1
        return result

    def is_alive(self, pid: Pid) -> bool:
        """Whether a process of this node is alive (not exiting).

        Only a pid's own node can tell (Rule 5): for another node's pid use
        ``await node.ask_alive(pid)``, which asks that node.

        Returns:
            True while the local process runs; False once it is exiting or
            dead (a pid of an earlier incarnation of this node is dead).

        Raises:
            BadArgument: ``pid`` is not a Pid, or is another node's pid.
        """
        proc = self._processes.get(check_pid("pid", pid))
        if proc is None and pid.node != self.name:
            raise BadArgument("pid", pid, f"a pid of this node ({self.name!r}); ask another "
                              "node's with `await node.ask_alive(pid)`")
        return proc is not None and proc.alive

    async def ask_alive(self, pid: Pid, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Whether a process is alive, asked of the node that owns it.

        A local pid is answered at once, as :meth:`is_alive`. For another
        node's pid this node asks the owner (a monitor and a round trip on
        its connection): False only on positive evidence of death (the owner
        answered "no such process", or the pid is of an earlier incarnation
        of its node); when the owner cannot be asked it raises instead.

        Args:
            pid: the process.
            timeout: seconds to wait for the owner's answer (default 5).

        Returns:
            True if the process was alive when its owner answered, else False.

        Raises:
            BadArgument: ``pid`` is not a Pid or ``timeout`` is not a number
                of seconds in (0, one year].
            NodeDown: its node is not known to this node, not reachable, or
                its connection broke before it answered.
            CallTimeout: no answer within ``timeout``.
            Overloaded: its node does not read what this node sends it.
        """
        check_pid("pid", pid)
        seconds = check_timeout(timeout)
        if pid.node == self.name:
            return self.is_alive(pid)
        if not self._running:
            raise NodeDown(pid.node, "this node is not running", not_started=True)
        if self.table.is_marked_dead(pid):
            return False  # its owner said so already (Rule 4)
        alive = await self.remote.alive(pid, seconds)
        if not alive:
            self.table.mark_dead(pid)  # Rule 4
        return alive

    async def code_change(self, pid: Pid, old_version: Any = None, extra: Any = None, *,
                          timeout: float = DEFAULT_TIMEOUT) -> None:
        """Have a local process run its ``code_change(old_version, extra)``
        hook, in line with its other messages (after what is queued), once
        its class has been reloaded. Returns when the hook returned.

        Raises:
            BadArgument: ``pid`` is not a Pid or ``timeout`` is not > 0.
            NoSuchProcess: the process is not alive (or not on this node).
            CallError: the hook raised (the process crashed with it).
            CallTimeout: the hook did not finish within ``timeout``.
        """
        await self.system(pid, CodeChange(old_version, extra), timeout=timeout)

    async def system(self, pid: Pid, op: SystemOp, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Run ``op(server)`` in a local process between two of its messages
        (after what is queued, never during a handler) and return its result.
        The mailbox bound does not apply. If the deadline passes first, the
        op is dropped unrun when its turn comes.

        Raises:
            BadArgument: ``pid`` is not a Pid or ``timeout`` is not > 0.
            NoSuchProcess: the process is not alive (or not on this node),
                or it exited before the op's turn.
            CallError: ``op`` raised (the process crashed with it).
            CallTimeout: the op did not finish within ``timeout``.
        """
        check_pid("pid", pid)
        seconds = check_timeout(timeout)
        proc = self._processes.live(pid)
        if proc is None:
            raise NoSuchProcess(pid)
        future: asyncio.Future[Any] = self._loop.create_future()
        me = current_process.get()
        # The mailbox bound is for calls, casts and sends: system messages pass.
        proc.mailbox.append((SYSTEM, op, Caller(me.pid if me is not None else None, future)))
        proc.wake()
        calls = self._deadlines.add(future, seconds, pid)
        try:
            return await future
        finally:
            calls.pop(future, None)  # deadlines.py Rule 5

    def cast(self, pid: Pid | str | Global, request: Any) -> None:
        """Deliver ``request`` to ``pid``'s ``handle_cast``. A cast to a dead
        pid is dropped silently, as in Erlang.

        Raises:
            BadArgument: ``pid`` is not a Pid, a str or a Global.
            NoSuchProcess: ``pid`` is a name that names no process (nothing
                was sent).
            Overloaded: the callee's mailbox is full, or its node does not
                read what this node sends it (nothing was queued).
        """
        self._one_way(pid, CAST, request)

    def send(self, pid: Pid | str | Global, message: Any) -> None:
        """Deliver ``message`` to ``pid``'s ``handle_info``. A message to a
        dead pid is dropped silently, as in Erlang.

        Raises:
            BadArgument: ``pid`` is not a Pid, a str or a Global.
            NoSuchProcess: ``pid`` is a name that names no process (nothing
                was sent: Erlang's ``badarg`` for ``Name ! Msg``).
            Overloaded: the receiver's mailbox is full, or its node does not
                read what this node sends it (nothing was queued).
        """
        self._one_way(pid, INFO, message)

    def _one_way(self, pid: Pid | str | Global, kind: int, payload: Any) -> None:
        if type(pid) is not Pid:
            pid = self._resolve(pid, "pid")
        proc = self._processes.get(pid)
        if proc is not None and proc.alive:
            proc.deliver(kind, payload, None)
        elif pid.node != self.name:
            if kind == CAST:
                self.remote.cast(pid, payload)
            else:
                self.remote.send(pid, payload)
