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


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one}" if n == 1 else f"{n} {many or one + 's'}"


async def run_demo(*, workers: int = 4, callers: int = 16, calls: int = 20_000,
                   strategy: str = "least_loaded",
                   echo: Callable[[str], Any] = print) -> DemoReport:
    """Run the demo on an in-process node; return what callers saw.

    Args:
        workers: at least 3: one crashes and one is killed midway, and the
            callers need one left to be unaffected.
        callers: concurrent callers; the ``calls`` are shared among them as
            evenly as possible (a caller may get none when there are more
            callers than calls).
        calls: group calls made in all, exactly.

    Raises:
        BadArgument: fewer than 3 workers, or fewer than 1 caller or call.
    """
    for argument, value, least in (("workers", workers, 3), ("callers", callers, 1),
                                   ("calls", calls, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise shoal.BadArgument(argument, value, f"an int >= {least}")
    async with shoal.Node("demo") as node:
        pids = [await node.spawn(Worker) for _ in range(workers)]
        await node.groups.join("workers", pids)
        before = len(node.groups.get_members("workers"))
        echo(f"{_count(before, 'worker')} joined group 'workers'; {_count(callers, 'caller')} "
             f"will make {_count(calls, 'group call')} (strategy {strategy})")
        failures: list[str] = []
        wrong = 0
        done = 0
        half = asyncio.Event()
        share, extra = divmod(calls, callers)

        async def caller(index: int) -> None:
            nonlocal wrong, done
            first = index * share + min(index, extra)
            for n in range(first, first + share + (index < extra)):
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
        everyone = asyncio.gather(*(caller(i) for i in range(callers)))
        midway: asyncio.Future[Any] = asyncio.ensure_future(half.wait())
        # Every call counts towards `done`, so half is reached; waiting on the
        # callers too means a caller that died of a bug cannot hang the demo.
        await asyncio.wait([everyone, midway], return_when=asyncio.FIRST_COMPLETED)
        midway.cancel()
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
        await everyone
        seconds = time.perf_counter() - started
        after = len(node.groups.get_members("workers"))
        report = DemoReport(calls=done, failures=len(failures), wrong_replies=wrong,
                            members_before=before, members_after=after, seconds=seconds)
        replies = _count(wrong, "wrong reply", "wrong replies")
        echo(f"{_count(done, 'group call')} in {seconds:.2f}s ({done / seconds:,.0f}/s): "
             f"{len(failures)} failed, {replies}; group now has {_count(after, 'member')}")
        for line in failures[:5]:
            echo(f"  failure: {line}")
        echo("demo passed: callers were unaffected" if report.ok else "demo FAILED")
        return report
