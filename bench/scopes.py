"""What a node pays for the scopes it does not follow: nothing, measured.

Usage::

    python bench/scopes.py                      # 100 scopes, 20 nodes, 500 members each
    python bench/scopes.py --members 1000

A store (an in-memory store object, so the figures are shoal's work alone)
holds ``--scopes`` scopes, each with ``--nodes`` nodes of ``--members``
members in one group (64-member buckets, the dense layout). One observer
node starts following *one* scope, another following *every* scope, on the
real start-up and watch path. Then a wave: every member key of every scope
is rewritten once (a whole fleet redeployed), and each observer is timed
until its watch has applied the wave's last revision in what it follows.

Prints ``name: value`` lines, for 1 scope followed and for all:

- ``start_s_*``: start-up (session, snapshots of the followed prefixes, applied);
- ``memory_mb_*``: Python memory the node holds after start (tracemalloc,
  table and replication records);
- ``wave_events_*``: watch events the node decoded for the wave;
- ``wave_apply_s_*``: time from the wave's first write until the node has
  applied it (the in-memory store's writes included, the same for both);
- ``followed_share_pct``: the share of the fleet's members followed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc

import shoal
from shoal.membership.keys import BUCKET_SIZE, encode_members, member_key
from shoal.runtime.node_info import node_info
from shoal.store import MemoryStore
from shoal.store.base import Put, Session
from shoal.testing.cluster import wait_until

SECRET = "bench-scopes-secret-0123456789abcdef"


def _scope(i: int) -> str:
    return "default" if i == 0 else f"s{i:03d}"


def _ops(scopes: int, nodes: int, members: int, wave: int) -> list[Put]:
    ops: list[Put] = []
    for s in range(scopes):
        for n in range(nodes):
            name, creation = f"peer{n:03d}", 1000 + n
            for bucket in range(members // BUCKET_SIZE + (members % BUCKET_SIZE > 0)):
                first = bucket * BUCKET_SIZE
                counts = {x: 1 + wave for x in range(max(first, 1),
                                                     min(first + BUCKET_SIZE, members + 1))}
                if counts:
                    ops.append(Put(key=member_key(name, creation, _scope(s), "g", bucket),
                                   value=encode_members(bucket, counts)))
    return ops


async def _apply(session: Session, ops: list[Put]) -> None:
    for at in range(0, len(ops), 512):
        await session.apply(ops[at:at + 512])


async def _observer(store: MemoryStore, name: str, scopes: list[str]
                    ) -> tuple[shoal.Node, float, float]:
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    began = time.perf_counter()
    node = shoal.Node(name, store=store.another_client(), listen=None, secret=SECRET)
    for scope in scopes:
        node.scope(scope)
    await node.start()
    took = time.perf_counter() - began
    gc.collect()
    return node, took, (tracemalloc.get_traced_memory()[0] - before) / 1e6


def _events(node: shoal.Node) -> int:
    replication = node._replication
    assert replication is not None
    return sum(s.events for s in replication.following.streams.values()
               if s.scope is not None)


async def main_async(args: argparse.Namespace) -> None:
    store = MemoryStore()
    seeder = await store.open_session("seeder", b"", 3600.0)
    ops = [Put(key=f"nodes/peer{n:03d}", value=node_info(
        f"peer{n:03d}", 1000 + n, 3600.0, "127.0.0.1", 9, as_given=True))
        for n in range(args.nodes)]
    await seeder.apply(ops)
    await _apply(seeder, _ops(args.scopes, args.nodes, args.members, 0))
    tracemalloc.start()
    one, one_start, one_mb = await _observer(store, "one", [])
    every, all_start, all_mb = await _observer(
        store, "every", [_scope(s) for s in range(args.scopes)])
    assert len(one.groups.get_members("g")) == args.nodes * args.members
    tracemalloc.stop()
    print(f"followed_share_pct: {100 / args.scopes:.1f}")
    print(f"start_s_1_scope: {one_start:.3f}")
    print(f"start_s_all_{args.scopes}: {all_start:.3f}")
    print(f"memory_mb_1_scope: {one_mb:.1f}")
    print(f"memory_mb_all_{args.scopes}: {all_mb:.1f}")
    for node in (one, every):
        await node.stop()
    # A wave per observer, each alone in the process: every member key of
    # every scope rewritten once; the clock runs from the first write until
    # the observer has applied the last revision in what it follows (the
    # store's own writes are in it, the same for both).
    for wave, label, scopes in ((1, "1_scope", []),
                                (2, f"all_{args.scopes}",
                                 [_scope(s) for s in range(args.scopes)])):
        node, _, _ = await _observer(store, f"wave{wave}", scopes)
        base = _events(node)
        ops = _ops(args.scopes, args.nodes, args.members, wave)
        expected = base + len(ops) * max(1, len(scopes)) // args.scopes
        began = time.perf_counter()
        await _apply(seeder, ops)
        await wait_until(lambda n=node, e=expected: _events(n) >= e, timeout=600,
                         interval=0.001, what="the wave applied")
        print(f"wave_apply_s_{label}: {time.perf_counter() - began:.3f}")
        print(f"wave_events_{label}: {_events(node) - base}")
        await node.stop()
    await seeder.close()
    await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scopes", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--members", type=int, default=500)
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
