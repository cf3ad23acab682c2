"""Process groups: selection from a large group, join/leave rate, memory.

- select from a group of 10,000 members, per strategy (goal <= 2 us; Erlang's
  ``pg:get_members`` of 10k members takes ~39 us because it copies);
- joins and leaves per second into distinct groups, one awaited join at a
  time through ``node.groups.join`` on a private in-memory store (Erlang pg:
  ~165k joins/s; replication through SQLite/etcd is bench/store.py's job);
- memory per membership entry, measured with tracemalloc (goal <= 280 bytes;
  Erlang pg: ~277 bytes per member of one group).

The baseline printed beside selection is ``random.choice`` on a plain list of
10,000 pids: the floor for picking one member in Python.

Last line: ``select_10k_us: X`` (the default strategy, ``local_first``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import time
import tracemalloc
from typing import Any

from _common import emit, loop_name, machine, median, run

import shoal
from shoal.membership.table import GroupTable

STRATEGIES = ("local_first", "random", "round_robin", "least_loaded")


class Idle(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


def per_op_us(fn: Any, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    print(f"loop: {loop_name()}")
    # A private in-memory store: this measures the group table and the API,
    # as Erlang's pg figures do; bench/store.py measures replication.
    async with shoal.Node("bench", seed=1, store="memory://") as node:
        pids = [await node.spawn(Idle) for _ in range(args.members)]
        await node.groups.join("big", pids)
        groups = node.groups
        plain = list(pids)
        emit("baseline_random_choice_10k_us",
             median([per_op_us(lambda: random.choice(plain), args.n) for _ in range(5)]), "us")
        results = {}
        for strategy in STRATEGIES:
            def pick(s: str = strategy) -> None:
                groups.select("big", strategy=s)
            results[strategy] = median([per_op_us(pick, args.n) for _ in range(5)])
            emit(f"select_10k_{strategy}_us", results[strategy], "us")
        hash_us = median([per_op_us(lambda: groups.select("big", strategy="hash", key="k"), 50)
                          for _ in range(3)])
        emit("select_10k_hash_us", hash_us, "us (rendezvous hashing is O(members))")
        emit("get_members_10k_us",
             median([per_op_us(lambda: groups.get_members("big"), 2000) for _ in range(5)]), "us")

        # join/leave rate into distinct groups, through the public API
        names = [f"g{i}" for i in range(args.joins)]
        one = pids[0]
        t0 = time.perf_counter()
        for name in names:
            await groups.join(name, one)
        join_rate = args.joins / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for name in names:
            await groups.leave(name, one)
        leave_rate = args.joins / (time.perf_counter() - t0)
        emit("joins_per_s", join_rate, "joins/s (one awaited join at a time)")
        emit("leaves_per_s", leave_rate, "leaves/s (one awaited leave at a time)")
        # 100 joiners at once: their writes share store transactions.
        t0 = time.perf_counter()
        for start in range(0, args.joins, 100):
            await asyncio.gather(*(groups.join(name, one) for name in names[start:start + 100]))
        emit("joins_per_s_100_concurrent", args.joins / (time.perf_counter() - t0), "joins/s")
        # the table alone, as Erlang's ETS figure is the table alone
        table = GroupTable("bench")
        t0 = time.perf_counter()
        for name in names:
            table.join("default", name, [one])
        emit("table_joins_per_s", args.joins / (time.perf_counter() - t0), "joins/s")

    # memory per entry: the table alone, members of one group (as Erlang's figure)
    table = GroupTable("bench")
    members = [shoal.Pid("bench", 1, i) for i in range(1, args.memory_members + 1)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table.join("default", "one", members)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    emit("memory_per_entry_one_group_bytes", (after - before) / len(members), "bytes")
    table2 = GroupTable("bench")
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, pid in enumerate(members):
        table2.join("default", f"g{i % 1000}", [pid])
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    emit("memory_per_entry_1000_groups_bytes", (after - before) / len(members), "bytes")
    emit("select_10k_us", results["local_first"], "us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--joins", type=int, default=100_000)
    parser.add_argument("--memory-members", type=int, default=100_000)
    run(lambda: main(parser.parse_args()))
