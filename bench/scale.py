"""Scale benchmark: the etcd figures of a large fleet, on a real etcd.

Usage::

    python bench/scale.py                 # a throwaway etcd on loopback
    python bench/scale.py --keys 5000     # a larger change set

Prints ``name: value`` lines:

- ``etcd_deliveries_per_s_10_watchers``: one session writes ``--keys`` keys,
  updates each once and deletes each (batches of 128 operations, as a node's
  writer does), so a third of the events are deletes and a third updates:
  the events whose previous value etcd would look up if a watch asked for
  ``prev_kv``. Then 10 watches through ``EtcdStore.watch`` (the adapter's
  real code path, in this process) read all of it from the first
  revision; the figure is the events delivered to all 10, divided by the
  time until the last watcher saw the last revision.
- ``etcd_snapshot_1m_s`` (``_cpu_s``) and ``etcd_snapshot_1m_100_groups_s``:
  the etcd half of a start-up re-sync: the adapter reads the scope's
  membership keys of ``--nodes x --per-node`` members (16 or 100 keys per
  node) in its pages, at one revision (the in-memory figures below are the
  other half, shoal's decoding and applying).
- ``etcd_db_mb_after_50_rolling_restarts`` and
  ``etcd_db_mb_after_50_rolling_restarts_uncompacted``: growth of etcd's
  database file (status ``dbSize``) over 50 rolling re-registrations of a
  20-node cluster (each node a store client: close its session, open a new
  one, write 20 member keys of 1 KiB), with shoal's compaction duty
  (interval 0.1 s, retention 0.5 s) and with it turned off. A fresh etcd
  for each.

- ``resync_1m_max_block_ms``: a node starts against a store (an in-memory
  store object, so the figure is shoal's work alone) holding ``--nodes``
  nodes of ``--per-node`` members each (default 1,000 x 1,000 = 1M, one
  group, 64-member buckets: the dense layout); the start-up snapshot is a
  re-sync. The figure is the longest gap seen by a task ticking every 5 ms
  while it runs (the slices' own work, and CPython's garbage collector);
  ``resync_1m_max_block_cpu_ms`` is the same gap counted in this thread's
  CPU time (what held the loop, without the wait for a core on a loaded
  host). ``resync_1m_max_block_ms_gc_frozen`` (and ``_cpu_``) is the same
  start with the collector paused around ``start()`` and ``gc.freeze()``
  called before it resumes (a recipe docs/scale.md once gave, no longer
  needed: kept for comparison), watched 0.2 s longer; ``resync_1m_s`` is
  the whole re-sync (``resync_1m_cpu_s`` in this process's CPU time).
- ``resync_1m_100_groups_s`` (``_cpu_s``, ``_max_block_ms``,
  ``_max_block_cpu_ms``): the same start-up when each node's 1,000 members
  are in 100 groups of 10 (100 keys per node instead of 16: the model's
  "100 groups" layout).
- ``gc_full_collection_1m_ms``: one ``gc.collect()`` with that table held
  (the table holds no object per member; this process also holds the
  in-memory store's keys, which a node on etcd does not).
- ``resync_1m_running_max_block_ms`` (and ``_cpu_``): a running node's
  whole re-sync of the 1M table, as when its watch falls behind a
  compaction (the store compacted past a change it had not read yet);
  ``resync_1m_running_frozen_*`` the same after ``gc.freeze()``.
- ``apply_bucket64_1m_us``: one store change putting a new 64-member bucket
  for a known node into that 1M table, from the store's apply to the join
  event reaching a subscriber (median of 20; the real watch and apply path).
- ``node_removal_1m_ms``: one node of 1,000 members leaves the 1M table as
  its session's end does: one store change deletes its ``nodes/`` key and
  its member keys; from the apply to the last leave event (median of 5).
- ``idle_cpu_pct_50_peers_after_idle``: 51 real nodes in one process on
  loopback (a shared in-memory store): one calls each of the 50 others
  once, then all idle past ``idle_timeout`` (2 s here) and every
  connection closes; the process's CPU over 10 s, divided by 51, as a
  percentage of one core. ``idle_cpu_pct_50_peers_kept`` is the node that
  called 50 peers when connections stay open (``idle_timeout=None``): the
  same base plus 50 connections' heartbeats, from the same two runs.

Measured on the 2-core shared host (load average 6-10 from other work),
etcd 3.4, 1M members dense: see docs/scale.md for the figures and the
model built on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, run

import shoal
from shoal.membership.keys import BUCKET_SIZE, encode_members, member_key
from shoal.runtime.node_info import node_info
from shoal.store import MemoryStore
from shoal.store.base import Changes, Delete, Put, Session
from shoal.store.etcd import EtcdSession, EtcdStore
from shoal.testing.cluster import wait_until
from shoal.testing.etcd_server import start_etcd
from shoal.testing.stalls import LoopStalls

BATCH = 128
WATCHERS = 10


async def _write_changes(store: EtcdStore, keys: int) -> tuple[int, int]:
    """Put, update and delete ``keys`` keys; return the revisions before and after."""
    session = await store.open_session("bench-writer", b"", 30.0)
    start = (await store.snapshot("d/")).revision
    names = [f"d/{i:08d}" for i in range(keys)]
    last = start
    for value in (b"first", b"second"):
        for at in range(0, keys, BATCH):
            last = await session.apply([Put(key=k, value=value) for k in names[at:at + BATCH]])
    for at in range(0, keys, BATCH):
        last = await session.apply([Delete(key=k) for k in names[at:at + BATCH]])
    await session.close()
    return start, last


async def _read_all(store: EtcdStore, start: int, end: int) -> int:
    delivered = 0
    watch = store.watch("d/", start)
    try:
        async for item in watch:
            assert isinstance(item, Changes), "a compaction during the benchmark"
            delivered += len(item.events)
            if item.revision >= end:
                return delivered
    finally:
        await watch.aclose()  # type: ignore[attr-defined]
    raise AssertionError("the watch ended early")


async def measure_deliveries(url: str, keys: int) -> float:
    """Events per second delivered to :data:`WATCHERS` watches of one etcd."""
    store = EtcdStore.from_url(url)
    try:
        start, end = await _write_changes(store, keys)
        began = time.perf_counter()
        counts = await asyncio.gather(*(_read_all(store, start, end)
                                        for _ in range(WATCHERS)))
        elapsed = time.perf_counter() - began
    finally:
        await store.close()
    assert all(c == 3 * keys for c in counts), counts
    return sum(counts) / elapsed


async def measure_snapshot_read(url: str, nodes: int, per_node: int,
                                groups: int) -> tuple[float, float]:
    """Seconds (wall, this process's CPU) to read the start-up snapshot of a
    ``nodes x per_node`` scope from etcd, in the adapter's pages."""
    store = EtcdStore.from_url(url)
    try:
        session = await store.open_session("bench-seeder", b"", 60.0)
        ops = [op for n in range(nodes) for op in _node_ops(n, per_node, groups)
               if op.key.startswith("scopes/")]
        for at in range(0, len(ops), BATCH):
            await session.apply(ops[at:at + BATCH])
        began, cpu = time.perf_counter(), time.process_time()
        snapshot = await store.snapshot("scopes/default/")
        figures = time.perf_counter() - began, time.process_time() - cpu
        assert len(snapshot.entries) == len(ops)
        await session.close()
    finally:
        await store.close()
    return figures


async def measure_rolling_growth(compaction_interval: float, nodes: int = 20,
                                 rounds: int = 50, members: int = 20) -> float:
    """MB etcd's database file grew by over ``rounds`` rolling re-registrations."""
    value = b"m" * 1024
    with start_etcd() as etcd:
        base, _ = etcd.db_size()
        stores = [EtcdStore(etcd.endpoints, cluster="bench-rolling",
                            compaction_interval=compaction_interval,
                            compaction_retention=0.5) for _ in range(nodes)]
        try:
            async def register(node: int) -> EtcdSession:
                session = await stores[node].open_session(f"n{node}", b"info", 5.0)
                creation = time.time_ns()
                await session.apply([Put(key=f"scopes/default/n{node}/{creation}/g/{k}",
                                         value=value) for k in range(members)])
                return session

            sessions = [await register(n) for n in range(nodes)]
            for _ in range(rounds):
                for node in range(nodes):
                    await sessions[node].close()
                    sessions[node] = await register(node)
        finally:
            for store in stores:
                await store.close()
        size, _ = etcd.db_size()
    return (size - base) / 1e6


# -- the 1M table, in one process ------------------------------------------------------

SECRET = "bench-scale-secret-0123456789abcdef"


def _peer(n: int) -> tuple[str, int]:
    return f"peer{n:04d}", 1000 + n


def _node_ops(n: int, per_node: int, groups: int = 1) -> list[Put]:
    """Node ``n``'s record and its members 1..per_node, in ``groups`` groups
    ("g" alone, or "g0".. each of consecutive serials), 64-member buckets."""
    name, creation = _peer(n)
    ops = [Put(key=f"nodes/{name}",
               value=node_info(name, creation, 30.0, "127.0.0.1", 9, as_given=True))]
    per_group = per_node // groups
    for g in range(groups):
        group = "g" if groups == 1 else f"g{g}"
        buckets: dict[int, dict[int, int]] = {}
        for serial in range(1 + g * per_group, 1 + (g + 1) * per_group):
            buckets.setdefault(serial // BUCKET_SIZE, {})[serial] = 1
        ops += [Put(key=member_key(name, creation, "default", group, bucket),
                    value=encode_members(bucket, counts)) for bucket, counts in buckets.items()]
    return ops


async def _seed(store: MemoryStore, nodes: int, per_node: int, groups: int = 1) -> Session:
    session = await store.open_session("seeder", node_info(
        "seeder", 1, 3600.0, "127.0.0.1", 9, as_given=True), 3600.0)
    batch: list[Put] = []
    for n in range(nodes):
        batch += _node_ops(n, per_node, groups)
        if len(batch) >= 512:
            await session.apply(batch)
            batch = []
    if batch:
        await session.apply(batch)
    return session


async def _until_pids(sub: Any, kind: str, count: int) -> None:
    seen = 0
    async for event in sub:
        if event.kind == kind:
            seen += len(event.pids)
            if seen >= count:
                return


async def _running_resync(store: MemoryStore, seeder: Session, sub: Any, per_node: int,
                          bucket_past: int) -> tuple[float, float]:
    """Longest loop stall (ms; wall and CPU time) while a running node re-syncs the whole table:
    a compaction passes its watch (as when it fell behind on etcd), and the
    change it missed (a new bucket of peer 0) arrives through the re-sync."""
    name, creation = _peer(0)
    bucket = per_node // BUCKET_SIZE + bucket_past
    counts = {bucket * BUCKET_SIZE + k: 1 for k in range(BUCKET_SIZE)}
    put = Put(key=member_key(name, creation, "default", "g", bucket),
              value=encode_members(bucket, counts))
    ticker = LoopStalls()
    await seeder.apply([put])
    store.compact(0)  # before the watch reads the put: it must re-sync
    await _until_pids(sub, "join", BUCKET_SIZE)
    return await ticker.stop() * 1000, ticker.longest_cpu * 1000


async def measure_table(nodes: int, per_node: int, *, freeze_gc: bool) -> dict[str, float]:
    """Re-sync, bucket apply and node removal figures on a ``nodes x per_node`` table.
    With ``freeze_gc``, only the start-up re-sync, as an application can start a
    node holding a large table: the collector paused around ``start()``, then
    ``gc.freeze()`` (what the start built never enters a collection) and
    resumed; the stalls are watched for 0.2 s more."""
    store = MemoryStore()
    seeder = await _seed(store, nodes, per_node)
    figures: dict[str, float] = {}
    if freeze_gc:
        gc.disable()
    ticker = LoopStalls()
    began, cpu = time.perf_counter(), time.process_time()
    try:
        node = shoal.Node("observer", store=store, listen=None, secret=SECRET)
        await node.start()
    finally:
        if freeze_gc:
            gc.freeze()
            gc.enable()
    figures["resync_s"] = time.perf_counter() - began
    figures["resync_cpu_s"] = time.process_time() - cpu
    if freeze_gc:
        await asyncio.sleep(0.2)  # a collection put off by the pause would show here
    figures["resync_max_block_ms"] = await ticker.stop() * 1000
    figures["resync_max_block_cpu_ms"] = ticker.longest_cpu * 1000
    try:
        assert len(node.groups.get_members("g")) == nodes * per_node
        if freeze_gc:
            gc.unfreeze()
            return figures
        sub = node.groups.subscribe("g", limit=1_000_000)
        applies = []
        for i in range(20):  # a new 64-member bucket of a known node
            name, creation = _peer(i)
            bucket = per_node // BUCKET_SIZE + 2
            counts = {bucket * BUCKET_SIZE + k: 1 for k in range(BUCKET_SIZE)}
            put = Put(key=member_key(name, creation, "default", "g", bucket),
                      value=encode_members(bucket, counts))
            t0 = time.perf_counter()
            await seeder.apply([put])
            await _until_pids(sub, "join", BUCKET_SIZE)
            applies.append(time.perf_counter() - t0)
        figures["apply_bucket64_us"] = statistics.median(applies) * 1e6
        removals = []
        for i in range(nodes - 5, nodes):  # a node's session ends: its keys go in one change
            gone = [Delete(key=op.key) for op in _node_ops(i, per_node)]
            t0 = time.perf_counter()
            await seeder.apply(gone)
            await _until_pids(sub, "leave", per_node)
            removals.append(time.perf_counter() - t0)
        figures["node_removal_ms"] = statistics.median(removals) * 1000
        t0 = time.perf_counter()
        gc.collect()
        figures["gc_full_collection_ms"] = (time.perf_counter() - t0) * 1000
        (figures["resync_running_max_block_ms"],
         figures["resync_running_max_block_cpu_ms"]) = await _running_resync(
            store, seeder, sub, per_node, 3)
        gc.freeze()  # for comparison: the recipe docs/scale.md once gave
        try:
            (figures["resync_running_frozen_max_block_ms"],
             figures["resync_running_frozen_max_block_cpu_ms"]) = await _running_resync(
                store, seeder, sub, per_node, 4)
        finally:
            gc.unfreeze()
        sub.close()
    finally:
        await node.stop()
        await seeder.close()
        await store.close()
    return figures


async def measure_startup(nodes: int, per_node: int, groups: int) -> dict[str, float]:
    """A node's start-up re-sync of ``nodes x per_node`` members in ``groups``
    groups per node (100: ten members per group and node, 100 keys per node):
    the whole re-sync, and the longest loop stall during it."""
    store = MemoryStore()
    seeder = await _seed(store, nodes, per_node, groups)
    gc.collect()
    ticker = LoopStalls()
    began, cpu = time.perf_counter(), time.process_time()
    node = shoal.Node("observer", store=store, listen=None, secret=SECRET)
    try:
        await node.start()
        figures = {"resync_s": time.perf_counter() - began,
                   "resync_cpu_s": time.process_time() - cpu,
                   "resync_max_block_ms": await ticker.stop() * 1000,
                   "resync_max_block_cpu_ms": ticker.longest_cpu * 1000}
        assert len(node.groups.get_members("g0" if groups > 1 else "g")) == (
            nodes * (per_node // groups))
    finally:
        await node.stop()
        await seeder.close()
        await store.close()
    return figures


# -- idle CPU with 50 peers ------------------------------------------------------------


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


async def measure_idle_cpu(peers: int, idle_timeout: float | None, window: float) -> float:
    """Percent of one core the whole process uses over ``window`` seconds
    once ``peers + 1`` nodes idle after one node called every other once."""
    store = MemoryStore()
    nodes = [shoal.Node(f"n{i:02d}", store=store, secret=SECRET, idle_timeout=idle_timeout)
             for i in range(peers + 1)]
    async with contextlib.AsyncExitStack() as stack:
        for node in nodes:
            await stack.enter_async_context(node)
        caller = nodes[0]
        pids = [await node.spawn(Echo) for node in nodes[1:]]
        await wait_until(lambda: len(caller.cluster_view.names() - {caller.name}) >= peers,
                         timeout=30, what="every peer in the caller's view")
        for pid in pids:
            await caller.call(pid, "once", timeout=10)
        if idle_timeout is not None:
            await wait_until(lambda: not caller.statistics().connected,
                             timeout=idle_timeout * 2 + 10, what="idle connections closed")
        else:
            assert len(caller.statistics().connected) == peers
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(window)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    return cpu / wall * 100


async def main_async(args: argparse.Namespace) -> None:
    table = await measure_table(args.nodes, args.per_node, freeze_gc=False)
    emit("resync_1m_max_block_ms", table["resync_max_block_ms"], "ms")
    emit("resync_1m_max_block_cpu_ms", table["resync_max_block_cpu_ms"],
         "ms (the same stall counted in CPU time: without the host's load)")
    emit("resync_1m_s", table["resync_s"], "s")
    emit("resync_1m_cpu_s", table["resync_cpu_s"], "s (the same in this process's CPU time)")
    emit("apply_bucket64_1m_us", table["apply_bucket64_us"], "us")
    emit("node_removal_1m_ms", table["node_removal_ms"], "ms")
    emit("gc_full_collection_1m_ms", table["gc_full_collection_ms"], "ms")
    for name in ("running", "running_frozen"):
        emit(f"resync_1m_{name}_max_block_ms", table[f"resync_{name}_max_block_ms"], "ms")
        emit(f"resync_1m_{name}_max_block_cpu_ms", table[f"resync_{name}_max_block_cpu_ms"],
             "ms")
    gc.collect()
    spread = await measure_startup(args.nodes, args.per_node, 100)
    emit("resync_1m_100_groups_s", spread["resync_s"], "s (100 groups per node: 100 keys)")
    emit("resync_1m_100_groups_cpu_s", spread["resync_cpu_s"], "s")
    emit("resync_1m_100_groups_max_block_ms", spread["resync_max_block_ms"], "ms")
    emit("resync_1m_100_groups_max_block_cpu_ms", spread["resync_max_block_cpu_ms"], "ms")
    gc.collect()
    frozen = await measure_table(args.nodes, args.per_node, freeze_gc=True)
    emit("resync_1m_max_block_ms_gc_frozen", frozen["resync_max_block_ms"], "ms")
    emit("resync_1m_max_block_cpu_ms_gc_frozen", frozen["resync_max_block_cpu_ms"], "ms")
    gc.collect()
    after_idle = await measure_idle_cpu(50, 2.0, args.window)
    kept = await measure_idle_cpu(50, None, args.window)
    emit("idle_cpu_pct_50_peers_after_idle", after_idle / 51, "% of a core per node")
    # The caller keeps 50 connections, each peer one: 100 connection ends heartbeat.
    per_end = max(0.0, kept - after_idle) / 100
    emit("idle_cpu_pct_50_peers_kept", after_idle / 51 + 50 * per_end, "% of a core")
    if args.skip_etcd:
        return
    with contextlib.ExitStack() as stack:
        etcd = stack.enter_context(start_etcd())
        rate = await measure_deliveries(etcd.url(cluster="bench-deliveries"), args.keys)
        emit("etcd_deliveries_per_s_10_watchers", rate)
        for groups, name in ((1, "1m"), (100, "1m_100_groups")):
            wall, cpu = await measure_snapshot_read(etcd.url(cluster=f"bench-snap-{groups}"),
                                                    args.nodes, args.per_node, groups)
            emit(f"etcd_snapshot_{name}_s", wall, "s (a start-up's read, in pages)")
            emit(f"etcd_snapshot_{name}_cpu_s", cpu, "s")
    emit("etcd_db_mb_after_50_rolling_restarts", await measure_rolling_growth(0.1), "MB")
    emit("etcd_db_mb_after_50_rolling_restarts_uncompacted",
         await measure_rolling_growth(0.0), "MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=3000,
                        help="keys put, updated and deleted for the deliveries figure")
    parser.add_argument("--nodes", type=int, default=1000, help="nodes in the big table")
    parser.add_argument("--per-node", type=int, default=1000, help="members per node")
    parser.add_argument("--window", type=float, default=10.0,
                        help="seconds over which idle CPU is measured")
    parser.add_argument("--skip-etcd", action="store_true",
                        help="only the in-process figures (no etcd needed)")
    args = parser.parse_args(argv)
    run(lambda: main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
