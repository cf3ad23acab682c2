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
- ``etcd_db_mb_after_50_rolling_restarts`` and
  ``etcd_db_mb_after_50_rolling_restarts_uncompacted``: growth of etcd's
  database file (status ``dbSize``) over 50 rolling re-registrations of a
  20-node cluster (each node a store client: close its session, open a new
  one, write 20 member keys of 1 KiB), with shoal's compaction duty
  (interval 0.1 s, retention 0.5 s) and with it turned off. A fresh etcd
  for each.

Figures of the scale issue this script does not print yet:
``node_removal_1m_ms``, ``resync_1m_max_block_ms``, ``apply_bucket64_1m_us``
and ``idle_cpu_pct_50_peers_after_idle``.

Measured on a 2-core shared host, 3,000 keys: 7,588 deliveries/s while
watches asked for ``prev_kv``; 166,808/s without. Rolling restarts: the
database grew 30 MB uncompacted, about 5 MB compacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, run

from shoal.store.base import Changes, Delete, Put
from shoal.store.etcd import EtcdSession, EtcdStore
from shoal.testing.etcd_server import start_etcd

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
                await session.apply([Put(key=f"members/n{node}/{creation}/default/g/{k}",
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


async def main_async(args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        etcd = stack.enter_context(start_etcd())
        rate = await measure_deliveries(etcd.url(cluster="bench-deliveries"), args.keys)
        emit("etcd_deliveries_per_s_10_watchers", rate)
    emit("etcd_db_mb_after_50_rolling_restarts", await measure_rolling_growth(0.1), "MB")
    emit("etcd_db_mb_after_50_rolling_restarts_uncompacted",
         await measure_rolling_growth(0.0), "MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=3000,
                        help="keys put, updated and deleted for the deliveries figure")
    args = parser.parse_args(argv)
    run(lambda: main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
