"""Local call round trip: shoal next to a bare asyncio actor, same event loop.

The bare actor is the floor: a task reading an ``asyncio.Queue`` and
answering through a ``Future``. shoal adds a deadline per call, the
mailbox bound check, the "gave up" check and the exit-path bookkeeping.
Rounds alternate bare/shoal so drift on a shared machine hits both.

Prints p50 latency (1 caller) and throughput (1 and 64 concurrent callers)
for both, then ``latency_ratio_vs_bare`` (shoal p50 / bare p50) and
``throughput_ratio_vs_bare`` (shoal / bare, 64 callers).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _common import emit, loop_name, machine, median, percentile, run

import shoal


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


async def bare_actor(queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]]) -> None:
    while True:
        request, future = await queue.get()
        future.set_result(request)


async def latency(call: Callable[[Any], Awaitable[Any]], n: int) -> float:
    clock = time.perf_counter_ns
    samples = []
    for i in range(n):
        t0 = clock()
        await call(i)
        samples.append((clock() - t0) / 1000)
    return percentile(samples, 50)


async def throughput(call: Callable[[Any], Awaitable[Any]], callers: int, n: int) -> float:
    per = n // callers

    async def one() -> None:
        for i in range(per):
            await call(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(callers)))
    return per * callers / (time.perf_counter() - t0)


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] = asyncio.Queue()
    actor = asyncio.create_task(bare_actor(queue))

    async def bare(request: Any) -> Any:
        future = loop.create_future()
        queue.put_nowait((request, future))
        return await future

    async with shoal.Node("bench") as node:
        pid = await node.spawn(Echo)

        # Callers call node.call directly, as users do (no wrapper frame).
        via_shoal = functools.partial(node.call, pid)

        results: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, call in (("bare", bare), ("shoal", via_shoal)):
                await throughput(call, 1, args.calls // 10)  # warm up
                results.setdefault(f"{name}_p50", []).append(await latency(call, args.calls))
                results.setdefault(f"{name}_tp1", []).append(
                    await throughput(call, 1, args.calls))
                results.setdefault(f"{name}_tp64", []).append(
                    await throughput(call, 64, args.calls))
    actor.cancel()
    print(f"machine: {machine()}")
    print(f"loop: {loop_name()}")
    print(f"rounds: {args.rounds} x {args.calls} calls")
    for name in ("bare", "shoal"):
        emit(f"{name}_call_p50_us", median(results[f"{name}_p50"]), "us")
        emit(f"{name}_throughput_1_caller", median(results[f"{name}_tp1"]), "calls/s")
        emit(f"{name}_throughput_64_callers", median(results[f"{name}_tp64"]), "calls/s")
    emit("latency_ratio_vs_bare", median(results["shoal_p50"]) / median(results["bare_p50"]))
    emit("throughput_ratio_vs_bare",
         median(results["shoal_tp64"]) / median(results["bare_tp64"]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    run(lambda: main(parser.parse_args()))
