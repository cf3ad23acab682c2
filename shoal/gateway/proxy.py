"""One member in another language: the proxy process that stands in its
group for a callback URL (``docs/gateway.md`` section 5).

Owns: :class:`MemberProxy` (the process in the group) and its
:class:`Forwarder` (the calls it took: in flight and queued), which the
registration that made it (``registry.py``) drains and closes.

Rules:

- Rule 1 (deferred replies): every call is answered later (``NOREPLY``),
  so the proxy keeps taking calls while callbacks run: at most
  ``concurrency`` exchanges are in flight; the rest wait in its own queue,
  at most :data:`QUEUE_LIMIT` (when full, the calls whose callers gave up
  are dropped; if none did: ``Overloaded``, not started). Calls
  in flight plus queued are its ``backlog``, hence its queue length, which
  ``least_loaded`` compares (``GenServer.backlog``).
- Rule 2 (deadline): a call's exchange ends at the caller's deadline (its
  ``Caller.timeout`` from when the proxy took it; :data:`NO_DEADLINE` when
  the caller gave none): the proxy gives up on the callback, the call
  fails ``CallTimeout``, and ``shoal_gateway_callback_timeouts_total``
  counts it. A call whose caller gave up while it was queued is dropped
  unsent. Casts and infos are bounded by :data:`CAST_TIMEOUT`.
- Rule 3 (gone): when no connection to the callback can be made
  (``callback.py`` Rule 2), the proxy exits (:data:`EXIT_UNREACHABLE`)
  and only then fails the call ``NoSuchProcess``: it is out of its group
  first (G1), and a group call retries another member.
- Rule 4 (exit): however the proxy exits, its forwarder is closed: queued
  calls fail ``NoSuchProcess`` (never started); calls in flight are
  cancelled and fail ``ProcessExited`` (their callback may have run), or
  ``NoSuchProcess`` when their request had not gone out. The exit path
  already took the proxy out of its group (G1). Closing happens in
  ``terminate``, and for a kill that skips it, when the registration sees
  the exit. On ``shutdown`` (its node stopping, the gateway closing, or a
  supervisor stopping it) ``terminate`` first lets the calls it holds finish,
  for at most :data:`SHUTDOWN_DRAIN` seconds (while its node stops, the
  proxies stopped one after the other share one such window, from the
  first one's stop: ``drain_until``): the drain G4 gives every
  node's calls in flight, which a proxy's held calls would otherwise miss
  (its mailbox looks idle). Other exits (its stream closed, its TTL lapsed,
  its callback gone) mean the service is gone: nothing is waited for.
- Rule 5 (drain): once draining, a new call fails ``NoSuchProcess`` (the
  proxy has left its group; it never starts); the calls taken finish, each
  within its deadline, and :meth:`Forwarder.drain`'s future says when none
  is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import aiohttp

from shoal.errors import CallTimeout, NoSuchProcess, Overloaded, ProcessExited, ShoalError
from shoal.gateway.callback import (
    FORMATS,
    CallbackClient,
    Exchange,
    Unreachable,
    answer_of,
    encode_request,
)
from shoal.gateway.member_spec import MemberSpec
from shoal.pid import Pid, Reason
from shoal.runtime.genserver import GenServer
from shoal.runtime.notices import NOREPLY
from shoal.runtime.process import Caller

__all__ = ["CAST_TIMEOUT", "EXIT_DRAINED", "EXIT_STREAM_CLOSED", "EXIT_TTL_LAPSED",
           "EXIT_UNREACHABLE", "NO_DEADLINE", "QUEUE_LIMIT", "SHUTDOWN_DRAIN", "Forwarder",
           "MemberProxy"]

log = logging.getLogger("shoal")

QUEUE_LIMIT: Final = 10_000
"""Calls one proxy holds queued beyond its ``concurrency`` (also its mailbox bound)."""
CAST_TIMEOUT: Final = 30.0
"""Seconds a cast or info may take at its callback."""
SHUTDOWN_DRAIN: Final = 4.5
"""Seconds ``terminate`` waits on ``shutdown`` for the calls held (Rule 4),
within the proxy's ``shutdown_timeout`` of 5 s."""
NO_DEADLINE: Final = 300.0
"""Seconds a call whose caller gave no timeout may take (the gateway's longest)."""

EXIT_DRAINED: Final = "shutdown"
EXIT_STREAM_CLOSED: Final = "registration_closed"
EXIT_TTL_LAPSED: Final = "ttl_lapsed"
EXIT_UNREACHABLE: Final = "callback_unreachable"

KINDS: Final = ("call", "cast", "info")
CALL, CAST, INFO = 0, 1, 2


class _Job:
    __slots__ = ("caller", "deadline", "exchange", "kind", "payload", "timeout")

    def __init__(self, kind: int, payload: Any, caller: Caller | None, timeout: float) -> None:
        self.kind = kind
        self.payload = payload
        self.caller = caller
        self.timeout = timeout
        self.deadline = asyncio.get_running_loop().time() + timeout
        self.exchange = Exchange()


class Forwarder:
    """The calls of one registration (see the module header).

    Args:
        spec: the registration.
        registration: its id (the ``Shoal-Registration`` header).
        client: the gateway's HTTP client.
        timed_out: counts a callback given up at its call's deadline.
        drain_until: the loop time until which a ``shutdown`` waits for the
            calls held (Rule 4); default: :data:`SHUTDOWN_DRAIN` from now.
    """

    def __init__(self, spec: MemberSpec, registration: str, client: CallbackClient,
                 timed_out: Callable[[], None],
                 drain_until: Callable[[], float] | None = None) -> None:
        self.spec = spec
        self.drain_until = drain_until or (
            lambda: asyncio.get_running_loop().time() + SHUTDOWN_DRAIN)
        self.registration = registration
        self._client = client
        self._timed_out = timed_out
        self._content_type = FORMATS[spec.format]
        # Set by the proxy's init (attach).
        self.pid: Pid | None = None
        self._stop: Callable[[Reason], None] = lambda _reason: None
        self._load: Callable[[int], None] = lambda _load: None
        # Invariant: at most spec.concurrency entries; each task removes its own.
        self._running: dict[asyncio.Task[None], _Job] = {}
        # Invariant: at most QUEUE_LIMIT jobs; non-empty only while _running is full.
        self._queue: deque[_Job] = deque()
        self.closed = False
        self.draining = False
        self._idle: asyncio.Future[None] | None = None

    def attach(self, pid: Pid, stop: Callable[[Reason], None],
               load: Callable[[int], None]) -> None:
        """Bind to the proxy process: its pid, how to stop it, where its load goes."""
        self.pid = pid
        self._stop = stop
        self._load = load

    @property
    def load(self) -> int:
        """Calls in flight plus queued (the proxy's backlog)."""
        return len(self._running) + len(self._queue)

    def submit(self, kind: int, payload: Any, caller: Caller | None, timeout: float) -> None:
        """Take a call (with its caller), cast or info (Rules 1, 2, 5)."""
        pid = self.pid
        assert pid is not None  # attached in the proxy's init, before any message
        if self.closed or self.draining:
            if caller is not None:
                caller.fail(NoSuchProcess(pid))
            return
        job = _Job(kind, payload, caller, timeout)
        if len(self._running) < self.spec.concurrency:
            self._start(job)
        elif len(self._queue) < QUEUE_LIMIT or self._prune():
            self._queue.append(job)
        else:
            if caller is not None:
                caller.fail(Overloaded(pid, QUEUE_LIMIT, "the member's callback queue is full"))
            return
        self._load(self.load)

    def _prune(self) -> bool:
        """Drop the queued calls whose callers gave up; whether one was."""
        before = len(self._queue)
        self._queue = deque(job for job in self._queue
                            if job.caller is None or not job.caller.gave_up)
        return len(self._queue) < before

    def _start(self, job: _Job) -> None:
        task = asyncio.create_task(self._forward(job))
        self._running[task] = job
        task.add_done_callback(self._release)

    def _release(self, task: asyncio.Task[None] | None) -> None:
        """The exchange of ``task`` is over: the next queued call starts."""
        if task is None or self._running.pop(task, None) is None:
            return  # released already, before its caller was answered
        queue = self._queue
        while queue and not self.closed and len(self._running) < self.spec.concurrency:
            job = queue.popleft()
            if job.caller is not None and job.caller.gave_up:
                continue  # Rule 2: its caller gave up while it waited: never sent
            self._start(job)
        self._load(self.load)
        idle = self._idle
        if idle is not None and not self._running and not queue and not idle.done():
            idle.set_result(None)

    async def _forward(self, job: _Job) -> None:
        pid = self.pid
        assert pid is not None
        caller = job.caller
        spec = self.spec
        loop = asyncio.get_running_loop()
        headers = {"Content-Type": self._content_type, "Accept": self._content_type,
                   "Shoal-Kind": KINDS[job.kind], "Shoal-Member": str(pid),
                   "Shoal-Registration": self.registration}
        if job.kind == CALL:
            headers["Shoal-Deadline-Ms"] = str(max(0, int((job.deadline - loop.time()) * 1000)))
        if caller is not None and caller.pid is not None:
            headers["Shoal-Caller"] = str(caller.pid)
        if spec.callback_token is not None:
            headers["Authorization"] = f"Bearer {spec.callback_token}"
        try:
            body = encode_request(job.payload, self._content_type)
            async with asyncio.timeout_at(job.deadline):
                status, data, cut = await self._client.post(spec.callback_url, body, headers,
                                                            job.exchange)
            result = answer_of(pid, status, data, cut, self._content_type) if caller is not None \
                else None
        except TimeoutError:
            self._timed_out()
            self._fail(job, CallTimeout(pid, job.timeout))
            return
        except Unreachable as exc:
            log.warning("gateway: member %s (%s in group %r) is gone: %s", pid,
                        self.registration, spec.group, exc)
            self._stop(EXIT_UNREACHABLE)  # Rule 3: out of the group before the call fails
            self.close(EXIT_UNREACHABLE)  # this call, never sent, fails NoSuchProcess
            return
        except (aiohttp.ClientError, OSError) as exc:
            self._fail(job, ProcessExited(pid, f"callback connection lost: {exc}"))
            return
        except ShoalError as exc:
            self._fail(job, exc)
            return
        if caller is not None:
            # Released first: the queue length the reply reports (to a caller
            # on another node) no longer counts the call it answers.
            self._release(asyncio.current_task())
            caller.reply(result)

    def _fail(self, job: _Job, exc: ShoalError) -> None:
        self._release(asyncio.current_task())
        if job.caller is not None:
            job.caller.fail(exc)
        elif not isinstance(exc, NoSuchProcess):
            log.debug("gateway: member %s: a %s to its callback failed: %s", self.pid,
                      KINDS[job.kind], exc)

    def drain(self) -> tuple[int, asyncio.Future[None]]:
        """Rule 5: stop taking calls; the number taken and not finished, and
        a future resolved once they are."""
        self.draining = True
        idle = self._idle
        if idle is None:
            idle = self._idle = asyncio.get_running_loop().create_future()
            if not self._running and not self._queue:
                idle.set_result(None)
        return self.load, idle

    def close(self, reason: Reason) -> None:
        """Rule 4: the proxy exited; fail what it still holds. Idempotent."""
        if self.closed:
            return
        self.closed = True
        pid = self.pid
        if pid is not None:
            while self._queue:
                self._fail(self._queue.popleft(), NoSuchProcess(pid))
            for task, job in list(self._running.items()):
                if task is not asyncio.current_task():
                    task.cancel()
                self._fail(job, ProcessExited(pid, reason) if job.exchange.sent
                           else NoSuchProcess(pid))
        idle = self._idle
        if idle is not None and not idle.done():
            idle.set_result(None)


class MemberProxy(GenServer):
    """The process that stands in a group for one registration's callback."""

    mailbox_size = QUEUE_LIMIT

    async def init(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder
        forwarder.attach(self.pid, self._exit, self._set_backlog)
        spec = forwarder.spec
        if spec.name is not None:
            self.node.register(spec.name, self.pid)
        await self.node.scope(spec.scope).join(spec.group, self.pid)

    def _exit(self, reason: Reason) -> None:
        self.node.exit(self.pid, reason)

    def _set_backlog(self, load: int) -> None:
        self.backlog = load

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        self.forwarder.submit(CALL, request, caller, caller.timeout or NO_DEADLINE)
        return NOREPLY

    async def handle_cast(self, request: Any) -> None:
        self.forwarder.submit(CAST, request, None, CAST_TIMEOUT)

    async def handle_info(self, message: Any) -> None:
        self.forwarder.submit(INFO, message, None, CAST_TIMEOUT)

    async def terminate(self, reason: Reason) -> None:
        forwarder = self.forwarder
        if reason == EXIT_DRAINED and forwarder.load:
            _, idle = forwarder.drain()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(forwarder.drain_until()):
                    await asyncio.shield(idle)
        forwarder.close(reason)
