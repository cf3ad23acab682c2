"""Reading a store snapshot into a node's view, in slices.

A re-sync (the start-up snapshot, a watch that fell behind a compaction, a
failed apply) reads every key of a stream (``nodes/``, or one followed
scope: ``following.py``): at 1M members that is seconds of decoding and
table work. Done in one piece it held the event loop longer
than the store session's TTL, so the node's own keepalive did not run and
its session expired. Here the work is cut into slices of at most
:data:`SLICE` seconds, each followed by a yield to the loop
(:class:`Slicer`), so other tasks, the keepalive first, keep running.

Rules:

- Rule 1: the snapshot is read *aside*: :func:`read_nodes` and
  :func:`read_members` only build new structures from an immutable
  snapshot and touch no live state, so
  callers see the old view, whole, while it runs.
- Rule 2: the view is then replaced one node at a time (``Following``'s
  re-syncs), each node's members in one step (``GroupTable.replace_node``,
  never half a node). Mid-re-sync a caller may meet some nodes' new views
  and others' old ones, each consistent; once the re-sync returns, no member
  the snapshot lacks is left (Rule 1 of the replication: replaced, never
  merged).
- Rule 3: nothing here keeps state between re-syncs; malformed keys and
  values are skipped (the caller's Rule 4), as they always were.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from shoal.membership.keys import Members, decode_members, parse_member_key
from shoal.runtime.node_info import parse_info
from shoal.runtime.peers import PeerInfo
from shoal.store.base import Entry, Snapshot

__all__ = ["SLICE", "Bucket", "MembersView", "NodeEntries", "NodesView", "Slicer",
           "bucket_counts", "read_members", "read_nodes"]

# Seconds of work before yielding to the event loop. 20 ms slices left
# 40-60 ms gaps on a loaded host (bench/scale.py); 5 ms none over 30 ms.
SLICE = 0.005

Bucket = tuple[int, str, str, int, bytes, tuple[int, ...] | None]
"""One member bucket as a node keeps it: ``(creation, scope, group, *Members.raw())``.
An exact tuple of atomic values, which CPython's collector untracks: a node
following 1M members keeps ~16,000 of them, and as a ``MemberKey``, a
``Members`` and the tuple pairing them they were 48,000 tracked objects for
every full collection to walk (docs/scale.md)."""
NodeEntries = dict[str, dict[str, Bucket]]


def bucket_counts(bucket: Bucket) -> Members:
    """serial -> join count of a kept bucket."""
    return Members(bucket[3], bucket[4], bucket[5])


class Slicer:
    """Yields to the event loop once :data:`SLICE` seconds of work passed."""

    __slots__ = ("_budget", "_end", "_loop")

    def __init__(self, budget: float = SLICE) -> None:
        self._loop = asyncio.get_running_loop()
        self._budget = budget
        self._end = self._loop.time() + budget

    async def pause(self) -> None:
        """Let other tasks run if this slice is used up (cheap otherwise)."""
        if self._loop.time() >= self._end:
            await asyncio.sleep(0)
            self._end = self._loop.time() + self._budget


@dataclass(slots=True)
class NodesView:
    """What a snapshot of ``nodes/`` says, for one node (``name``).

    Attributes:
        record: our own ``nodes/<name>`` entry, if any.
        nodes: every other node registered, by name.
    """

    record: Entry | None = None
    nodes: dict[str, PeerInfo] = field(default_factory=dict)


@dataclass(slots=True)
class MembersView:
    """What a snapshot of one scope's prefix says, for one node (``name``,
    incarnation ``creation``).

    Attributes:
        entries: every other node's non-empty member buckets: node ->
            {key -> :data:`Bucket`}.
        own: our own incarnation's member keys -> (value, revision).
    """

    entries: NodeEntries = field(default_factory=dict)
    own: dict[str, tuple[bytes, int]] = field(default_factory=dict)


async def read_nodes(snapshot: Snapshot, name: str, slicer: Slicer) -> NodesView:
    """Decode a snapshot of ``nodes/`` aside (Rule 1), yielding between slices."""
    view = NodesView(record=snapshot.entries.get(f"nodes/{name}"))
    for key, entry in snapshot.entries.items():
        await slicer.pause()
        if key.startswith("nodes/"):
            node = key[len("nodes/"):]
            if node != name:
                info = parse_info(node, entry.value)
                if info is not None:
                    view.nodes[node] = info
    return view


async def read_members(snapshot: Snapshot, name: str, creation: int,
                       slicer: Slicer) -> MembersView:
    """Decode a snapshot of membership keys aside (Rule 1), yielding between slices."""
    view = MembersView()
    for key, entry in snapshot.entries.items():
        await slicer.pause()
        parsed = parse_member_key(key)
        if parsed is None:
            continue
        if parsed.node == name:
            if parsed.creation == creation:
                view.own[key] = (entry.value, entry.revision)
            continue
        counts = decode_members(parsed.bucket, entry.value)
        if counts:
            view.entries.setdefault(parsed.node, {})[key] = (
                parsed.creation, parsed.scope, parsed.group, *counts.raw())
    return view
