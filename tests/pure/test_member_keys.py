"""The store layout of memberships: bucket keys and their values, no IO.

Every value a node writes must read back as exactly what it holds, and
anything else found under ``scopes/`` (another program's keys, a torn or
hostile value) must read as "malformed", never as members (G7).
"""

from __future__ import annotations

import importlib.util
import json
import tracemalloc
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.membership.keys import (
    BUCKET_BITS,
    BUCKET_SIZE,
    LAYOUT,
    MemberKey,
    bucket_of,
    decode_members,
    encode_members,
    member_key,
    parse_member_key,
    scope_prefix,
)

names = st.text(min_size=1, max_size=30)


@given(node=st.text(alphabet=st.characters(blacklist_characters="/"), min_size=1, max_size=20),
       creation=st.integers(0, 2**63 - 1), scope=names, group=names,
       serial=st.integers(0, 2**63 - 1))
def test_a_key_reads_back_as_what_was_written(
        node: str, creation: int, scope: str, group: str, serial: int) -> None:
    bucket = bucket_of(serial)
    key = member_key(node, creation, scope, group, bucket)
    assert parse_member_key(key) == MemberKey(node, creation, scope, group, bucket)


@given(bucket=st.integers(0, 2**57 - 1),
       counts=st.dictionaries(st.integers(0, BUCKET_SIZE - 1), st.integers(1, 2**40)))
def test_a_bucket_value_reads_back_as_the_counts_written(
        bucket: int, counts: dict[int, int]) -> None:
    base = bucket * BUCKET_SIZE
    held = {base + offset: n for offset, n in counts.items()}
    assert decode_members(bucket, encode_members(bucket, held)) == held


@given(scope=names, other=names, node=st.text(
    alphabet=st.characters(blacklist_characters="/"), min_size=1, max_size=20),
    group=names)
def test_a_scopes_prefix_holds_its_keys_and_no_other_scopes(
        scope: str, other: str, node: str, group: str) -> None:
    # A node watches one scope's prefix: it must get every key of that scope
    # and none of any other scope (one scope's name prefixing another's too).
    assert member_key(node, 1, scope, group, 0).startswith(scope_prefix(scope))
    if other != scope:
        assert not member_key(node, 1, other, group, 0).startswith(scope_prefix(scope))


def test_serials_started_together_share_a_bucket() -> None:
    assert {bucket_of(s) for s in range(64, 128)} == {1}
    assert bucket_of(63) != bucket_of(64)


def test_a_full_bucket_stays_small() -> None:
    full = {serial: 1 for serial in range(BUCKET_SIZE)}
    assert len(encode_members(0, full)) <= BUCKET_SIZE + 3


def test_encoding_a_serial_outside_its_bucket_is_refused() -> None:
    with pytest.raises(ValueError, match="not in bucket"):
        encode_members(1, {3: 1})


@pytest.mark.parametrize("key", [
    "scopes/default/n1/1/g",                  # too few parts
    "scopes/default/n1/1/g/0/extra",          # too many
    "nodes/default/n1/1/g/0",                 # not a membership key
    "members/n1/1/default/g/0",               # layout 1: not read as layout 2
    "scopes/default//1/g/0",                  # empty node
    "scopes/default/n1/x/g/0",                # creation not a number
    "scopes/default/n1/-1/g/0",               # negative creation
    "scopes/default/n1/1/g/-3",               # negative bucket
    "scopes/default/n1/1/g/٣",                # a non-ASCII digit
    f"scopes/default/n1/{2**63}/g/0",         # creation out of range
    f"scopes/default/n1/1/g/{2**57}",         # its serials would pass 2**63
    "scopes/default/n1/1/g/99999999999999999999",
])
def test_malformed_keys_are_not_read_as_memberships(key: str) -> None:
    assert parse_member_key(key) is None


@pytest.mark.parametrize("value", [
    b"",                                      # empty
    b"\xc1",                                  # never-used msgpack byte
    msgpack.packb(3),                         # the count of an older layout
    msgpack.packb({"0": 1}),                  # a map
    msgpack.packb([0, 64]),                   # offset past the bucket
    msgpack.packb([-1]),                      # negative offset
    msgpack.packb([1.0]),                     # not an int
    msgpack.packb([True]),                    # a bool is not an offset
    msgpack.packb([0]) + b"\x00",             # trailing bytes
    msgpack.packb([[3, 0]]),                  # joined zero times
    msgpack.packb([[3, -2]]),                 # joined negative times
    msgpack.packb([[3]]),                     # a pair without its count
    msgpack.packb([[3, 2, 1]]),               # a pair with too much
    msgpack.packb([[64, 2]]),                 # a pair past the bucket
    msgpack.packb([[3, 2.0]]),                # a count that is not an int
    msgpack.packb([0] * 65),                  # more members than a bucket holds
    msgpack.packb([True]),                    # a bool is no offset
    msgpack.packb([1, -1]),                   # an offset below the bucket
    msgpack.packb([1, 300]),                  # an offset past a byte
])
def test_malformed_values_are_not_read_as_members(value: bytes) -> None:
    assert decode_members(0, value) is None


def test_a_pid_joined_many_times_costs_one_element() -> None:
    value = encode_members(0, {5: 1_000_000, 6: 1})
    assert len(value) < 16
    assert decode_members(0, value) == {5: 1_000_000, 6: 1}


def test_a_value_out_of_order_or_with_repeats_reads_as_the_sum_of_its_joins() -> None:
    # Written by another implementation, or by hand: still one count per serial.
    counts = decode_members(1, msgpack.packb([3, 1, 3, [2, 4]]))
    assert counts == {65: 1, 66: 4, 67: 2}
    assert counts is not None and 66 in counts and 64 not in counts and counts.get(64) is None
    assert sorted(counts.items()) == [(65, 1), (66, 4), (67, 2)]


def test_a_bucket_as_a_peer_keeps_it_costs_a_few_bytes_per_member() -> None:
    # Every node keeps every followed peer's buckets: as dicts they cost ~35
    # bytes per member (a quarter of the budget per remote member).
    values = [encode_members(b, {(b << 6) + k: 1 for k in range(64)}) for b in range(100)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [decode_members(b, v) for b, v in enumerate(values)]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert all(len(c or ()) == 64 for c in kept)
    assert grown / (64 * len(values)) < 4


def test_an_empty_bucket_holds_no_members() -> None:
    assert decode_members(5, msgpack.packb([])) == {}


STORE_VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "store_vectors.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("vector", STORE_VECTORS["members"], ids=lambda v: v["note"])
def test_the_published_store_vectors_hold(vector: dict[str, Any]) -> None:
    # docs/protocol.md (section 8) quotes these; other implementations test against them.
    joins = {int(serial): n for serial, n in vector["joins"].items()}
    key = member_key(vector["node"], vector["creation"], vector["scope"], vector["group"],
                     vector["bucket"])
    assert key == vector["key"]
    assert encode_members(vector["bucket"], joins).hex() == vector["value_hex"]
    assert parse_member_key(vector["key"]) == MemberKey(
        vector["node"], vector["creation"], vector["scope"], vector["group"], vector["bucket"])
    assert decode_members(vector["bucket"], bytes.fromhex(vector["value_hex"])) == joins
    assert key.startswith(vector["scope_prefix"]) and scope_prefix(vector["scope"]) == (
        vector["scope_prefix"])


def test_the_store_vectors_are_what_make_vectors_writes() -> None:
    assert STORE_VECTORS["layout"] == LAYOUT
    spec = importlib.util.spec_from_file_location(
        "make_vectors", Path(__file__).parent / "vectors" / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build_store() == STORE_VECTORS


def test_the_last_bucket_a_pid_can_fill_is_read_and_the_next_is_not() -> None:
    # The table keeps serials in 64-bit arrays, as a pid's range promises
    # (below 2**63): a key past it is malformed and skipped, never applied.
    last = ((1 << 63) - 1) >> BUCKET_BITS
    assert parse_member_key(f"scopes/default/n1/1/g/{last}") is not None
    assert parse_member_key(f"scopes/default/n1/1/g/{last + 1}") is None
