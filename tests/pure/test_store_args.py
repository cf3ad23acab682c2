"""Pure parts of the store layer: argument checks, store URLs, WatchView.

No event loop and no files: open_store does no IO, and WatchView is fed
hand-built watch items.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.errors import BadArgument
from shoal.store import (
    DEFAULT_SQLITE_PATH,
    Changes,
    Delete,
    Entry,
    Event,
    MemoryStore,
    Put,
    Resync,
    Snapshot,
    SqliteStore,
    open_store,
)
from shoal.store._validate import check_name, check_ops, check_revision, check_ttl
from shoal.store.sqlite._read import prefix_range as _prefix_range
from shoal.testing.view import WatchOrderError, WatchView


@pytest.mark.parametrize(
    ("value", "argument"),
    [("", "name"), ("a/b", "name"), (7, "name"), ("x" * 256, "name"), ("tab\there", "name")],
)
def test_bad_session_name_is_rejected_naming_name(value: Any, argument: str) -> None:
    with pytest.raises(BadArgument) as caught:
        check_name(value)
    assert caught.value.argument == argument


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), "1", True, None])
def test_ttl_must_be_a_finite_positive_number(ttl: Any) -> None:
    with pytest.raises(BadArgument) as caught:
        check_ttl(ttl)
    assert caught.value.argument == "ttl"


@pytest.mark.parametrize(
    ("ops", "argument"),
    [
        ([Put(key=1, value=b"")], "key"),  # type: ignore[arg-type]
        ([Put(key="", value=b"")], "key"),
        ([Put(key="k", value="text")], "value"),  # type: ignore[arg-type]
        ([Put(key="k", value=bytearray(b"x"))], "value"),  # type: ignore[arg-type]
        ([Delete(key=None)], "key"),  # type: ignore[arg-type]
        ([Put(key="\ud800", value=b"")], "key"),
        ("k", "ops"),
        (b"k", "ops"),
        ([("k", b"v")], "ops"),
        ([Put(key="k", value=b""), Delete(key="k")], "ops"),
        (None, "ops"),
    ],
)
def test_malformed_batch_is_rejected_naming_the_argument(ops: Any, argument: str) -> None:
    with pytest.raises(BadArgument) as caught:
        check_ops(ops)
    assert caught.value.argument == argument


def test_well_formed_batch_comes_back_as_a_tuple() -> None:
    ops = [Put(key="a", value=b"1"), Delete(key="b")]
    assert check_ops(ops) == tuple(ops)
    assert check_ops([]) == ()


@pytest.mark.parametrize("revision", [-1, "0", 1.0, True])
def test_watch_revision_must_be_a_non_negative_int(revision: Any) -> None:
    with pytest.raises(BadArgument):
        check_revision(revision)


def test_empty_url_means_sqlite_at_the_default_path() -> None:
    for url in (None, ""):
        store = open_store(url)
        assert isinstance(store, SqliteStore)
        assert store.path == DEFAULT_SQLITE_PATH.absolute()


def test_sqlite_urls_take_absolute_and_relative_paths() -> None:
    absolute = open_store("sqlite:///var/lib/shoal/c.db")
    relative = open_store("sqlite://data/c.db")
    assert isinstance(absolute, SqliteStore) and absolute.path == Path("/var/lib/shoal/c.db")
    assert isinstance(relative, SqliteStore) and relative.path == Path("data/c.db").absolute()


def test_memory_url_gives_a_memory_store() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)


@pytest.mark.parametrize(
    "url",
    ["redis://x", "memory", "sqlite://", "sqlite:///", "etcd://", "/tmp/x.db", "sqlite://a?b"],
)
def test_unknown_url_is_rejected_naming_the_url_and_the_forms(url: str) -> None:
    with pytest.raises(BadArgument) as caught:
        open_store(url)
    assert caught.value.argument == "url"
    assert "memory://" in str(caught.value) and "etcd://" in str(caught.value)


def _put(key: str, rev: int) -> Event:
    return Event(kind="put", key=key, value=b"v", session="s", revision=rev)


def test_view_applies_changes_and_replaces_itself_on_resync() -> None:
    view = WatchView(0)
    view.apply(Changes(events=(_put("a", 1), _put("b", 1)), revision=1))
    delete = Event(kind="delete", key="a", value=None, session=None, revision=2)
    view.apply(Changes(events=(delete,), revision=2))
    assert set(view.view) == {"b"} and view.position == 2
    fresh = {"z": Entry(key="z", value=b"", session="t", revision=9)}
    view.apply(Resync(snapshot=Snapshot(entries=fresh, revision=9)))
    assert view.view == fresh and view.position == 9 and view.resyncs == 1


@pytest.mark.parametrize(
    "item",
    [
        Changes(events=(), revision=5),
        Changes(events=(_put("a", 5),), revision=6),
        Changes(events=(_put("a", 4),), revision=4),
        Changes(events=(_put("a", 7), _put("b", 6)), revision=6),
        Resync(snapshot=Snapshot(entries={}, revision=3)),
    ],
)
def test_view_rejects_items_that_break_the_order(item: Changes | Resync) -> None:
    view = WatchView(4)
    with pytest.raises(WatchOrderError):
        view.apply(item)
    assert view.position == 4 and not view.events


@given(st.text(max_size=6))
def test_prefix_range_holds_exactly_the_keys_with_the_prefix(prefix: str) -> None:
    low, high = _prefix_range(prefix)
    for key in (prefix, prefix + "a", prefix + "\U0010ffff", prefix[:-1], prefix + "\x00"):
        inside = key >= low and (high is None or key < high)
        encoded = key.encode("utf-8", "surrogatepass")
        assert inside == key.startswith(prefix), (prefix, key, encoded)
