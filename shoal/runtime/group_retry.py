"""What a group call does after a member failed: try another, wait, or give up.

Owns no state: the decisions of ``Groups.call`` (``groups.py``) once an
attempt failed or no member is left to pick, and the one bounded wait.

Rules:

- Rule 1 (G3): another member is tried only when the request provably did
  not start on the one that failed (or, for a request marked
  ``idempotent``, when its delivery is unknown). A usage error is the
  caller's, and every member would refuse it alike: never retried.
- Rule 2: when no member is left to pick and some member is known to have
  died (it answered "no such process", here or to an earlier call, and its
  removal has not arrived yet), the call waits for a member to join the
  group, at most :data:`REPLACEMENT_WAIT` seconds and never past its
  deadline, then picks again. A supervised member that crashed is
  restarted at once, but its replacement reaches this node's view through
  the store a moment later: without the wait, workers crashing under
  load from another node make callers see ``NoMembers`` while their group
  is never empty where it lives. An empty group, or members that are only
  unreachable, still raise ``NoMembers`` at once.
- Rule 3: ``NoMembers`` after tries says why they failed, each distinct
  reason once, so "authentication refused by node 'a'" is not lost in a
  count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from shoal.errors import NodeDown, NoMembers, NoSuchProcess, ProcessExited, ShoalError, UsageError
from shoal.pid import Pid
from shoal.runtime.notices import GroupEvent

__all__ = ["REPLACEMENT_WAIT", "no_members", "replacement_wait", "retryable", "wait_for_join",
           "wait_replaced"]

REPLACEMENT_WAIT = 1.0
"""Longest wait of one group call for a member to join in place of members
that died (Rule 2), in seconds; never past the call's deadline."""


def retryable(exc: ShoalError, idempotent: bool) -> bool:
    """Rule 1: whether another member may take the request after ``exc``."""
    if isinstance(exc, UsageError):
        return False
    return exc.not_started or (idempotent and isinstance(exc, (ProcessExited, NodeDown)))


def no_members(scope: str, group: str, failures: list[ShoalError]) -> NoMembers:
    """Rule 3: NoMembers after tries, saying why they failed."""
    reasons = tuple(dict.fromkeys(str(exc) for exc in failures))
    return NoMembers(scope, group, len(failures), reasons)


def replacement_wait(failures: list[ShoalError], members: Iterable[Pid],
                     marked_dead: Callable[[Pid], bool], remaining: float) -> float:
    """Rule 2: seconds to wait for a member to join (0: do not wait)."""
    if remaining <= 0:
        return 0.0
    if any(isinstance(exc, NoSuchProcess) for exc in failures) \
            or any(marked_dead(pid) for pid in members):
        return min(remaining, REPLACEMENT_WAIT)
    return 0.0


async def wait_for_join(next_event: Callable[[], Awaitable[GroupEvent]],
                        timeout: float) -> bool:
    """Wait up to ``timeout`` for a join among the events ``next_event``
    returns; whether one came."""
    try:
        async with asyncio.timeout(timeout):
            while (await next_event()).kind != "join":
                pass
    except (TimeoutError, StopAsyncIteration):
        return False
    return True


class Events(Protocol):
    """A group subscription, as ``wait_replaced`` reads it."""

    async def get(self) -> GroupEvent: ...

    def close(self) -> None: ...


async def wait_replaced(failures: list[ShoalError], members: Iterable[Pid],
                        marked_dead: Callable[[Pid], bool], remaining: float,
                        subscribe: Callable[[], Events]) -> bool:
    """Rule 2 whole: when a member died, wait (bounded) for one to join in
    its place; whether one joined."""
    wait = replacement_wait(failures, members, marked_dead, remaining)
    if wait <= 0:
        return False
    subscription = subscribe()
    try:
        return await wait_for_join(subscription.get, wait)
    finally:
        subscription.close()
