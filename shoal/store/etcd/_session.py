"""The session of :class:`shoal.store.etcd.EtcdStore`: one etcd lease.

What it owns: a lease's life on the client side -- the keepalive task that
refreshes it every TTL/3, the guarded writes made under it, deciding when
and why the session ended, and its part in compacting etcd's history
(:mod:`._compact`, stopped when the session ends).

Rules:

- Rule 1: a write is a transaction guarded by "``nodes/<name>`` is still owned
  by my lease" (etcd's LEASE comparison), so a write after the session ended
  never lands, and raises :class:`SessionEnded`.
- Rule 2: a session ends only on positive evidence: a keepalive answered TTL
  0, a guarded write found the lease gone, or it was closed. Failing to reach
  etcd is not evidence: etcd keeps leases across its own restarts (and
  re-extends them when a new leader takes over), and ends them itself when
  they expire, which every watcher sees as deletes.
- Rule 4: a :class:`~shoal.store.base.Create` adds ``create_revision == 0``
  on its key to the guard. When the transaction fails, its other branch has
  read the guard and the created keys: a created key held by another lease
  (or by ours on a first attempt) is :class:`KeyExists`, anything else
  means the session ended. A retried attempt that finds the key holding our
  value under our lease is the first attempt's write (its answer was lost).
- Rule 3: the reason is "revoked" when the lease was confirmed alive less than
  a TTL before it was found gone (it cannot have expired by itself), else
  "expired".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from shoal._backoff import backoff_delays
from shoal.errors import BadArgument, KeyExists, SessionEnded, StoreError
from shoal.store._validate import check_ops, node_key
from shoal.store.base import Create, Op, Put
from shoal.store.etcd._client import (
    EndpointConnection,
    EtcdCallError,
    KeyValue,
    compare_created,
    compare_lease,
    delete_op,
    put_op,
    range_op,
)
from shoal.store.etcd._compact import Compactor

__all__ = ["MAX_TXN_OPS", "EtcdSession", "LeaseOwner", "session_id"]

MAX_TXN_OPS = 128
"""etcd's default ``--max-txn-ops``: the largest batch one transaction takes."""

_log = logging.getLogger("shoal.store.etcd")
_T = TypeVar("_T")


class LeaseOwner(Protocol):
    """What a session uses of the store that granted its lease (an
    :class:`~shoal.store.etcd.EtcdStore`). Declared here, at the session's
    level, so that the session does not import the store that builds it."""

    def session_ended(self, session: EtcdSession) -> None:
        """Forget a session that has ended."""

    def etcd_key(self, key: str) -> bytes:
        """The etcd key of a store key (the cluster prefix added)."""

    async def call_endpoints(
        self, what: str, run: Callable[[EndpointConnection, float], Awaitable[_T]],
        *, budget: float | None = None,
    ) -> _T:
        """Run ``run`` under the store's deadline, failing over between endpoints."""

    def refusal(self, what: str, error: EtcdCallError) -> StoreError:
        """The error for a call etcd answered with a refusal."""

    async def revoke_lease(self, lease: int) -> None:
        """Revoke a lease, best effort."""


def session_id(lease: int) -> str:
    """The shoal session id of an etcd lease id (``""`` for no lease)."""
    return f"{lease:016x}" if lease else ""


class EtcdSession:
    """A session of an :class:`EtcdStore`: one etcd lease kept alive every
    TTL/3; see :class:`shoal.store.base.Session`."""

    def __init__(self, store: LeaseOwner, name: str, lease: int, ttl: int,
                 compactor: Compactor | None = None) -> None:
        self._store = store
        self._name = name
        self._lease = lease
        self._ttl = ttl
        self._guard = store.etcd_key(node_key(name))
        loop = asyncio.get_running_loop()
        # Invariant: the lease was alive at _confirmed (loop time of the last
        # keepalive answer or successful write).
        self._confirmed = loop.time()
        self._reason: str | None = None
        self._ended_event = asyncio.Event()
        self._keepalive: asyncio.Task[None] = loop.create_task(
            self._keep_alive(), name=f"shoal-etcd-keepalive-{name}"
        )
        # The session's part in compacting etcd's history (_compact.py); None when off.
        self.compaction = None if compactor is None else compactor.duty(store, name, lease)

    @property
    def id(self) -> str:
        """The lease id in hex; etcd never reuses it."""
        return session_id(self._lease)

    @property
    def name(self) -> str:
        """The name the session was opened under."""
        return self._name

    @property
    def ttl(self) -> int:
        """The TTL etcd granted, in whole seconds (at least the one asked for)."""
        return self._ttl

    @property
    def ended(self) -> bool:
        """True once the session has ended."""
        return self._reason is not None

    def _loss_reason(self) -> str:
        # A lease that was confirmed alive less than a TTL ago cannot have
        # expired by itself: someone revoked it.
        elapsed = asyncio.get_running_loop().time() - self._confirmed
        return "revoked" if elapsed < self._ttl - 0.5 else "expired"

    def _mark_ended(self, reason: str) -> None:
        if self._reason is not None:
            return
        self._reason = reason
        self._ended_event.set()
        self._store.session_ended(self)
        if self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()
        if self.compaction is not None:
            self.compaction.stop()
        _log.info("etcd session %s (%s) ended: %s", self.id, self._name, reason)

    def _ended_error(self) -> SessionEnded:
        return SessionEnded(f"etcd session {self.id} ({self._name}) ended: {self._reason}")

    async def apply(self, ops: Sequence[Op]) -> int:
        """Apply puts, creates and deletes in one etcd transaction (one revision).

        Args:
            ops: Put/Create/Delete operations, each key at most once, at most
                :data:`MAX_TXN_OPS`.

        Returns:
            The revision after the change (the current one if nothing changed).

        Raises:
            BadArgument: ``ops`` is malformed or longer than :data:`MAX_TXN_OPS`.
            KeyExists: a Create's key exists (Rule 4); nothing was applied.
            SessionEnded: the session ended (also when found ended by this write).
            StoreUnavailable: no endpoint answered before the deadline.
            StoreError: etcd refused the request (too large, out of space).
        """
        batch = check_ops(ops)
        if len(batch) > MAX_TXN_OPS:
            raise BadArgument("ops", f"{len(batch)} operations", f"at most {MAX_TXN_OPS}")
        if self._reason is not None:
            raise self._ended_error()
        encode = self._store.etcd_key
        success = [
            put_op(encode(op.key), op.value, self._lease)
            if isinstance(op, Put | Create)
            else delete_op(encode(op.key))
            for op in batch
        ]
        creates = {encode(op.key): op for op in batch if isinstance(op, Create)}
        guard = [compare_lease(self._guard, self._lease),
                 *(compare_created(key) for key in creates)]
        # Only a batch with creates needs to know why its guard failed (Rule 4).
        failure = [range_op(key) for key in (self._guard, *creates)] if creates else []
        attempts = 0

        async def run(conn: EndpointConnection, seconds: float,
                      ) -> tuple[bool, int, list[KeyValue]]:
            nonlocal attempts
            attempts += 1
            return await conn.txn(guard, success, failure, seconds)

        try:
            ok, revision, read = await self._store.call_endpoints("apply", run)
        except EtcdCallError as error:
            if error.kind != "lease_not_found":
                raise self._store.refusal("apply", error) from None
            ok, revision, read = False, 0, []
        if not ok and creates:
            ok = self._refused_create(creates, read, retried=attempts > 1)
        if not ok:
            self._mark_ended(self._loss_reason())
            raise self._ended_error()
        self._confirmed = asyncio.get_running_loop().time()
        return revision

    def _refused_create(self, creates: dict[bytes, Create], read: list[KeyValue], *,
                        retried: bool) -> bool:
        """Why a batch with creates failed (Rule 4): raise KeyExists, or
        return True if it was our own earlier attempt's write, False if the
        session ended."""
        found = {kv.key: kv for kv in read}
        guard = found.get(self._guard)
        if guard is None or guard.lease != self._lease:
            return False
        for key, op in creates.items():
            kv = found.get(key)
            if kv is None:
                continue
            if retried and kv.lease == self._lease and kv.value == op.value:
                continue
            raise KeyExists(op.key, kv.value, session_id(kv.lease))
        return retried  # every create was ours: the lost answer of our first attempt

    async def wait_ended(self) -> str:
        """Wait until the session ends.

        Returns:
            ``"closed"``, ``"expired"`` (the lease ran out) or ``"revoked"``
            (someone else revoked it while it was being kept alive).
        """
        await self._ended_event.wait()
        assert self._reason is not None
        return self._reason

    async def close(self) -> None:
        """Revoke the lease: every key of the session vanishes at one revision.

        Idempotent. If etcd cannot be reached the session still counts as
        closed here; etcd deletes its keys when the lease expires (one TTL).
        """
        if self._reason is not None:
            return
        self._mark_ended("closed")
        await self._store.revoke_lease(self._lease)

    def pause_keepalive(self) -> None:
        """Stop refreshing the lease, as a hung owner would (for tests).

        The session still watches the lease without refreshing it, so it
        reports ``"expired"`` once etcd lets the lease run out.
        """
        if self._reason is None:
            self._keepalive.cancel()
            self._keepalive = asyncio.get_running_loop().create_task(
                self._observe(), name=f"shoal-etcd-observe-{self._name}"
            )

    async def _observe(self) -> None:
        async def remaining(conn: EndpointConnection, seconds: float) -> int:
            return await conn.lease_time_to_live(self._lease, seconds)

        while self._reason is None:
            await asyncio.sleep(self._ttl / 3)  # pacing the check, not synchronising
            try:
                ttl = await self._store.call_endpoints(
                    "lease time-to-live", remaining, budget=self._ttl
                )
            except EtcdCallError as error:
                ttl = -1 if error.kind == "lease_not_found" else 1
            except StoreError:
                continue
            if ttl < 0:  # -1: gone. 0 only means under a second left (etcd truncates)
                self._mark_ended(self._loss_reason())

    async def check(self) -> bool:
        """Refresh the lease once now and report whether the session lives.

        Returns:
            False when etcd says the lease is gone (the session is then ended).

        Raises:
            StoreUnavailable: no endpoint answered before the deadline.
        """
        if self._reason is not None:
            return False

        async def refresh(conn: EndpointConnection, seconds: float) -> int:
            return await conn.lease_keepalive(self._lease, seconds)

        try:
            ttl = await self._store.call_endpoints("lease keepalive", refresh, budget=self._ttl / 3)
        except EtcdCallError as error:
            if error.kind != "lease_not_found":
                raise self._store.refusal("lease keepalive", error) from None
            ttl = 0
        if ttl <= 0:
            self._mark_ended(self._loss_reason())
            return False
        self._confirmed = asyncio.get_running_loop().time()
        return True

    async def _keep_alive(self) -> None:
        interval = self._ttl / 3
        delay = interval
        retries = backoff_delays(initial=interval / 2, maximum=interval / 2)
        while self._reason is None:
            await asyncio.sleep(delay)  # pacing the refresh, not synchronising
            try:
                alive = await self.check()
            except StoreError as error:
                # Keep trying, twice as often: the lease may well survive (etcd
                # restarting), and only etcd can say it did not. Jittered, so
                # nodes that lost etcd together do not retry together.
                _log.warning("etcd session %s keepalive failed: %s", self.id, error)
                delay = next(retries)
                continue
            if not alive:
                return
            delay = interval
