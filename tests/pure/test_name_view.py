"""The store layout of cluster-wide names and a node's view of them (pure).

What a node relies on: a name's holder is read back exactly as written;
anything malformed from the store is skipped, never trusted (G7); changes
older than what the view holds for a name never win, so a name released on
this node is not brought back by the store's older put still on its way.
"""

from __future__ import annotations

import msgpack
import pytest

from shoal.membership.names import (
    NameView,
    decode_holder,
    encode_holder,
    name_key,
    parse_name_key,
)
from shoal.pid import Pid

A = Pid("a", 7, 1)
B = Pid("b", 9, 2)


def test_a_holder_reads_back_exactly_as_written() -> None:
    for pid in (A, B, Pid("n" * 255, 2**63 - 1, 0)):
        assert decode_holder(encode_holder(pid)) == pid
    assert name_key("billing") == "names/billing"
    assert parse_name_key("names/billing") == "billing"


@pytest.mark.parametrize("value", [
    None, b"", b"\xc1", b"not msgpack at all \xff",
    msgpack.packb(["a", 1]), msgpack.packb(["a", 1, 2, 3]), msgpack.packb({"node": "a"}),
    msgpack.packb(["", 1, 2]), msgpack.packb(["a", -1, 2]), msgpack.packb(["a", 1, 2**63]),
    msgpack.packb(["a", True, 2]), msgpack.packb([1, 1, 2]), msgpack.packb(["a", 1.5, 2]),
    msgpack.packb(["a", 1, 2]) + b"trailing",
])
def test_a_malformed_holder_is_skipped(value: bytes | None) -> None:
    assert decode_holder(value) is None


@pytest.mark.parametrize("key", ["nodes/a", "names/", "names/a/b", "names", "members/x"])
def test_a_key_that_is_no_name_is_skipped(key: str) -> None:
    assert parse_name_key(key) is None


def test_an_older_change_never_wins() -> None:
    view = NameView()
    view.put("x", A, 5)
    view.put("x", B, 4)  # older: ignored
    assert view.get("x") == A
    assert view.delete("x", 3) is None and view.get("x") == A  # older delete: ignored
    view.put("x", A, 5)  # the same change again (a watch replaying it): harmless
    assert view.delete("x", 6) == A and view.get("x") is None
    view.put("x", B, 7)
    assert view.get("x") == B and view.names() == ["x"]


def test_a_local_release_is_not_undone_by_the_stores_older_put() -> None:
    view = NameView()
    view.put("x", A, 5)  # registered here, at revision 5
    view.forget("x", A)  # released here at once; the store's delete is on its way
    assert view.get("x") is None and view.names() == []
    view.put("x", A, 5)  # the watch delivers the registration's put late
    assert view.get("x") is None
    assert view.delete("x", 6) is None  # the delete clears the tombstone
    view.put("x", B, 8)  # a newer holder is taken as usual
    assert view.get("x") == B


def test_forget_leaves_another_holder_alone() -> None:
    view = NameView()
    view.put("x", B, 5)
    view.forget("x", A)
    assert view.get("x") == B


def test_replace_takes_the_snapshot_and_skips_malformed_entries() -> None:
    view = NameView()
    view.put("old", A, 1)
    view.replace([("names/x", encode_holder(A), 3), ("names/y", b"junk", 4),
                  ("names/a/b", encode_holder(B), 5), ("names/z", encode_holder(B), 6)])
    assert view.names() == ["x", "z"]
    assert view.get("x") == A and view.get("z") == B and view.get("old") is None
