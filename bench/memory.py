"""Memory per remote membership seen: 20 nodes x 2,000 members, one group.

Usage::

    python bench/memory.py                  # 20 x 2,000 (40,000 members)
    python bench/memory.py --breakdown 12   # and the 12 largest sources

An observer node starts on an in-memory store; a seeder session then writes
20 other nodes' registrations and their members (2,000 each, in 64-member
buckets, one group) as those nodes would, in batches of 128 keys. Every key
reaches the observer through the store's watch and the replication's real
apply path, exactly as in a cluster. Once the observer's table holds all
40,000 members and a selection has built the group's routable list, the
figure is the Python memory that stayed allocated (``tracemalloc``),
divided by the members, leaving out what the store adapter itself holds
(``shoal/store/``: in a cluster that is etcd's or SQLite's memory, not the
node's). The same is measured for a node that starts against the seeded
store (its start-up re-sync, the other path members arrive by):
``remote_member_bytes_resync``; and first, without tracemalloc, the live
path's growth of the process's RSS: ``remote_member_rss_bytes`` (it also
counts the in-memory store's copy of the keys and the memory CPython keeps
for reuse). ``remote_member_bytes_scattered`` is the start-up re-sync's
figure when each member is alone in its own group (20 nodes x 500 groups of
one member: one store key and one (node, group) part per member).

Prints ``name: value`` lines, the breakdown by source line (``--breakdown``)
grouped as the table entry, its per-pid index, the routable cache and the
replication's bookkeeping, and last ``remote_member_bytes: N``.

Baseline: Erlang's ``pg`` as measured the same way (``erlang:memory()``
growth of an observer node while a remote node's processes join one group,
divided by the members), when ``erl`` is installed (Debian's erlang-nox);
then ``ratio_vs_erlang_pg``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import linecache
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, machine, run

import shoal
from shoal.membership.keys import BUCKET_SIZE, encode_members, member_key
from shoal.runtime.node_info import node_info
from shoal.store import MemoryStore
from shoal.store.base import Put
from shoal.testing.cluster import wait_until

HERE = Path(__file__).resolve().parent
SECRET = "bench-memory-secret-0123456789abcdef"
BATCH = 128
STORE_FILES = ("/shoal/store/",)


def _ops(n: int, per_node: int, scattered: bool = False) -> list[Put]:
    name, creation = f"peer{n:02d}", 1000 + n
    ops = [Put(key=f"nodes/{name}",
               value=node_info(name, creation, 30.0, "127.0.0.1", 9, as_given=True))]
    if scattered:  # member s alone in group "g<s>": one key per member
        return ops + [Put(key=member_key(name, creation, "default", f"g{s}", s // BUCKET_SIZE),
                          value=encode_members(s // BUCKET_SIZE, {s: 1}))
                      for s in range(1, per_node + 1)]
    for bucket in range(per_node // BUCKET_SIZE + 1):
        first = bucket * BUCKET_SIZE
        counts = {s: 1 for s in range(max(first, 1), min(first + BUCKET_SIZE, per_node + 1))}
        if counts:
            ops.append(Put(key=member_key(name, creation, "default", "g", bucket),
                           value=encode_members(bucket, counts)))
    return ops


def _category(filename: str, line: int) -> str:
    text = linecache.getline(filename, line).strip()
    if "/shoal/membership/table" in filename:
        return f"table: {text[:70]}"
    if "/shoal/runtime/" in filename or "/shoal/membership/" in filename:
        return f"{Path(filename).name}: {text[:70]}"
    return f"{Path(filename).name}:{line}"


def _kept(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot,
          breakdown: int, members: int) -> int:
    """Bytes allocated between the snapshots and still held, outside the store."""
    keep = [tracemalloc.Filter(False, f"*{p}*") for p in STORE_FILES]
    diff = after.filter_traces(keep).compare_to(before.filter_traces(keep), "lineno")
    total = sum(d.size_diff for d in diff)
    for stat in sorted(diff, key=lambda d: -d.size_diff)[:breakdown]:
        frame = stat.traceback[0]
        print(f"  {stat.size_diff / members:7.1f} B/member  "
              f"{_category(frame.filename, frame.lineno)}")
    return total


async def _settled() -> None:
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()


async def measure_live(nodes: int, per_node: int, breakdown: int) -> float:
    """Bytes per member seen, members arriving through the watch."""
    store = MemoryStore()
    total = nodes * per_node
    async with shoal.Node("observer", store=store, listen=None, secret=SECRET) as node:
        seeder = await store.open_session("seeder", node_info(
            "seeder", 1, 3600.0, "127.0.0.1", 9, as_given=True), 3600.0)
        await _settled()
        before = tracemalloc.take_snapshot()
        ops = [op for n in range(nodes) for op in _ops(n, per_node)]
        for at in range(0, len(ops), BATCH):
            await seeder.apply(ops[at:at + BATCH])
        del ops
        await wait_until(lambda: len(node.groups.get_members("g")) == total, timeout=120,
                         what="every member seen")
        node.groups.select("g", strategy="random")  # builds the routable list
        await _settled()
        after = tracemalloc.take_snapshot()
        print(f"breakdown (live apply, {nodes} x {per_node}):")
        kept = _kept(before, after, breakdown, total)
        await seeder.close()
    return kept / total


def _rss() -> int:
    """This process's resident set size in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def measure_live_rss(nodes: int, per_node: int) -> float:
    """RSS growth per member seen, members arriving through the watch (no
    tracemalloc running: its own records would count). Includes what the
    in-memory store holds of the keys (~4 bytes per member) and the memory
    CPython keeps for reuse after the apply's temporary objects."""
    store = MemoryStore()
    total = nodes * per_node
    async with shoal.Node("observer", store=store, listen=None, secret=SECRET) as node:
        seeder = await store.open_session("seeder", node_info(
            "seeder", 1, 3600.0, "127.0.0.1", 9, as_given=True), 3600.0)
        ops = [op for n in range(nodes) for op in _ops(n, per_node)]
        await _settled()
        before = _rss()
        for at in range(0, len(ops), BATCH):
            await seeder.apply(ops[at:at + BATCH])
        del ops
        await wait_until(lambda: len(node.groups.get_members("g")) == total, timeout=120,
                         what="every member seen")
        node.groups.select("g", strategy="random")
        await _settled()
        grown = _rss() - before
        await seeder.close()
    return grown / total


async def measure_resync(nodes: int, per_node: int, breakdown: int,
                         scattered: bool = False) -> float:
    """Bytes per member seen, members read by a starting node's re-sync; the
    same start against a store holding the nodes without members is the base.
    ``scattered``: each member alone in its own group (one key per member)."""
    results = []
    for members in (0, per_node):
        store = MemoryStore()
        seeder = await store.open_session("seeder", b"", 3600.0)
        ops = [op for n in range(nodes) for op in _ops(n, members, scattered)]
        for at in range(0, len(ops), BATCH):
            await seeder.apply(ops[at:at + BATCH])
        await _settled()
        before = tracemalloc.take_snapshot()
        node = shoal.Node("observer", store=store, listen=None, secret=SECRET)
        await node.start()
        if scattered:
            assert sum(len(node.groups.get_members(f"g{s}"))
                       for s in range(1, members + 1)) == nodes * members
        else:
            assert len(node.groups.get_members("g")) == nodes * members
            node.groups.select("g", strategy="random") if members else None
        await _settled()
        after = tracemalloc.take_snapshot()
        if members:
            print(f"breakdown (start-up re-sync, {nodes} x {per_node}):")
        results.append(_kept(before, after, breakdown if members else 0, nodes * per_node))
        await node.stop()
        await seeder.close()
        await store.close()
        del node, before, after
    return (results[1] - results[0]) / (nodes * per_node)


ERLANG_PG = r"""
-module(shoal_bench_pg).
-export([observe/2, hold/1]).

hold(N) ->
    Pids = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, N)],
    ok = pg:join(g, Pids),
    receive stop -> ok end.

observe(Peer, N) ->
    {ok, _} = pg:start_link(),
    true = net_kernel:connect_node(Peer),
    wait_empty(),
    erlang:garbage_collect(whereis(pg)),
    Before = erlang:memory(total),
    Holder = spawn(Peer, ?MODULE, hold, [N]),
    wait_members(N),
    erlang:garbage_collect(whereis(pg)),
    After = erlang:memory(total),
    Holder ! stop,
    (After - Before) / N.

wait_empty() -> timer:sleep(200).

wait_members(N) ->
    case length(pg:get_members(g)) of
        N -> ok;
        _ -> timer:sleep(20), wait_members(N)
    end.
"""


def erlang_pg_bytes(members: int) -> float | None:
    """Erlang ``pg``'s memory growth per remote member, or None without erl."""
    erl, erlc = shutil.which("erl"), shutil.which("erlc")
    if erl is None or erlc is None:
        print("erlang: NOT AVAILABLE (erl/erlc not found; Debian's erlang-nox provides them)")
        return None
    cookie = "shoalbenchpg"
    suffix = str(int(time.time() * 1000) % 100000)
    with tempfile.TemporaryDirectory(prefix="shoal-bench-pg-") as build:
        source = Path(build) / "shoal_bench_pg.erl"
        source.write_text(ERLANG_PG)
        subprocess.run([erlc, "-o", build, str(source)], check=True)
        common = ["-noshell", "-setcookie", cookie, "-pa", build]
        holder_name = f"pgholder{suffix}@127.0.0.1"
        holder = subprocess.Popen([erl, "-name", holder_name, *common, "-eval",
                                   "{ok, _} = pg:start_link()."])
        try:
            script = (f"timer:sleep(1500), "
                      f"io:format(\"~p~n\", [shoal_bench_pg:observe('{holder_name}', "
                      f"{members})]), halt().")
            out = subprocess.run([erl, "-name", f"pgobserver{suffix}@127.0.0.1", *common,
                                  "-eval", script], capture_output=True, text=True,
                                 timeout=120, check=True)
        finally:
            holder.kill()  # our own child, by its handle
            holder.wait()
    return float(out.stdout.strip().splitlines()[-1])


async def main_async(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    total = args.nodes * args.per_node
    rss = await measure_live_rss(args.nodes, args.per_node)
    tracemalloc.start()
    try:
        resync = await measure_resync(args.nodes, args.per_node, args.breakdown)
        live = await measure_live(args.nodes, args.per_node, args.breakdown)
        scattered = await measure_resync(args.nodes, 500, 0, scattered=True)
    finally:
        tracemalloc.stop()
    emit("remote_member_bytes_scattered", scattered,
         f"bytes ({args.nodes} x 500 members, each alone in a group; start-up re-sync)")
    emit("remote_member_rss_bytes", rss, f"bytes ({total} members seen, RSS growth)")
    emit("remote_member_bytes_resync", resync, f"bytes ({total} members, start-up re-sync)")
    pg = None if args.skip_erlang else erlang_pg_bytes(total)
    if pg is not None:
        emit("erlang_pg_remote_member_bytes", pg, f"bytes ({total} members, one remote node)")
        emit("ratio_vs_erlang_pg", live / pg)
    emit("remote_member_bytes", live, f"bytes ({total} members seen, live apply)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=20, help="remote nodes")
    parser.add_argument("--per-node", type=int, default=2000, help="members per node")
    parser.add_argument("--breakdown", type=int, default=10,
                        help="how many of the largest sources to print")
    parser.add_argument("--skip-erlang", action="store_true", help="no Erlang baseline")
    run(lambda: main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
