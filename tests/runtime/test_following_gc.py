"""A node following many remote members keeps no object per member (nor per
store bucket) that CPython's garbage collector tracks.

With a ``Pid`` stored per member (a tuple subclass, which the collector
never untracks) and three objects per bucket, a node seeing 1M members held
about 1M tracked objects: a table growing from empty at start-up crossed
the full-collection threshold and the last collection walked them all, a
113 ms stall (issue 17, docs/scale.md). The stall itself is
``bench/scale.py``'s ``resync_1m_max_block_ms``; here the cause is counted.
"""

from __future__ import annotations

import gc

import shoal
from shoal.membership.keys import BUCKET_SIZE, encode_members, member_key
from shoal.runtime.node_info import node_info
from shoal.store import MemoryStore
from shoal.store.base import Put, Session
from shoal.testing.cluster import wait_until

SECRET = "following-gc-secret-0123456789abcdef"
NODES = 20


def _bucket(n: int, bucket: int, serials: range) -> Put:
    return Put(key=member_key(f"peer{n:02d}", 1000 + n, "default", "g", bucket),
               value=encode_members(bucket, dict.fromkeys(serials, 1)))


async def _seed(store: MemoryStore, per_node: int) -> Session:
    session = await store.open_session("seeder", node_info(
        "seeder", 1, 600.0, "127.0.0.1", 9, as_given=True), 600.0)
    for n in range(NODES):
        name, creation = f"peer{n:02d}", 1000 + n
        ops = [Put(key=f"nodes/{name}",
                   value=node_info(name, creation, 600.0, "127.0.0.1", 9, as_given=True))]
        ops += [_bucket(n, b, range(max(b * BUCKET_SIZE, 1), (b + 1) * BUCKET_SIZE))
                for b in range(per_node // BUCKET_SIZE)]
        await session.apply(ops)
    return session


async def _tracked_by_node(per_node: int) -> int:
    """Tracked objects a node holds once it followed NODES x ~per_node
    members: the start-up snapshot, then one bucket per node applied live."""
    store = MemoryStore()
    seeder = await _seed(store, per_node)
    node = shoal.Node("observer", store=store, listen=None, secret=SECRET)
    try:
        gc.collect()
        before = len(gc.get_objects())
        await node.start()
        live = per_node // BUCKET_SIZE
        await seeder.apply([_bucket(n, live, range(live * BUCKET_SIZE, (live + 1) * BUCKET_SIZE))
                            for n in range(NODES)])
        expected = NODES * (per_node - 1 + BUCKET_SIZE)
        await wait_until(lambda: len(node.groups.get_members("g")) == expected, timeout=30,
                         what="every member applied")
        members = node.groups.get_members("g")
        assert {type(p) for p in members} == {shoal.Pid}
        assert type(node.groups.select("g")) is shoal.Pid
        del members
        gc.collect()
        return len(gc.get_objects()) - before
    finally:
        await node.stop()
        await seeder.close()
        await store.close()


async def test_members_followed_add_no_object_the_garbage_collector_tracks() -> None:
    small = await _tracked_by_node(BUCKET_SIZE)  # 1 bucket per node: ~2,500 members
    large = await _tracked_by_node(40 * BUCKET_SIZE)  # 40 per node: ~52,500 members
    # One Pid per member and three objects per bucket were +50,000 and +2,300.
    assert large - small < 300, (small, large)
