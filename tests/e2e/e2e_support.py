"""Helpers for the end-to-end tests: a watcher process on the client, a
record of every call attempt, and a steady stream of group calls.

- ``Inbox`` runs on the in-process client node and keeps what arrives in
  its ``handle_info`` (Down, Exit, plain messages) as Python objects, so a
  test can check reasons exactly and wait for them without sleeping.
- ``Attempts`` wraps the client's messaging ``call``: every attempt a group call makes
  (the first and each retry) is recorded with its target, start and end
  times, outcome, and whether the target's node was routable when the
  attempt started. A context variable ties attempts to the group call
  that made them.
- ``Stream`` keeps ``callers`` group calls in flight until told to stop,
  recording each outcome with the node named in the reply.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from dataclasses import dataclass, field
from typing import Any

import shoal
from shoal.testing.cluster import LocalCluster, wait_until

__all__ = ["Attempt", "Attempts", "Inbox", "Outcome", "Stream", "group_on_every_node",
           "wait_until"]

_call_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("call_id", default=None)


class Inbox(shoal.GenServer):
    """Keeps every ``handle_info`` message in the list given to ``init``."""

    async def init(self, box: list[Any], trap_exit: bool = False) -> None:
        self.box = box
        self.trap_exit = trap_exit

    async def handle_info(self, message: Any) -> None:
        self.box.append(message)

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


async def group_on_every_node(cluster: LocalCluster, group: str = "g",
                              per_node: int = 2) -> dict[str, list[shoal.Pid]]:
    """Spawn ``per_node`` echo workers in ``group`` on every node; wait until
    the client sees them all. Returns node name -> its workers."""
    pids = {name: await cluster.spawn(name, group=group, count=per_node)
            for name in cluster.names}
    total = per_node * len(cluster.names)
    await wait_until(lambda: len(cluster.client.groups.get_members(group)) == total,
                     what=f"{total} members of {group!r} at the client")
    return pids


async def wait_for_item(box: list[Any], predicate: Any, *, timeout: float = 10.0,
                        what: str = "a message") -> Any:
    """Wait until an item of ``box`` satisfies ``predicate``; return it."""
    await wait_until(lambda: any(predicate(m) for m in box), timeout=timeout, what=what)
    return next(m for m in box if predicate(m))


@dataclass
class Attempt:
    """One call attempt: to ``pid``, started at ``start`` (monotonic)."""

    pid: shoal.Pid
    start: float
    routable: bool
    call_id: int | None
    end: float = 0.0
    error: BaseException | None = None


class Attempts:
    """Records every call the client node makes (see the module header)."""

    def __init__(self, node: shoal.Node) -> None:
        self.node = node
        self.items: list[Attempt] = []
        # Group calls go to the node's messaging component, not through
        # node.call: every attempt passes here.
        messaging = node._messaging
        self._original = messaging.call
        messaging.call = self._call  # type: ignore[method-assign]

    async def _call(self, pid: shoal.Pid, request: Any, timeout: float = 5.0,
                    **options: Any) -> Any:
        attempt = Attempt(pid, time.monotonic(), self.node.cluster_view.is_routable(pid.node),
                          _call_id.get())
        self.items.append(attempt)
        try:
            return await self._original(pid, request, timeout, **options)
        except BaseException as exc:
            attempt.error = exc
            raise
        finally:
            attempt.end = time.monotonic()

    def to_node(self, name: str) -> list[Attempt]:
        return [a for a in self.items if a.pid.node == name]

    def in_flight(self, name: str) -> int:
        return sum(1 for a in self.to_node(name) if not a.end)

    def unanswerable(self, name: str, service_time: float) -> int:
        """Attempts to ``name`` still unanswered and started less than
        ``service_time`` ago: a node whose handler takes that long cannot
        have sent their replies yet, so a kill now surely breaks them (an
        attempt merely in flight may have its reply already on the way)."""
        now = time.monotonic()
        return sum(1 for a in self.to_node(name) if not a.end and now - a.start < service_time)

    def of_call(self, call_id: int) -> list[Attempt]:
        return [a for a in self.items if a.call_id == call_id]


@dataclass
class Outcome:
    """One group call: its id, when it ended, the node that replied or the error."""

    call_id: int
    start: float
    end: float
    node: str | None = None
    error: BaseException | None = None


@dataclass
class Stream:
    """``callers`` concurrent group calls to ``group`` from ``node`` until stopped.

    Each request is ``request`` (echoed back with the serving node's name).
    """

    node: shoal.Node
    group: str
    callers: int = 8
    request: Any = "ping"
    idempotent: bool = True
    strategy: str = "round_robin"
    timeout: float = 5.0
    max_calls: int = 100_000
    # Seconds each caller waits between calls: a stream that must last
    # through a long fault paces itself so max_calls is not spent early.
    pause: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _next: int = 0

    def start(self) -> Stream:
        self._tasks = [asyncio.create_task(self._caller()) for _ in range(self.callers)]
        return self

    async def _caller(self) -> None:
        groups = self.node.groups
        while not self._stop.is_set() and self._next < self.max_calls:
            self._next += 1
            call_id = self._next
            _call_id.set(call_id)
            start = time.monotonic()
            try:
                reply = await groups.call(self.group, self.request, timeout=self.timeout,
                                          strategy=self.strategy, idempotent=self.idempotent)
            except shoal.ShoalError as exc:
                self.outcomes.append(Outcome(call_id, start, time.monotonic(), error=exc))
            else:
                self.outcomes.append(Outcome(call_id, start, time.monotonic(), node=reply[0]))
            await asyncio.sleep(self.pause)  # let the loop breathe between calls

    async def wait_calls(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` more calls have completed."""
        target = len(self.outcomes) + count
        if target > self.max_calls:
            raise AssertionError(f"the stream stops at {self.max_calls} calls: pace it")
        await wait_until(lambda: len(self.outcomes) >= target, timeout=timeout,
                         what=f"{count} more group calls")

    async def stop(self) -> list[Outcome]:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), self.timeout + 5)
        return self.outcomes

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error is not None]

    def served_by(self, name: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.node == name]
