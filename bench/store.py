"""Store benchmark: join-to-visible propagation and batched join throughput.

Usage::

    python bench/store.py --store sqlite          # a fresh database in a temp dir
    python bench/store.py --store memory
    python bench/store.py --url sqlite:///path/to/cluster.db

Propagation: a writer in one OS process puts one key at a time (paced, as
joins arrive) and a watcher in another OS process timestamps each event as
its watch yields it; latency runs from just before ``apply`` to then, on the
host's shared monotonic clock. (A memory store lives in one process, so its
writer and watcher are two clients in the bench process.)

Throughput: one session applies many puts per transaction, as a node batches
the joins of many processes, and the rate counts puts.

Output is ``name: value unit`` lines, the last two being
``propagation_p99_ms: X`` and ``joins_per_s: X``. Every measurement is a
function of a store URL (:func:`run`), so a new store needs only an entry in
``STORES``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shoal.store import Changes, Put, Store, open_store  # noqa: E402

__all__ = ["STORES", "main", "measure_propagation", "measure_throughput", "run"]

PREFIX = "bench/prop/"
STORES: dict[str, Callable[[Path], str]] = {
    "sqlite": lambda tmp: f"sqlite://{tmp / 'cluster.db'}",
    "memory": lambda tmp: "memory://",
    # "etcd": lambda tmp: os.environ.get("SHOAL_ETCD_URL", "etcd://127.0.0.1:2379"),
}
"""Store name -> URL for a scratch store in a temporary directory."""


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def _write_paced(store: Store, samples: int, pace: float, name: str) -> None:
    session = await store.open_session(name, b"bench", 10.0)
    for i in range(samples):
        sent = time.monotonic_ns()
        await session.apply([Put(key=f"{PREFIX}{i}", value=str(sent).encode())])
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
def _spawn_writer(url: str, samples: int, pace: float) -> Iterator[subprocess.Popen[str]]:
    cmd = [sys.executable, __file__, "--role", "writer", "--url", url]
    cmd += ["--samples", str(samples), "--pace", str(pace)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
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
                proc = stack.enter_context(_spawn_writer(url, samples, pace))
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
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


async def run(url: str, samples: int, joins: int, batch: int) -> list[tuple[str, float, str]]:
    """Every measurement against one store URL.

    Args:
        url: the store URL.
        samples: propagation samples.
        joins: puts for the batched throughput run.
        batch: puts per transaction.

    Returns:
        ``(name, value, unit)`` rows, ending with propagation_p99_ms and joins_per_s.
    """
    lat = await measure_propagation(url, samples)
    single = await measure_throughput(url, max(200, joins // 50), 1)
    batched = await measure_throughput(url, joins, batch)
    return [
        ("propagation_samples", len(lat), "count"),
        ("propagation_p50", statistics.median(lat), "ms"),
        ("propagation_p90", _percentile(lat, 0.90), "ms"),
        ("propagation_max", lat[-1], "ms"),
        ("puts_per_s_one_per_txn", single, "puts/s"),
        ("batch_size", batch, "puts/txn"),
        ("propagation_p99_ms", _percentile(lat, 0.99), ""),
        ("joins_per_s", batched, ""),
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
    parser.add_argument("--pace", type=float, default=0.001, help=argparse.SUPPRESS)
    parser.add_argument(
        "--role", choices=["main", "writer"], default="main", help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.role == "writer":
        asyncio.run(_writer_process(args.url, args.samples, args.pace))
        return 0
    with tempfile.TemporaryDirectory(prefix="shoal-bench-") as tmp:
        url = args.url or STORES[args.store](Path(tmp))
        rows = asyncio.run(run(url, args.samples, args.joins, args.batch))
    print(f"store: {args.store if not args.url else url}")
    for name, value, unit in rows:
        text = f"{value:.3f}" if isinstance(value, float) and value < 100 else f"{value:.0f}"
        print(f"{name}: {text} {unit}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
