"""How memberships are laid out in the store: keys and values, no IO.

A node writes its own processes' memberships in *buckets*: one key per
(scope, node incarnation, group, bucket), where a bucket covers 64
consecutive serials of that incarnation::

    scopes/<scope>/<node>/<creation>/<group>/<bucket>

``scope`` and ``group`` are percent-encoded, so any string is a valid name
(and ``scopes/<scope>/`` is the prefix of exactly one scope's keys: a node
watches only the scopes it uses); ``bucket`` is ``serial >> 6``. This is
layout 2 (:data:`LAYOUT`); layout 1 put the scope after the incarnation
(``members/<node>/<creation>/<scope>/...``), so no prefix held one scope.

The value is a msgpack array with one element per member, in ascending
order of its offset in the bucket (``serial - bucket * 64``): the offset
itself for a member joined once, or ``[offset, joins]`` for one joined more
often (so a value stays small however often a pid joins). A key with no
members is deleted, never written empty.

Why buckets and not one key per membership: a node that starts 2,000
workers in a group writes about 32 keys instead of 2,000, and every other
node decodes 32 watch events instead of 2,000. Serials are handed out in
order, so processes started together share buckets. The cost is bounded:
a join rewrites one bucket of at most 64 offsets (about 70 bytes).
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, Mapping
from itertools import chain, repeat
from typing import NamedTuple
from urllib.parse import quote, unquote

import msgpack

__all__ = ["BUCKET_BITS", "BUCKET_SIZE", "LAYOUT", "PREFIX", "MemberKey", "Members",
           "bucket_of", "decode_members", "each_join", "encode_members", "member_key",
           "merge_counts", "parse_member_key", "scope_prefix"]

BUCKET_BITS = 6
BUCKET_SIZE = 1 << BUCKET_BITS
PREFIX = "scopes/"
LAYOUT = 2
_LAST_BUCKET = ((1 << 63) - 1) >> BUCKET_BITS  # the bucket of the highest serial a pid can have
"""The membership layout this code writes and reads (in each node's record)."""


class MemberKey(NamedTuple):
    """The parts of one membership key."""

    node: str
    creation: int
    scope: str
    group: str
    bucket: int


def bucket_of(serial: int) -> int:
    """The bucket a serial belongs to."""
    return serial >> BUCKET_BITS


def scope_prefix(scope: str) -> str:
    """The prefix of every membership key of ``scope``, and of no other's."""
    return f"{PREFIX}{quote(scope, safe='')}/"


def member_key(node: str, creation: int, scope: str, group: str, bucket: int) -> str:
    """The store key of one bucket of one group's members on one incarnation."""
    return (f"{scope_prefix(scope)}{node}/{creation}/"
            f"{quote(group, safe='')}/{bucket}")


def parse_member_key(key: str) -> MemberKey | None:
    """Split a membership key; None when it is not one (malformed)."""
    parts = key.split("/")
    if len(parts) != 6 or parts[0] != "scopes" or not parts[2]:
        return None
    creation, bucket = parts[3], parts[5]
    if not (creation.isdigit() and bucket.isdigit() and creation.isascii()
            and bucket.isascii()):
        return None
    number = int(creation)
    if number >= 1 << 63 or len(bucket) > 19 or int(bucket) > _LAST_BUCKET:
        return None  # a pid's creation and serial are below 2**63 (stored in 64-bit arrays)
    return MemberKey(parts[2], number, unquote(parts[1]), unquote(parts[4]), int(bucket))


def encode_members(bucket: int, counts: Mapping[int, int]) -> bytes:
    """The value of a bucket: ``counts`` maps serial -> join count (> 0)."""
    base = bucket << BUCKET_BITS
    members: list[int | list[int]] = []
    for serial in sorted(counts):
        offset = serial - base
        if not 0 <= offset < BUCKET_SIZE:
            raise ValueError(f"serial {serial} is not in bucket {bucket}")
        joins = counts[serial]
        members.append(offset if joins == 1 else [offset, joins])
    packed: bytes = msgpack.packb(members)
    return packed


class Members(Mapping[int, int]):
    """serial -> join count of one bucket, as :func:`decode_members` reads
    it: a read-only mapping kept compact, since a node keeps one for every
    bucket of every peer it follows. One byte per member (its offset) and a
    tuple of counts only when a member joined more than once: ~2 bytes per
    member where a dict cost ~35 (docs/performance.md). Equal to a dict of
    the same items."""

    __slots__ = ("_base", "_joins", "_offsets")

    def __init__(self, base: int, offsets: bytes, joins: tuple[int, ...] | None) -> None:
        # Invariant: offsets are distinct, each < BUCKET_SIZE; joins[i]
        # counts offsets[i]'s joins, or is None when every count is 1.
        self._base = base
        self._offsets = offsets
        self._joins = joins

    def _index(self, serial: object) -> int:
        if type(serial) is not int:
            return -1
        offset = serial - self._base
        return self._offsets.find(offset) if 0 <= offset < BUCKET_SIZE else -1

    def __getitem__(self, serial: int) -> int:
        i = self._index(serial)
        if i < 0:
            raise KeyError(serial)
        return 1 if self._joins is None else self._joins[i]

    def __contains__(self, serial: object) -> bool:
        return self._index(serial) >= 0

    def __iter__(self) -> Iterator[int]:
        return map(self._base.__add__, self._offsets)

    def __len__(self) -> int:
        return len(self._offsets)

    def items(self) -> ItemsView[int, int]:
        return _Items(self)

    def raw(self) -> tuple[int, bytes, tuple[int, ...] | None]:
        """``(base, offsets, joins)``, as :class:`Members` takes them: atomic
        values a holder can keep in an exact tuple, which CPython's collector
        untracks (a ``Members`` is an object it always tracks)."""
        return self._base, self._offsets, self._joins

    def joined(self) -> Iterator[int]:
        """Each serial once per join, at C speed."""
        joins = self._joins
        return iter(self) if joins is None else chain.from_iterable(map(repeat, self, joins))

    def pairs(self) -> Iterator[tuple[int, int]]:
        """(serial, joins) of every member, at C speed."""
        joins = self._joins
        return zip(self, repeat(1) if joins is None else joins, strict=False)

    def __repr__(self) -> str:
        return f"Members({dict(self.items())!r})"


def merge_counts(maps: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """serial -> joins summed over ``maps`` (a group's buckets hold distinct
    serials, so usually merged at C speed)."""
    out: dict[int, int] = {}
    for counts in maps:
        if out.keys().isdisjoint(counts):
            out.update(counts.items())
        else:
            for serial, n in counts.items():
                out[serial] = out.get(serial, 0) + n
    return out


def each_join(counts: Mapping[int, int]) -> Iterator[int]:
    """Each serial of ``counts`` once per join."""
    if isinstance(counts, Members):
        return counts.joined()
    return chain.from_iterable(map(repeat, counts, counts.values()))


class _Items(ItemsView[int, int]):
    _mapping: Members

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return self._mapping.pairs()


def decode_members(bucket: int, value: bytes) -> Members | None:
    """serial -> join count from a bucket's value; None when malformed."""
    try:
        members = msgpack.unpackb(value)
    except Exception:
        return None
    if type(members) is not list or len(members) > BUCKET_SIZE:
        return None  # not a bucket, or more members than a bucket holds
    base = bucket << BUCKET_BITS
    if set(map(type, members)) <= {int}:  # offsets only: the usual value
        try:
            offsets = bytes(members)
        except ValueError:
            return None  # an offset below 0 or past a byte
        if not offsets or (max(offsets) < BUCKET_SIZE
                           and len(set(offsets)) == len(offsets)):
            return Members(base, offsets, None)
    counts: dict[int, int] = {}
    for member in members:
        if type(member) is int:
            offset, joins = member, 1
        elif (type(member) is list and len(member) == 2 and type(member[0]) is int
              and type(member[1]) is int):
            offset, joins = member
            if not 1 <= joins < 1 << 63:
                return None
        else:
            return None
        if not 0 <= offset < BUCKET_SIZE:
            return None
        counts[offset] = counts.get(offset, 0) + joins
    held = sorted(counts)
    many = tuple(counts[o] for o in held)
    return Members(base, bytes(held), many if any(n != 1 for n in many) else None)
