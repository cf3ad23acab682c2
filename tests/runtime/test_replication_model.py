"""The view a node builds from the store equals the store, whatever the order.

A model check: hypothesis drives a node's replication with any sequence of
store changes from two peers (membership buckets of two incarnations, node
records appearing, changing creation and vanishing, and full re-syncs), and
after every step the node's group table must hold exactly the members the
store describes: the buckets of each peer's *current* incarnation (Rule 1:
replaced, never merged; Rule 2: only the store's word removes a member).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shoal
from shoal.membership.keys import BUCKET_SIZE, encode_members, member_key
from shoal.store import MemoryStore
from shoal.store.base import Entry, Event, Snapshot

PEERS = ("p", "q")
GROUPS = ("g", "h")


def _record(name: str, creation: int) -> bytes:
    packed: bytes = msgpack.packb({"name": name, "creation": creation,
                                   "host": "127.0.0.1", "port": 9})
    return packed


GHOST = 999  # a creation no peer ever has: a stray writer's keys (G7)
offsets = st.dictionaries(st.integers(0, 5), st.integers(1, 3), min_size=1)
steps = st.lists(st.one_of(
    st.tuples(st.just("up"), st.sampled_from(PEERS)),
    st.tuples(st.just("down"), st.sampled_from(PEERS), st.booleans()),
    st.tuples(st.just("bucket"), st.sampled_from(PEERS), st.sampled_from(GROUPS),
              st.sampled_from((0, 1)), offsets),
    st.tuples(st.just("unbucket"), st.sampled_from(PEERS), st.sampled_from(GROUPS),
              st.sampled_from((0, 1))),
    st.tuples(st.just("ghost"), st.sampled_from(PEERS), st.sampled_from(GROUPS), offsets),
    st.tuples(st.just("resync")),
), min_size=8, max_size=50).map(lambda ops: [("up", "p"), ("up", "q"), *ops])


def _expected(store: dict[str, bytes], group: str) -> Counter[shoal.Pid]:
    want: Counter[shoal.Pid] = Counter()
    for name in PEERS:
        record = store.get(f"nodes/{name}")
        if record is None:
            continue
        creation = msgpack.unpackb(record)["creation"]
        for bucket in (0, 1):
            value = store.get(member_key(name, creation, "default", group, bucket))
            for member in msgpack.unpackb(value) if value is not None else []:
                offset, joins = member if isinstance(member, list) else (member, 1)
                want[shoal.Pid(name, creation, bucket * BUCKET_SIZE + offset)] += joins
    return want


class StoreModel:
    """The store's contents, changed only as a real store changes them: a
    node writes keys of its current incarnation while its session lives,
    and the session's end deletes its record and keys in one revision."""

    def __init__(self) -> None:
        self.entries: dict[str, bytes] = {}
        self.creations: dict[str, int] = {}
        self.up: set[str] = set()

    def step(self, op: tuple[Any, ...]) -> list[tuple[str, str, bytes | None]] | None:
        """Apply one step; the events it makes, or None for a re-sync."""
        kind, *args = op
        if kind == "resync":
            return None
        events: list[tuple[str, str, bytes | None]] = []
        if kind == "up" and args[0] not in self.up:
            name = args[0]
            self.creations[name] = creation = self.creations.get(name, 0) + 1
            self.up.add(name)
            events.append(("put", f"nodes/{name}", _record(name, creation)))
        elif kind == "down" and args[0] in self.up:
            name, record_first = args
            self.up.discard(name)
            mine = f"scopes/default/{name}/{self.creations[name]}/"
            keys = sorted(k for k in self.entries if k.startswith(mine))
            keys = [f"nodes/{name}", *keys] if record_first else [*keys, f"nodes/{name}"]
            events.extend(("delete", k, None) for k in keys)
        elif kind == "bucket" and args[0] in self.up:
            name, group, bucket, joins = args
            key = member_key(name, self.creations[name], "default", group, bucket)
            value = encode_members(bucket, {bucket * BUCKET_SIZE + o: n
                                            for o, n in joins.items()})
            events.append(("put", key, value))
        elif kind == "unbucket" and args[0] in self.up:
            name, group, bucket = args
            key = member_key(name, self.creations[name], "default", group, bucket)
            if key in self.entries:
                events.append(("delete", key, None))
        elif kind == "ghost":
            name, group, joins = args
            events.append(("put", member_key(name, GHOST, "default", group, 0),
                           encode_members(0, joins)))
        for event, key, value in events:
            if event == "put":
                assert value is not None
                self.entries[key] = value
            else:
                self.entries.pop(key, None)
        return events


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps)
async def test_the_view_equals_the_store_after_any_sequence_of_changes(
        steps: list[tuple[Any, ...]]) -> None:
    async with shoal.Node("me", store=MemoryStore(), listen=None) as node:
        replication = node._replication
        assert replication is not None
        model = StoreModel()
        revision = 10**6  # far above the node's own store, so nothing is stale
        for op in steps:
            revision += 1
            events = model.step(op)
            following = replication.following
            if events is None:
                # A re-sync of every stream (nodes/ and the default scope's).
                for prefix, stream in following.streams.items():
                    await following._resync(stream, Snapshot(
                        entries={k: Entry(key=k, value=v, session="s", revision=revision)
                                 for k, v in model.entries.items() if k.startswith(prefix)},
                        revision=revision))
            for kind, key, value in events or ():
                event = Event(kind=kind, key=key, value=value,  # type: ignore[arg-type]
                              session="s" if kind == "put" else None, revision=revision)
                if key.startswith("nodes/"):
                    following._apply_node(event)
                else:
                    following._apply_member(key, value, revision, [])
            for group in GROUPS:
                assert Counter(node.groups.get_members(group)) == _expected(
                    model.entries, group)
