"""The node's plain counters, read by ``/metrics`` (``metrics.py``) at scrape time.

Owns: integers and lists of integers, nothing else. The parts that know an
outcome bump them in place (``Messaging.call`` for local calls,
``Remote``'s call path for remote ones, ``Groups.call`` for group calls,
``Admin`` for admin requests, supervisors for restarts, ``Inbound`` for
remote calls served); nothing here
touches a prometheus-client object, so counting costs an index and an add.

Rules:

- Rule 1: a local call (about 4 µs round trip) is counted, never timed: a
  clock read and a bucket search on each would cost more than the 3% budget
  of ``docs/performance.md``. Remote and group calls (tens of µs) are timed
  into :data:`BUCKETS` with one ``bisect``.
- Rule 2: an outcome comes from the exception the caller saw
  (:func:`outcome_of`); a cancelled call is not counted (nobody saw an
  outcome).
- Bounds: every table here is fixed-size (kinds x outcomes, buckets) except
  ``admin_actions``, keyed by admin op names: unknown names count under
  ``"other"``, so it holds at most the known ops plus one.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Awaitable
from typing import Any, TypeVar

from shoal.errors import (
    CallTimeout,
    NodeDown,
    NoMembers,
    NoSuchProcess,
    Overloaded,
)

__all__ = ["ADMIN_OPS", "BUCKETS", "GROUP", "KINDS", "LOCAL", "OUTCOMES", "REMOTE",
           "Counters", "outcome_of"]

T = TypeVar("T")

OUTCOMES = ("ok", "error", "timeout", "noproc", "nodedown", "overloaded")
OK, ERROR, TIMEOUT, NOPROC, NODEDOWN, OVERLOADED = range(len(OUTCOMES))
KINDS = ("local", "remote", "group")
LOCAL, REMOTE, GROUP = range(len(KINDS))

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
           0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of ``shoal_call_duration_seconds``; +Inf follows."""

ADMIN_OPS = frozenset({"ping", "alive", "members", "evict", "forget", "drain", "reload", "stats"})


def outcome_of(exc: BaseException) -> int:
    """The outcome index a call that raised ``exc`` counts under (Rule 2)."""
    if isinstance(exc, CallTimeout):
        return TIMEOUT
    if isinstance(exc, NoSuchProcess | NoMembers):
        return NOPROC
    if isinstance(exc, NodeDown):
        return NODEDOWN
    if isinstance(exc, Overloaded):
        return OVERLOADED
    return ERROR


class Counters:
    """A node's counters (see the module header); read, never reset."""

    __slots__ = ("admin_actions", "calls", "durations", "restarts", "served", "sums")

    def __init__(self) -> None:
        # Invariant: calls[kind][outcome] counts finished calls of that kind.
        self.calls: list[list[int]] = [[0] * len(OUTCOMES) for _ in KINDS]
        # Invariant: durations[kind][i] counts timed calls in bucket i
        # (non-cumulative; the last one is +Inf); sums[kind] their seconds.
        self.durations: list[list[int]] = [[0] * (len(BUCKETS) + 1) for _ in KINDS]
        self.sums: list[float] = [0.0] * len(KINDS)
        self.restarts = 0
        # Remote calls (CALLs from peers) delivered to a process of this node.
        self.served = 0
        # Invariant: keys are ADMIN_OPS or "other" (Bounds).
        self.admin_actions: dict[str, int] = {}

    def count(self, kind: int, outcome: int) -> None:
        """Count one call of ``kind`` that ended with ``outcome`` (untimed)."""
        self.calls[kind][outcome] += 1

    def failed(self, kind: int, exc: BaseException) -> None:
        """Count one untimed call of ``kind`` that raised ``exc``."""
        self.calls[kind][outcome_of(exc)] += 1

    def observe(self, kind: int, outcome: int, seconds: float) -> None:
        """Count one timed call of ``kind``."""
        self.calls[kind][outcome] += 1
        self.durations[kind][bisect_left(BUCKETS, seconds)] += 1
        self.sums[kind] += seconds

    async def timed(self, kind: int, call: Awaitable[T]) -> T:
        """Await ``call``, counting and timing it as a call of ``kind``."""
        started = time.perf_counter()
        try:
            value = await call
        except Exception as exc:
            self.observe(kind, outcome_of(exc), time.perf_counter() - started)
            raise
        self.observe(kind, OK, time.perf_counter() - started)
        return value

    def admin_action(self, op: Any) -> None:
        """Count one admin request naming ``op``."""
        key = op if op in ADMIN_OPS else "other"
        self.admin_actions[key] = self.admin_actions.get(key, 0) + 1
