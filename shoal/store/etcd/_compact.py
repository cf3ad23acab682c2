"""Compacting etcd's history: one node at a time discards revisions nobody needs.

What it owns: a store's :class:`Compactor` (its policy and the revisions
it saw, over all its sessions), and the :class:`CompactionDuty` of each of
its sessions (started with the session, stopped when it ends).

etcd keeps every revision until something compacts it. Each rolling restart
of a fleet adds its whole membership twice (puts, then deletes) to that
history; left alone it fills etcd's backend quota (2 GiB by default), and
then etcd refuses every write, cluster-wide ("database space exceeded").

Rules:

- Rule 1: one holder at a time, through the store. The duty is the key
  :data:`DUTY_KEY`, created only if absent and bound to the holder's lease:
  it vanishes with the holder's session (closed, expired, revoked), and the
  next session to look (each looks every ``interval``) takes it over. It is
  an adapter-internal key: snapshots and watches never show it. A look is a
  read; only a look that finds the key absent writes (one transaction).
- Rule 2: a margin. Every look notes etcd's revision and the time (in the
  store's samples, kept across its sessions, held or not); the holder
  compacts to the newest revision noted at least ``retention`` seconds ago,
  so every change younger than ``retention`` stays readable. A holder whose
  process started less than ``retention`` ago compacts nothing yet. A watch
  that falls further behind than that (a stream broken for minutes, a
  consumer stalled) is told the revisions are gone and re-syncs from a fresh
  snapshot (the store contract's Rule 3): it loses nothing, it replaces.
- Rule 3: compaction by anyone else (etcd's ``--auto-compaction-*``,
  another shoal cluster on the same etcd, an operator) is fine: "already
  compacted" counts as done.
- Rule 4: a failed look or compaction is logged and tried again at the next
  tick; it never ends the session.
- Samples are bounded: at most ``retention / interval + 2`` per session of
  the store (sessions look independently), the ones older than the newest
  old-enough sample dropped.

Why not etcd's own ``--auto-compaction-mode=periodic``: it is the same
policy and operators should set it too (``docs/etcd.md``); the duty makes
a shoal cluster safe on an etcd nobody configured, which is how the
quota got filled in the first place. Compaction covers etcd's whole key
space (revisions are global), not only this cluster's prefix.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from shoal.errors import BadArgument, StoreError
from shoal.store.etcd._client import (
    EndpointConnection,
    EtcdCallError,
    compare_created,
    put_op,
    range_op,
)

__all__ = [
    "DEFAULT_COMPACTION_INTERVAL",
    "DEFAULT_COMPACTION_RETENTION",
    "DUTY_KEY",
    "INTERNAL_PREFIX",
    "CompactionDuty",
    "CompactionPolicy",
    "Compactor",
    "DutyOwner",
    "RevisionSamples",
]

INTERNAL_PREFIX = "_shoal/"
"""Store keys under this prefix belong to the adapter; snapshots and watches
skip them."""

DUTY_KEY = INTERNAL_PREFIX + "compactor"
"""The key whose holder compacts (value: the holder's session name)."""

DEFAULT_COMPACTION_INTERVAL = 60.0
"""Seconds between two looks at the duty (and two compactions by its holder)."""

DEFAULT_COMPACTION_RETENTION = 300.0
"""Seconds of history kept (as Kubernetes' API server: it compacts every 5 min)."""

_log = logging.getLogger("shoal.store.etcd")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class CompactionPolicy:
    """How often the duty is looked at, and how much history is kept.

    Raises:
        BadArgument: ``interval`` is not a finite number > 0, or
            ``retention`` not a finite number >= 0.
    """

    interval: float = DEFAULT_COMPACTION_INTERVAL
    retention: float = DEFAULT_COMPACTION_RETENTION

    def __post_init__(self) -> None:
        for name, value, least in (("compaction_interval", self.interval, 0.0),
                                   ("compaction_retention", self.retention, -1.0)):
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value <= least:
                expected = "seconds > 0" if least == 0.0 else "seconds >= 0"
                raise BadArgument(name, value, expected)


class RevisionSamples:
    """The revisions the holder saw, and when: pure, driven by the caller's clock.

    Args:
        retention: seconds a revision must be old before it may be compacted to.
        limit: the most samples kept (older ones are dropped first).
    """

    def __init__(self, retention: float, limit: int) -> None:
        self._retention = retention
        # Invariant: (time, revision) pairs, both rising; at most _limit of them.
        self._samples: deque[tuple[float, int]] = deque(maxlen=max(2, limit))
        self.compacted = 0  # the highest revision compacted to by this holder

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, now: float, revision: int) -> None:
        """Record that etcd's revision was ``revision`` at ``now``."""
        if not self._samples or revision >= self._samples[-1][1]:
            self._samples.append((now, revision))

    def target(self, now: float) -> int | None:
        """The revision to compact to now (the newest one seen at least
        ``retention`` ago), or None when there is nothing new to compact."""
        best: int | None = None
        while self._samples and now - self._samples[0][0] >= self._retention:
            best = self._samples[0][1]
            if len(self._samples) > 1 and now - self._samples[1][0] >= self._retention:
                self._samples.popleft()  # a newer sample is old enough too
            else:
                break
        if best is None or best <= self.compacted:
            return None
        return best


class Compactor:
    """One store's compaction: its policy and the revisions its sessions saw.

    Args:
        policy: interval and retention.
    """

    def __init__(self, policy: CompactionPolicy) -> None:
        self.policy = policy
        # Several sessions of one store look independently: room for a few.
        limit = 4 * (math.ceil(policy.retention / policy.interval) + 2)
        self.samples = RevisionSamples(policy.retention, limit)

    def duty(self, store: DutyOwner, name: str, lease: int) -> CompactionDuty:
        """Start the duty of the session ``name`` holding ``lease``."""
        return CompactionDuty(store, name, lease, self)


class DutyOwner(Protocol):
    """What the duty uses of the store (an :class:`~shoal.store.etcd.EtcdStore`)."""

    def etcd_key(self, key: str) -> bytes:
        """The etcd key of a store key (the cluster prefix added)."""

    async def call_endpoints(
        self, what: str, run: Callable[[EndpointConnection, float], Awaitable[_T]],
        *, budget: float | None = None,
    ) -> _T:
        """Run ``run`` under the store's deadline, failing over between endpoints."""


class CompactionDuty:
    """One session's part in compacting etcd (see the module header).

    Args:
        store: the store the session belongs to.
        name: the session's name (written as the duty key's value).
        lease: the session's lease; the duty key is bound to it.
        compactor: the store's policy and samples.
    """

    def __init__(self, store: DutyOwner, name: str, lease: int,
                 compactor: Compactor) -> None:
        self._store = store
        self._name = name
        self._lease = lease
        self._policy = compactor.policy
        self._key = store.etcd_key(DUTY_KEY)
        self._samples = compactor.samples
        # Invariant: True while the last look found the duty key bound to our lease.
        self.holding = False
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"shoal-etcd-compaction-{name}")

    @property
    def compacted(self) -> int:
        """The highest revision this holder compacted to (0: none yet)."""
        return self._samples.compacted

    def stop(self) -> None:
        """Stop looking and compacting (the session ended; its lease frees the key)."""
        self.holding = False
        if self._task is not asyncio.current_task():
            self._task.cancel()

    async def _run(self) -> None:
        # The first look comes after a random part of the interval, so nodes
        # started together do not all look together.
        delay = self._policy.interval * random.uniform(0.1, 1.0)
        while True:
            await asyncio.sleep(delay)  # pacing the duty, not synchronising
            delay = self._policy.interval
            try:
                await self.tick()
            except StoreError as error:
                _log.warning("etcd compaction duty of %s: %s; trying again in %gs",
                             self._name, error, delay)
            except Exception:  # a bug must not end the duty silently (Rule 4)
                _log.exception("etcd compaction duty of %s failed; trying again in %gs",
                               self._name, delay)

    async def tick(self) -> None:
        """Look at the duty once; compact if it is ours and something is old enough.

        Raises:
            StoreError: etcd could not be reached or refused (tried again later).
        """
        claim = [put_op(self._key, self._name.encode(), self._lease)]

        async def look(conn: EndpointConnection, seconds: float) -> tuple[int, int]:
            kvs, revision = await conn.range_prefix(self._key, seconds, exact=True)
            if kvs:
                return kvs[0].lease, revision
            created, revision, read = await conn.txn(
                [compare_created(self._key)], claim, [range_op(self._key)], seconds)
            return (self._lease if created else read[0].lease if read else 0), revision

        try:
            holder, revision = await self._store.call_endpoints("compaction duty", look)
        except EtcdCallError as error:
            raise StoreError(f"etcd refused the compaction duty's look: {error}") from None
        now = asyncio.get_running_loop().time()
        self._samples.add(now, revision)
        holding = holder == self._lease
        if holding and not self.holding:
            _log.info("etcd compaction duty taken by %s", self._name)
        self.holding = holding
        if not holding:
            return
        target = self._samples.target(now)
        if target is not None:
            await self._compact(target)

    async def _compact(self, target: int) -> None:
        async def compact(conn: EndpointConnection, seconds: float) -> None:
            await conn.compact(target, seconds, physical=False)

        try:
            await self._store.call_endpoints("compaction", compact)
        except EtcdCallError as error:
            if error.kind != "compacted":  # Rule 3: someone compacted further already
                raise StoreError(f"etcd refused compaction to {target}: {error}") from None
        self._samples.compacted = target
        _log.debug("etcd history compacted below revision %d by %s", target, self._name)
