"""Workers that crash under load stay served: the issue's crash-loop case.

Before supervisors, a worker crashing on 1% of requests drained its group
to empty within ~100 ms, and every caller then got ``NoMembers``. Here the
workers run under a supervisor on node ``a`` (a ``shoal run`` process whose
application is the tree of ``crashloop_app``); the test's client node keeps
group calls in flight from another OS process and checks that:

- the group never becomes empty as the caller's node sees it (every join
  and leave it applies is watched through a subscription);
- a caller sees a ``CallError`` exactly for each crashing request, once,
  and nothing else fails: no ``NoMembers``, no other error.
"""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

from crashloop_app import GROUP, WORKERS, crashes

import shoal
from shoal.testing.cluster import LocalCluster, wait_until

HERE = str(Path(__file__).resolve().parent)  # where the node process imports the app from
CALLS = 3_000
CALLERS = 8


async def test_workers_crashing_on_one_percent_of_calls_never_empty_their_group() -> None:
    async with LocalCluster(["a"], app="crashloop_app:CrashLoopTree",
                            env={"PYTHONPATH": HERE}) as cluster:
        client = cluster.client
        await wait_until(lambda: len(client.groups.get_members(GROUP)) == WORKERS,
                         what=f"{WORKERS} workers in {GROUP!r} at the client")
        sizes: list[int] = []
        subscription = client.groups.subscribe(GROUP, limit=100_000)
        members = collections.Counter(subscription.members)
        changes = collections.Counter[str]()

        async def watch() -> None:
            async for event in subscription:
                for pid in event.pids:
                    members[pid] += 1 if event.kind == "join" else -1
                changes[event.kind] += len(event.pids)
                sizes.append(sum(members.values()))

        watcher = asyncio.get_running_loop().create_task(watch())
        numbers = iter(range(1, CALLS + 1))
        outcomes: dict[str, list[int]] = collections.defaultdict(list)

        async def caller() -> None:
            for n in numbers:
                try:
                    assert await client.groups.call(GROUP, n, timeout=10.0) == n
                    outcomes["ok"].append(n)
                except shoal.ShoalError as exc:
                    outcomes[type(exc).__name__].append(n)

        try:
            await asyncio.gather(*(caller() for _ in range(CALLERS)))
            # the last crashes' leaves and joins reach the client after their calls failed
            crashing = [n for n in range(1, CALLS + 1) if crashes(n)]
            await wait_until(lambda: changes == {"leave": len(crashing), "join": len(crashing)},
                             what="a leave and a join at the client for every crash")
        finally:
            subscription.close()
            await watcher
        assert sorted(outcomes["CallError"]) == crashing  # once each, and only those
        assert set(outcomes) == {"ok", "CallError"}, {k: v[:5] for k, v in outcomes.items()}
        assert len(outcomes["ok"]) == CALLS - len(crashing)
        # the workers crashed and were replaced, and the group was never empty
        assert min(sizes) >= 1
        children = await cluster.control("a", "members", "default", GROUP)
        assert len(children) == WORKERS
