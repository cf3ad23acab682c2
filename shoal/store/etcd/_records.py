"""Durable records on etcd (the store contract's Rule 7).

What it owns: :class:`RecordsMixin`, the ``append_record`` / ``records``
methods of :class:`~shoal.store.etcd.EtcdStore`, on adapter-internal keys
(``_shoal/``: snapshots and watches never show them):

- ``_shoal/records/<kind>/<seq, 20 digits>``: one record, put without a
  lease (it outlives every session), the value as given.
- ``_shoal/record-seq/<kind>``: the kind's counter, the last seq handed out
  (decimal ASCII), also without a lease.

Rules:

- Rule 1: an append is one transaction guarded by the counter's
  ``mod_revision`` (or its absence): put counter = seq, put the record,
  delete the range of the kind's records at or below ``seq - keep`` (the
  zero-padded seq makes key order numeric order). So seqs are gap-free per
  kind, and the log never holds more than ``keep`` records of a kind.
- Rule 2: a transaction lost to a concurrent append reads the new counter
  in its failure branch and tries again after a delay from
  :func:`shoal._backoff.backoff_delays`, for at most 5 seconds (then
  StoreUnavailable). A retried transaction whose first attempt did
  land (its answer was lost) finds its own record under the seq it tried,
  with the same bytes, and returns that seq instead of appending twice.
- Rule 3: reading is one range, newest first, limited to ``limit`` keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from shoal._backoff import backoff_delays
from shoal.errors import StoreError, StoreUnavailable
from shoal.store._validate import check_count, check_record
from shoal.store.base import RECORD_KEEP, Record
from shoal.store.etcd._client import (
    EndpointConnection,
    EtcdCallError,
    KeyValue,
    compare_created,
    compare_mod,
    delete_range_op,
    put_op,
    range_op,
)
from shoal.store.etcd._compact import INTERNAL_PREFIX

__all__ = ["RecordsMixin"]

_T = TypeVar("_T")
_SEQ_DIGITS = 20
_CONFLICT_FIRST, _CONFLICT_MAX = 0.005, 0.2
_CONFLICT_BUDGET = 5.0  # seconds of losing to concurrent appends before giving up


class _Plumbing(Protocol):
    """What the records use of :class:`~shoal.store.etcd.EtcdStore`."""

    def etcd_key(self, key: str) -> bytes: ...

    async def call_endpoints(
        self, what: str, run: Callable[[EndpointConnection, float], Awaitable[_T]],
        *, budget: float | None = None,
    ) -> _T: ...

    def refusal(self, what: str, error: EtcdCallError) -> StoreError: ...


def _record_keys(store: _Plumbing, kind: str) -> tuple[bytes, bytes]:
    """(the counter's key, the prefix of the kind's record keys)."""
    return (store.etcd_key(f"{INTERNAL_PREFIX}record-seq/{kind}"),
            store.etcd_key(f"{INTERNAL_PREFIX}records/{kind}/"))


async def _call(store: _Plumbing, what: str,
                run: Callable[[EndpointConnection, float], Awaitable[_T]]) -> _T:
    try:
        return await store.call_endpoints(what, run)
    except EtcdCallError as error:
        raise store.refusal(what, error) from None


def _txn(compare: list[Any], success: list[Any], failure: list[Any]) -> Callable[
        [EndpointConnection, float], Awaitable[tuple[bool, int, list[KeyValue]]]]:
    async def run(conn: EndpointConnection, seconds: float) -> tuple[bool, int, list[KeyValue]]:
        return await conn.txn(compare, success, failure, seconds)
    return run


class RecordsMixin:
    """``append_record`` and ``records`` for :class:`~shoal.store.etcd.EtcdStore`."""

    async def append_record(
        self: _Plumbing, kind: str, value: bytes, *, keep: int = RECORD_KEEP
    ) -> int:
        """Append a durable record (store Rule 7; Rule 1 here); return its seq.

        Raises:
            BadArgument: ``kind``, ``value`` or ``keep`` is malformed.
            StoreUnavailable: no endpoint answered, or concurrent appends kept
                winning, before the deadline.
            StoreError: etcd refused the write.
        """
        check_record(kind, value)
        check_count("keep", keep)
        counter, prefix = _record_keys(self, kind)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CONFLICT_BUDGET
        found = await _call(self, "read the record counter", lambda c, s: c.range_prefix(
            counter, s, exact=True))
        seen: KeyValue | None = found[0][0] if found[0] else None
        delays = backoff_delays(initial=_CONFLICT_FIRST, maximum=_CONFLICT_MAX)
        while True:
            seq = (int(seen.value) if seen is not None else 0) + 1
            key = prefix + str(seq).zfill(_SEQ_DIGITS).encode()
            guard = compare_mod(counter, seen.mod_revision) if seen else compare_created(counter)
            writes = [put_op(counter, str(seq).encode(), 0), put_op(key, value, 0)]
            if seq - keep >= 1:
                writes.append(delete_range_op(prefix, prefix + str(seq - keep + 1).zfill(
                    _SEQ_DIGITS).encode()))
            reads = [range_op(counter), range_op(key)]
            ok, _, read = await _call(self, "append a record", _txn([guard], writes, reads))
            if ok:
                return seq
            mine = [kv for kv in read if kv.key == key]
            if mine and mine[0].value == value and mine[0].lease == 0:
                return seq  # our own earlier attempt landed (Rule 2)
            counters = [kv for kv in read if kv.key == counter]
            seen = counters[0] if counters else None
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StoreUnavailable(f"etcd: appending a {kind!r} record kept losing to "
                                       f"concurrent appends for {_CONFLICT_BUDGET:g}s")
            await asyncio.sleep(min(remaining, next(delays)))

    async def records(self: _Plumbing, kind: str, limit: int) -> list[Record]:
        """The newest ``limit`` records of ``kind``, newest first (Rule 3).

        Raises:
            BadArgument: ``kind`` or ``limit`` is malformed.
            StoreUnavailable: no endpoint answered before the deadline.
            StoreError: etcd refused the read.
        """
        check_record(kind, b"")
        check_count("limit", limit)
        _, prefix = _record_keys(self, kind)
        kvs = await _call(self, "read records", lambda c, s: c.range_newest(prefix, limit, s))
        return [Record(kind=kind, seq=int(kv.key[len(prefix):]), value=kv.value) for kv in kvs]
