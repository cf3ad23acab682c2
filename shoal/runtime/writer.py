"""Writing a node's own memberships to the store.

The node is the only writer of its memberships (Rule 3 of
``replication.py``). The writer depends only on a ``SessionHolder`` (the
replication) that hands it the current session, reopens an ended one, and
says whether the node stops; and on the group table it reads. Joins and leaves mark *buckets* dirty
(``shoal.membership.keys``); a bucket's value is computed from ``_local``
when it is written, so a write always carries the latest state.

Rules:

- Rule 1: up to MAX_WRITES transactions are in flight, on disjoint keys. A
  key in flight is not written again until its write is answered: two
  writes of one key in flight could land in either order.
- Rule 2: ``flush`` waits for a *mark*: every change is numbered, and the
  store holds every change up to the oldest one still dirty or in flight
  (tracked with a heap of (mark, key), stale entries dropped lazily).
- Rule 3: a failed write is requeued with its old mark and retried after a
  shared backoff (``shoal._backoff``, jittered; a success restarts it); a
  write that finds the session ended asks the replication to open a new
  one, after which every bucket is written again.
- Rule 4: the owner is authoritative (re-assertion). A watched change of
  one of our keys (this incarnation) that we did not make -- its revision
  is past our last write of that key, and the store no longer holds what we
  hold -- is written again at once (``foreign``). A change seen while our
  write of that key is in flight is judged when the write's revision is
  known. ``_landed`` holds a revision per key we hold; ``_gone`` one per key
  we deleted, pruned once the watch has passed it (``watched_to``).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from shoal._backoff import backoff_delays
from shoal.errors import SessionEnded, StoreError
from shoal.membership.keys import bucket_of, encode_members, member_key
from shoal.membership.table import GroupTable, MembershipEvent
from shoal.store.base import Delete, Op, Put, Session

if TYPE_CHECKING:
    from shoal.runtime.outages import StoreOutages

__all__ = ["MAX_BATCH", "MAX_WRITES", "SessionHolder", "Writer"]

log = logging.getLogger("shoal")

MAX_BATCH = 128  # etcd's default transaction limit; other stores take it too
MAX_WRITES = 4  # transactions in flight at once (on disjoint keys)
RETRY_FIRST, RETRY_MAX = 0.05, 2.0  # backoff after a failed write, seconds, before jitter


def _backoff() -> Iterator[float]:
    return backoff_delays(initial=RETRY_FIRST, maximum=RETRY_MAX)


class SessionHolder(Protocol):
    """What the writer needs of the replication that owns the session."""

    @property
    def session(self) -> Session | None:
        """The current session (None before the first is open)."""

    @property
    def stopping(self) -> bool:
        """True once the node stops or is fenced: nothing more is written."""

    @property
    def outages(self) -> StoreOutages:
        """Where store failures are logged, once per outage."""

    async def reopen(self, ended: Session | None) -> None:
        """``ended`` ended under us: open a new session (Rule 3)."""

    def reasserting(self, keys: list[str], revision: int) -> bool:
        """Whether to write back ``keys`` someone else changed (Rule 4)."""


class Writer:
    """Writes the node's buckets for a replication (see the header).

    Args:
        replication: hands the writer the current session.
        table: the node's group table (its own memberships are read there).
        name: the node's name.
    """

    def __init__(self, replication: SessionHolder, table: GroupTable, name: str) -> None:
        self.replication = replication
        self._table = table
        self._name = name
        # Invariant: our own buckets as they must be in the store, key ->
        # (bucket, serial -> join count), never with an empty count map.
        self._local: dict[str, tuple[int, dict[int, int]]] = {}
        # Invariant: keys to write -> the mark of their oldest change not yet
        # in the store; a key is here, in _inflight, or in both.
        self._dirty: dict[str, int] = {}
        # Invariant: keys of the writes in flight -> the same; at most one
        # write in flight per key.
        self._inflight: dict[str, int] = {}
        # Invariant: a heap holding (mark, key) for every entry of _dirty and
        # _inflight; an entry whose key no longer holds that mark (written
        # since) is dropped when it surfaces.
        self._pending: list[tuple[int, str]] = []
        # Invariant: _written <= _marked; every change numbered <= _written
        # is in the store.
        self._marked = 0
        self._written = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        # Invariant: len(_writes) <= MAX_WRITES.
        self._writes: set[asyncio.Task[None]] = set()
        # Invariant: no write starts before _retry_at (loop time).
        self._retry_at = 0.0
        # Invariant: the shared backoff's delays, restarted by a success.
        self._delays = _backoff()
        # Invariant (Rule 4): revision of our last landed write of each key
        # in _local (_landed), or of our deletion of a key no longer held
        # that the watch has not passed yet (_gone).
        self._landed: dict[str, int] = {}
        self._gone: dict[str, int] = {}
        # Invariant: keys in _inflight -> the highest revision of a change
        # of them watched while in flight.
        self._suspect: dict[str, int] = {}
        # For /metrics: transactions the store accepted; the seconds from
        # sending the last sampled write to the watch applying its revision
        # (None before the first); at most one write sampled at a time
        # (revision, loop time sent); the highest revision watched.
        self.writes = 0
        self.lag: float | None = None
        self._lag_sample: tuple[int, float] | None = None
        self._watched = 0

    def cancel(self) -> list[asyncio.Task[None]]:
        """Cancel the writes in flight; return their tasks (to await)."""
        tasks = list(self._writes)
        for task in tasks:
            task.cancel()
        return tasks

    def release_waiters(self) -> None:
        """Wake every ``flush`` waiter (the node is stopping)."""
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters = []

    def rewrite_all(self) -> int:
        """Mark every bucket we hold for writing (a new session holds none).

        Returns:
            How many buckets.
        """
        if self._local:
            # A new mark: flush() waits for the rewrite, not only for the
            # changes made before the session ended (already "written" there).
            self._marked += 1
            for key in self._local:
                self._mark_dirty(key, self._marked)
        return len(self._local)

    def foreign(self, key: str, value: bytes | None, revision: int) -> bool:
        """A watched change of one of our keys: write it again if someone else
        made it (Rule 4). Returns True when it is being re-asserted."""
        if key in self._inflight:
            self._suspect[key] = max(revision, self._suspect.get(key, 0))
            return False
        if key in self._dirty or revision <= max(self._landed.get(key, 0),
                                                 self._gone.get(key, 0)):
            return False  # our own change, or older than ours, or about to be written
        held = self._local.get(key)
        if (encode_members(*held) if held is not None else None) == value:
            return False
        self._marked += 1
        self._mark_dirty(key, self._marked)
        self.kick()
        return True

    def watched_to(self, revision: int, prefix: str = "") -> None:
        """The watch of ``prefix`` (one scope's keys) has applied every change
        up to ``revision``: forget the deletions under it it has passed (Rule
        4). Each scope is its own stream, so another scope's revision says
        nothing of these keys."""
        self._watched = max(self._watched, revision)
        sample = self._lag_sample
        if sample is not None and sample[0] <= revision:
            self._lag_sample = None
            self.lag = asyncio.get_running_loop().time() - sample[1]
        if self._gone:
            self._gone = {k: r for k, r in self._gone.items()
                          if r > revision or not k.startswith(prefix)}

    def check_snapshot(self, own: dict[str, tuple[bytes, int]], revision: int,
                       prefix: str = "") -> list[str]:
        """Compare our keys in a snapshot of ``prefix`` at ``revision`` (key ->
        (value, its revision)) with what we hold under it; re-assert what
        differs (Rule 4).

        Returns:
            The keys being written again.
        """
        held = [key for key in self._local if key.startswith(prefix)]
        return [key for key in sorted(set(held) | set(own))
                if self.foreign(key, *own.get(key, (None, revision)))]

    def local_changes(self, events: Iterable[MembershipEvent]) -> None:
        """Mark the buckets of local pids touched by ``events`` for writing."""
        table = self._table
        name = self._name
        local = self._local
        for event in events:
            group = str(event.group)
            for pid in set(event.pids):
                if pid.node != name:
                    continue
                bucket = bucket_of(pid.serial)
                key = member_key(name, pid.creation, event.scope, group, bucket)
                count = table.count(pid, event.scope, event.group)
                held = local.get(key)
                if count:
                    if held is None:
                        held = local[key] = (bucket, {})
                    held[1][pid.serial] = count
                elif held is not None:
                    held[1].pop(pid.serial, None)
                    if not held[1]:
                        del local[key]
                self._marked += 1
                self._mark_dirty(key, self._marked)
        self.kick()

    def _mark_dirty(self, key: str, mark: int) -> None:
        if key not in self._dirty:
            self._dirty[key] = mark
            heapq.heappush(self._pending, (mark, key))

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every change marked so far is in the store.

        Returns:
            True if written, False if ``timeout`` passed first.
        """
        session = self.replication.session
        if session is not None and session.ended:
            # The store dropped every key of that session, perhaps before the
            # session's guard noticed: nothing counts as written until the
            # new session holds it all again.
            self.rewrite_all()
            self.kick()
        if self._written >= self._marked:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._marked, future))
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return False
        return True

    def kick(self) -> None:
        """Start writes of dirty keys, up to MAX_WRITES transactions in flight.

        A write does not wait for an unrelated one in flight (a store round
        trip each would add up under a steady stream of joins), but a key
        already in flight waits for it: two writes of one key in flight
        could land in either order.
        """
        if self.replication.stopping or not self._dirty:
            return
        loop = asyncio.get_running_loop()
        if self._retry_at > loop.time():
            return  # backing off; the failed write kicks again when it is over
        while self._dirty and len(self._writes) < MAX_WRITES:
            batch: dict[str, int] = {}
            for key, mark in self._dirty.items():
                if key not in self._inflight:
                    batch[key] = mark
                    if len(batch) == MAX_BATCH:
                        break
            if not batch:
                return  # every dirty key is in flight; its write kicks again
            for key in batch:
                del self._dirty[key]
            self._inflight.update(batch)
            task = loop.create_task(self._write(batch))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _write(self, batch: dict[str, int]) -> None:
        ops: list[Op] = []
        for key in batch:
            held = self._local.get(key)
            ops.append(Put(key=key, value=encode_members(*held)) if held is not None
                       else Delete(key=key))
        session = self.replication.session
        sent = asyncio.get_running_loop().time()
        try:
            if session is None:
                raise SessionEnded("no session")
            revision = await session.apply(ops)
        except Exception as exc:  # a write is never dropped silently, whatever failed
            self._requeue(batch)
            if isinstance(exc, SessionEnded):
                await self.replication.reopen(session)
            else:
                loop = asyncio.get_running_loop()
                if self._retry_at <= loop.time():
                    delay = next(self._delays)
                    # A StoreError is the store's trouble; anything else is a
                    # bug, logged with its traceback, and retried the same way
                    # rather than leaving these keys unwritten for good.
                    if isinstance(exc, StoreError):
                        self.replication.outages.failed("membership write", exc, delay)
                    else:
                        log.error("node %s: membership write failed (%s); retrying in %.2fs",
                                  self._name, exc, delay, exc_info=True)
                    self._retry_at = loop.time() + delay
                await asyncio.sleep(max(0.0, self._retry_at - loop.time()))
        else:
            self.writes += 1
            if revision <= self._watched:  # the watch applied it before the answer came
                self.lag = asyncio.get_running_loop().time() - sent
            elif self._lag_sample is None:
                self._lag_sample = (revision, sent)
            if self._retry_at:
                self._retry_at = 0.0
                self._delays = _backoff()  # the store answers again: start over
                self.replication.outages.succeeded("membership write")
            late = []
            for key in batch:
                del self._inflight[key]
                if key in self._local:
                    self._landed[key] = revision
                    self._gone.pop(key, None)
                else:
                    self._landed.pop(key, None)
                    self._gone[key] = revision
                if self._suspect.pop(key, 0) > revision:
                    late.append(key)  # changed by someone else after our write
            self._advance()
            if late and self.replication.reasserting(late, revision):
                self._marked += 1
                for key in late:
                    self._mark_dirty(key, self._marked)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._writes.discard(task)  # its slot is free: let the kick use it
            self.kick()

    def _requeue(self, batch: dict[str, int]) -> None:
        for key, mark in batch.items():
            del self._inflight[key]
            self._suspect.pop(key, None)  # it is written again anyway
            held = self._dirty.get(key)
            self._dirty[key] = mark if held is None else min(mark, held)

    def _advance(self) -> None:
        """Wake the flush waiters whose changes are all in the store now."""
        pending = self._pending
        while pending:
            mark, key = pending[0]
            if self._dirty.get(key) == mark or self._inflight.get(key) == mark:
                break
            heapq.heappop(pending)
        self._written = pending[0][0] - 1 if pending else self._marked
        if not self._waiters:
            return
        still = []
        for mark, waiter in self._waiters:
            if mark <= self._written:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((mark, waiter))
        self._waiters = still
