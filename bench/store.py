"""Store benchmark: join-to-visible propagation, batched joins, and convergence.

Usage::

    python bench/store.py --store sqlite          # a fresh database in a temp dir
    python bench/store.py --store etcd            # a throwaway etcd on loopback
    python bench/store.py --store memory
    python bench/store.py --url etcd://10.0.0.1:2379   # an existing store

Store level (``store_*`` lines):

- propagation: a writer in one OS process puts one key every millisecond
  (open loop, as joins arrive: up to 64 puts in flight) and a watcher in
  another OS process timestamps each event as its watch yields it; latency
  runs from just before ``apply`` to then, on the host's shared monotonic
  clock. (A memory store lives in one process,
  so its writer and watcher are two clients in the bench process.)
- throughput: one session applies many puts per transaction.

Shoal level (through ``shoal.Node``, the figures the last lines report):

- propagation: a node in one OS process joins a process to a new group, one
  join at a time (paced); a node in another OS process timestamps the join
  as its group subscription delivers it (then it is in ``get_members``).
  The group's name carries the send time. (memory: two nodes in this process.)
- joins per second: one node, ``--joins`` ``groups.join`` calls made by 1,000
  concurrent tasks (``--joins / 10`` processes, each joining 10 groups); the
  node batches the joins in flight into transactions of at most 128 keys.
  Timed until every join returned and the store confirmed every write.
- convergence: ``--nodes`` node processes (``LocalCluster``), each hosting
  ``--per-node`` processes, all join one group at once; timed from the start
  of the joins until the last node sees every member (each node timestamps
  the moment itself); ``converge_after_joins_s`` counts from the moment the
  last node's joins were written instead. Skipped for memory. The run
  ends with kill -9 (after the client stopped), which is quicker than 20
  graceful stops, and waits for the killed nodes' leases to run out.

Before memberships were stored in buckets (``shoal.membership.keys``), this
run wrote 40,000 keys; on one 2-core host shared with etcd it took 11-15 s
or collapsed (etcd fell behind, leases expired, every node rewrote its
keys). It now writes about 640. ``--data-dir /dev/shm`` keeps a scratch
store's data in memory: the difference to the default shows what the
disk's fsync adds (on shared VMs, stalls of tens of milliseconds).

Output is ``name: value unit`` lines, the last three being
``propagation_p99_ms: X``, ``joins_per_s: X`` and ``converge_40k_s: X``
(the name keeps 40k whatever ``--nodes`` x ``--per-node`` is; the
``converge_members`` line says how many). Every measurement is a function of
a store URL (:func:`run`), so a new store needs only an entry in ``STORES``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import shoal  # noqa: E402
from shoal.store import Changes, MemoryStore, Put, Store, open_store  # noqa: E402

__all__ = [
    "STORES",
    "main",
    "measure_convergence",
    "measure_propagation",
    "measure_shoal_joins",
    "measure_shoal_propagation",
    "measure_throughput",
    "run",
]

PREFIX = "bench/prop/"
SECRET = "store-benchmark-secret-0123456789abcdef"
PROP_SCOPE = "bench-prop"


def _scratch_etcd(tmp: Path, stack: contextlib.ExitStack) -> str:
    from shoal.testing.etcd_server import start_etcd

    etcd = stack.enter_context(start_etcd(base_dir=tmp / "etcd"))
    return etcd.url(cluster="bench")


STORES: dict[str, Callable[[Path, contextlib.ExitStack], str]] = {
    "sqlite": lambda tmp, stack: f"sqlite://{tmp / 'cluster.db'}",
    "memory": lambda tmp, stack: "memory://",
    "etcd": _scratch_etcd,
}
"""Store name -> URL of a scratch store in a temporary directory; a factory
may start a server, whose stop it registers on the exit stack."""


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def _write_paced(store: Store, samples: int, pace: float, name: str) -> None:
    """One put every ``pace`` seconds, each without waiting for the last:
    joins arrive on their own schedule, so a store stall delays every put
    made during it (as it delays every join on the shoal level) instead of
    only the one in flight."""
    session = await store.open_session(name, b"bench", 10.0)
    in_flight = asyncio.Semaphore(64)

    async def put(i: int, sent: int) -> None:
        async with in_flight:
            await session.apply([Put(key=f"{PREFIX}{i}", value=str(sent).encode())])

    async with asyncio.TaskGroup() as tasks:
        for i in range(samples):
            tasks.create_task(put(i, time.monotonic_ns()))
            await asyncio.sleep(pace)
    await session.close()


async def _writer_process(url: str, samples: int, pace: float) -> None:
    store = open_store(url)
    try:
        await store.snapshot("")  # open the database before saying ready
        print("ready", flush=True)
        sys.stdin.readline()  # the watcher is watching
        await _write_paced(store, samples, pace, f"bench-writer-{os.getpid()}")
    finally:
        await store.close()


@contextlib.contextmanager
def _spawn_role(role: str, url: str, samples: int, pace: float) -> Iterator[subprocess.Popen[str]]:
    cmd = [sys.executable, __file__, "--role", role, "--url", url]
    cmd += ["--samples", str(samples), "--pace", str(pace)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        yield proc
        # Let it close its session: a killed child's lease would linger for a
        # TTL and expire in the middle of the next measurement.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


async def measure_propagation(url: str, samples: int, pace: float = 0.001) -> list[float]:
    """Milliseconds from a writer's ``apply`` to another process's watch event.

    Args:
        url: the store URL (memory: writer and watcher are two clients here).
        samples: how many single-key joins to time.
        pace: seconds the writer waits between joins.

    Returns:
        The latencies, sorted.
    """
    watcher = open_store(url)
    latencies: list[float] = []
    try:
        start = (await watcher.snapshot(PREFIX)).revision
        watch = watcher.watch(PREFIX, start)
        with contextlib.ExitStack() as stack:
            if url.startswith("memory://"):
                other = watcher.another_client()  # type: ignore[attr-defined]
                writer: asyncio.Task[None] | None = asyncio.ensure_future(
                    _write_paced(other, samples, pace, "bench-writer")
                )
            else:
                writer = None
                stack.enter_context(_spawn_role("writer", url, samples, pace))
            async with asyncio.timeout(60 + samples * pace * 5):
                while len(latencies) < samples:
                    item = await anext(watch)
                    now = time.monotonic_ns()
                    if isinstance(item, Changes):
                        latencies += [
                            (now - int(e.value)) / 1e6 for e in item.events if e.value is not None
                        ]
            if writer is not None:
                await writer
    finally:
        await watcher.close()
    return sorted(latencies)


async def measure_throughput(url: str, joins: int, batch: int) -> float:
    """Puts per second for one session applying ``batch`` puts per transaction.

    Args:
        url: the store URL.
        joins: total puts.
        batch: puts per ``apply``.

    Returns:
        Puts per second.
    """
    store = open_store(url)
    try:
        session = await store.open_session(f"bench-batch-{batch}", b"", 10.0)
        started = time.perf_counter()
        for first in range(0, joins, batch):
            ops = [
                Put(key=f"bench/join/{batch}/{i}", value=b"pid")
                for i in range(first, first + batch)
            ]
            await session.apply(ops)
        elapsed = time.perf_counter() - started
        await session.close()
    finally:
        await store.close()
    return joins / elapsed


class _Idle(shoal.GenServer):
    """A process that only exists to be a group member."""


async def _join_paced(node: shoal.Node, samples: int, pace: float) -> None:
    pid = await node.spawn(_Idle)
    groups = node.scope(PROP_SCOPE)
    for i in range(samples):
        sent = time.monotonic_ns()
        await groups.join(f"{i}:{sent}", pid)
        await asyncio.sleep(pace)


async def _shoal_joiner_process(url: str, samples: int, pace: float) -> None:
    async with shoal.Node(
        f"bench-joiner-{os.getpid()}", store=url, secret=SECRET, listen=None
    ) as node:
        print("ready", flush=True)
        sys.stdin.readline()  # the other node is subscribed
        await _join_paced(node, samples, pace)


async def measure_shoal_propagation(url: str, samples: int, pace: float = 0.001) -> list[float]:
    """Milliseconds from ``groups.join`` on one node to the join reaching a
    subscription (and ``get_members``) on a node in another OS process.

    Args:
        url: the store URL (memory: both nodes in this process, one store).
        samples: how many joins to time, each to a new group.
        pace: seconds the joining node waits between joins.

    Returns:
        The latencies, sorted.
    """
    memory = MemoryStore() if url.startswith("memory://") else None
    latencies: list[float] = []
    async with contextlib.AsyncExitStack() as stack:
        node = await stack.enter_async_context(
            shoal.Node("bench-watcher", store=memory or url, secret=SECRET, listen=None)
        )
        sub = node.scope(PROP_SCOPE).subscribe(limit=samples + 1)
        stack.callback(sub.close)
        joiner: asyncio.Future[None] | None = None
        if memory is not None:
            other = await stack.enter_async_context(
                shoal.Node(
                    "bench-joiner", store=memory.another_client(), secret=SECRET, listen=None
                )
            )
            joiner = asyncio.ensure_future(_join_paced(other, samples, pace))
        else:
            stack.enter_context(_spawn_role("shoal-joiner", url, samples, pace))
        async with asyncio.timeout(60 + samples * pace * 5):
            while len(latencies) < samples:
                event = await sub.get()
                now = time.monotonic_ns()
                if event.kind == "join":
                    sent = int(str(event.group).rpartition(":")[2])
                    latencies.append((now - sent) / 1e6)
            if joiner is not None:
                await joiner
    return sorted(latencies)


async def measure_shoal_joins(
    url: str, joins: int, groups: int = 10, concurrency: int = 1000
) -> float:
    """Joins per second through one node: ``concurrency`` tasks each making
    ``groups.join`` calls one after another, ``joins`` in all (``joins //
    groups`` processes, each joining ``groups`` groups). The node batches
    the joins in flight into transactions; the time runs until every join
    returned and the store confirmed every write.

    ``concurrency`` bounds the joins in flight: a node handed tens of
    thousands of ready tasks at once starves its own event loop (the session
    keepalive included) for seconds.

    Returns:
        Joins per second.
    """
    async with shoal.Node("bench-joins", store=url, secret=SECRET, listen=None) as node:
        pids = [await node.spawn(_Idle) for _ in range(max(1, joins // groups))]
        scope = node.scope("bench-joins")
        work = iter([(f"g{k}", pid) for k in range(groups) for pid in pids])

        async def joiner() -> None:
            for group, pid in work:
                await scope.join(group, pid)

        started = time.perf_counter()
        await asyncio.gather(*(joiner() for _ in range(concurrency)))
        assert node._replication is not None
        await node._replication.writer.flush(None)  # every join confirmed by the store
        elapsed = time.perf_counter() - started
        total = len(pids) * groups
        assert sum(len(scope.get_members(f"g{k}")) for k in range(groups)) == total
    return total / elapsed


async def measure_convergence(
    url: str, nodes: int, per_node: int, timeout: float = 300.0
) -> dict[str, float]:
    """``nodes`` node processes each join ``per_node`` processes to one group
    at once; how long until every node (and the in-process client) sees all.

    Returns:
        ``start_s`` (cluster start-up), ``joins_s`` (until the last node's
        joins were written), ``converge_s`` (from the start of the joins until
        the last node saw every member), ``converge_after_joins_s`` and
        ``reached`` (fewest members any node saw, when it timed out).
    """
    from shoal.testing.agent import wait_count
    from shoal.testing.cluster import LocalCluster

    total = nodes * per_node
    began = time.monotonic()
    async with LocalCluster(nodes, store=url) as cluster:
        started = time.monotonic() - began
        pids = await asyncio.gather(
            *(cluster.spawn(name, count=per_node, scope="bench") for name in cluster.names)
        )
        client = cluster.client
        joined: dict[str, float] = {}

        async def join_then_wait(name: str, members: list[shoal.Pid]) -> list[Any]:
            try:
                await cluster.control(name, "join", "bench", "all", members, timeout=timeout)
                joined[name] = time.monotonic()
                result: list[Any] = await cluster.control(
                    name, "wait_count", "bench", "all", total, timeout, timeout=timeout + 10
                )
            except shoal.ShoalError as exc:
                print(f"# {name}: {exc}", file=sys.stderr, flush=True)
                return ["error", 0]
            return result

        t0 = time.monotonic()
        results = await asyncio.gather(
            wait_count(client, "bench", "all", total, timeout),
            *(join_then_wait(n, p) for n, p in zip(cluster.names, pids, strict=True)),
        )
        if any(r[0] != "ok" for r in results):
            # Keep the evidence: every node's count and log, before teardown.
            keep = Path(tempfile.mkdtemp(prefix="shoal-bench-converge-"))
            for name in cluster.names:
                with contextlib.suppress(shoal.ShoalError):
                    count = await cluster.control(name, "count", "bench", "all")
                    print(f"# {name} sees {count} members", file=sys.stderr, flush=True)
                shutil.copy(cluster.nodes[name].log, keep / f"{name}.log")
            print(f"# convergence timed out; node logs kept in {keep}", file=sys.stderr)
        # Tear down fast: a graceful stop makes every node leave its
        # memberships and every other node remove them one by one, which
        # takes minutes at this size; kill -9 once the client has stopped.
        await client.stop()
        for name in cluster.names:
            cluster.kill9(name)
    # The killed nodes' entries vanish when their leases run out (one TTL);
    # let that happen here rather than in the middle of the next measurement.
    store = open_store(url)
    try:
        snapshot = await store.snapshot("scopes/")
        left = set(snapshot.entries)
        async with asyncio.timeout(60 if left else 0.001):
            async for item in store.watch("scopes/", snapshot.revision):
                if not left:
                    break
                if isinstance(item, Changes):
                    for event in item.events:
                        (left.add if event.kind == "put" else left.discard)(event.key)
                else:
                    left = set(item.snapshot.entries)
                if not left:
                    break
    except TimeoutError:
        print("# the killed nodes' entries outlived 60 s", file=sys.stderr)
    finally:
        await store.close()
    done = [r[1] for r in results if r[0] == "ok"]
    last_joined = max(joined.values()) if joined else float("nan")
    converged = max(done) if len(done) == len(results) else float("nan")
    return {
        "start_s": started,
        "joins_s": last_joined - t0,
        "converge_s": converged - t0,
        "converge_after_joins_s": converged - last_joined,
        "reached": min(total if r[0] == "ok" else r[1] for r in results),
    }


async def run(
    url: str, samples: int, joins: int, batch: int, nodes: int = 20, per_node: int = 2000
) -> list[tuple[str, float, str]]:
    """Every measurement against one store URL.

    Args:
        url: the store URL.
        samples: propagation samples (store level and shoal level each).
        joins: puts for the store-level batched run, joins for the shoal one.
        batch: puts per transaction in the store-level run.
        nodes, per_node: the convergence run (``nodes=0`` skips it).

    Returns:
        ``(name, value, unit)`` rows, ending with propagation_p99_ms,
        joins_per_s and converge_40k_s.
    """
    # Convergence first, on a fresh store: every run leaves history behind
    # it (and, on etcd, leases being revoked) that the later measurements
    # should meet, not this one.
    converge_rows: list[tuple[str, float, str]] = []
    converge = float("nan")
    if nodes and not url.startswith("memory://"):
        figures = await measure_convergence(url, nodes, per_node)
        converge = figures["converge_s"]
        converge_rows = [
            ("converge_nodes", nodes, f"node processes x {per_node} members"),
            ("converge_members", nodes * per_node, "members"),
            ("converge_cluster_start", figures["start_s"], "s"),
            ("converge_joins_written", figures["joins_s"], "s after the joins started"),
            ("converge_after_joins", figures["converge_after_joins_s"], "s"),
            ("converge_fewest_seen", figures["reached"], "members"),
        ]
        for name, value, unit in converge_rows:
            print(f"# {name}: {value:.3f} {unit}", file=sys.stderr, flush=True)
    shoal_lat = await measure_shoal_propagation(url, samples)
    shoal_joins = await measure_shoal_joins(url, joins)
    lat = await measure_propagation(url, samples)
    single = await measure_throughput(url, max(200, joins // 50), 1)
    batched = await measure_throughput(url, joins, batch)
    rows: list[tuple[str, float, str]] = [
        ("store_propagation_samples", len(lat), "count"),
        ("store_propagation_p50", statistics.median(lat), "ms"),
        ("store_propagation_p99", _percentile(lat, 0.99), "ms"),
        ("store_propagation_max", lat[-1], "ms"),
        ("store_puts_per_s_one_per_txn", single, "puts/s"),
        ("store_puts_per_s_batched", batched, f"puts/s ({batch} puts/txn)"),
        ("propagation_samples", len(shoal_lat), "count"),
        ("propagation_p50_ms", statistics.median(shoal_lat), ""),
        ("propagation_p90_ms", _percentile(shoal_lat, 0.90), ""),
        ("propagation_max_ms", shoal_lat[-1], ""),
        ("joins_in_flight", 1000, "concurrent groups.join calls"),
    ]
    return [
        *rows,
        *converge_rows,
        ("propagation_p99_ms", _percentile(shoal_lat, 0.99), ""),
        ("joins_per_s", shoal_joins, ""),
        ("converge_40k_s", converge, ""),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print ``name: value unit`` lines.

    Args:
        argv: command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit code (0).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=sorted(STORES), default="sqlite")
    parser.add_argument("--url", help="store URL (default: a scratch store of --store)")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--joins", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--nodes", type=int, default=20, help="node processes in the convergence run (0: skip it)"
    )
    parser.add_argument(
        "--per-node", type=int, default=2000, help="members per node in the convergence run"
    )
    parser.add_argument(
        "--data-dir", type=Path,
        help="where the scratch store keeps its data (default: a temporary directory;"
        " /dev/shm takes the disk's fsync out of the figures)")
    parser.add_argument("--pace", type=float, default=0.001, help=argparse.SUPPRESS)
    parser.add_argument(
        "--role",
        choices=["main", "writer", "shoal-joiner"],
        default="main",
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args(argv)
    if args.role == "writer":
        asyncio.run(_writer_process(args.url, args.samples, args.pace))
        return 0
    if args.role == "shoal-joiner":
        asyncio.run(_shoal_joiner_process(args.url, args.samples, args.pace))
        return 0
    with tempfile.TemporaryDirectory(prefix="shoal-bench-", dir=args.data_dir) as tmp, \
            contextlib.ExitStack() as stack:
        url = args.url or STORES[args.store](Path(tmp), stack)
        rows = asyncio.run(
            run(url, args.samples, args.joins, args.batch, args.nodes, args.per_node)
        )
    print(f"store: {args.store if not args.url else url}")
    if args.data_dir and not args.url:
        print(f"data_dir: {args.data_dir}")
    print(f"machine: {os.cpu_count()} cpus, {sys.implementation.name} {sys.version.split()[0]}")
    for name, value, unit in rows:
        if value != value:  # NaN: not measured
            text, unit = "n/a", ""
        elif isinstance(value, float) and value < 100:
            text = f"{value:.3f}"
        else:
            text = f"{value:.0f}"
        print(f"{name}: {text} {unit}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
