"""The demo behind ``shoal demo``: group calls that survive dying workers.

A group of workers serves calls from many concurrent callers. Midway, one
worker crashes inside a handler (a bug), and another is killed outright.
Each death takes the worker out of the group in its exit path (G1), so the
callers' next selections never see it; the one call in flight on the
crashing worker gets the crash, and the group call retries only requests
that provably never started (G3). The demo counts what callers saw.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import shoal

__all__ = ["DemoReport", "Worker", "run_demo"]


class Worker(shoal.GenServer):
    """Answers ``("work", n)`` with ``n * 2``; ``"crash"`` makes it raise."""

    async def init(self) -> None:
        self.served = 0

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if request == "crash":
            raise RuntimeError("worker bug triggered on purpose")
        if isinstance(request, list | tuple) and len(request) == 2 and request[0] == "work":
            self.served += 1
            await asyncio.sleep(0)  # yield, as a real handler doing IO would
            return request[1] * 2
        raise shoal.BadRequest(request)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoReport:
    """What the demo's callers saw."""

    calls: int
    failures: int
    wrong_replies: int
    members_before: int
    members_after: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.failures == 0 and self.wrong_replies == 0 and \
            self.members_after == self.members_before - 2


async def run_demo(*, workers: int = 4, callers: int = 16, calls: int = 20_000,
                   strategy: str = "least_loaded",
                   echo: Callable[[str], Any] = print) -> DemoReport:
    """Run the demo on an in-process node; return what callers saw."""
    async with shoal.Node("demo") as node:
        pids = [await node.spawn(Worker) for _ in range(workers)]
        await node.groups.join("workers", pids)
        before = len(node.groups.get_members("workers"))
        echo(f"{before} workers joined group 'workers'; {callers} callers start "
             f"{calls} group calls (strategy {strategy})")
        failures: list[str] = []
        wrong = 0
        done = 0
        per_caller = calls // callers
        half = asyncio.Event()

        async def caller(index: int) -> None:
            nonlocal wrong, done
            for i in range(per_caller):
                n = index * per_caller + i
                try:
                    # Doubling a number has no side effects, so the request is
                    # idempotent: a call whose worker was killed mid-request may
                    # be retried on another member (G3 allows it only then).
                    reply = await node.groups.call("workers", ("work", n), timeout=2.0,
                                                   strategy=strategy, idempotent=True)
                    if reply != n * 2:
                        wrong += 1
                except shoal.ShoalError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                done += 1
                if done >= calls // 2:
                    half.set()

        started = time.perf_counter()
        tasks = [asyncio.create_task(caller(i)) for i in range(callers)]
        await half.wait()
        victim, target = pids[0], pids[1]
        echo(f"midway: worker {victim} crashes in a handler, worker {target} is killed")
        try:
            await node.call(victim, "crash", timeout=2.0)
        except shoal.CallError as exc:
            echo(f"  the crashing call itself got: CallError({exc.remote_type}: "
                 f"{exc.remote_message})")
        node.kill(target)
        still = [p for p in (victim, target) if p in node.groups.get_members("workers")]
        echo(f"  dead workers still in the group right after: {len(still)}")
        await asyncio.gather(*tasks)
        seconds = time.perf_counter() - started
        after = len(node.groups.get_members("workers"))
        total = per_caller * callers
        report = DemoReport(calls=total, failures=len(failures), wrong_replies=wrong,
                            members_before=before, members_after=after, seconds=seconds)
        echo(f"{total} group calls in {seconds:.2f}s ({total / seconds:,.0f}/s): "
             f"{len(failures)} failed, {wrong} wrong replies; group now has {after} members")
        for line in failures[:5]:
            echo(f"  failure: {line}")
        echo("demo passed: callers were unaffected" if report.ok else "demo FAILED")
        return report
