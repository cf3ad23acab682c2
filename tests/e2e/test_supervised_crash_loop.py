"""Workers that crash under load stay served: the issue's crash-loop case.

Before supervisors, a worker crashing on 1% of requests drained its group
to empty within ~100 ms, and every caller then got ``NoMembers``. Here the
workers run under a supervisor on node ``a`` (a ``shoal run`` process whose
application is the tree of ``crashloop_app``); the test's client node keeps
group calls in flight from another OS process and checks that:

- the group never becomes empty as the caller's node sees it: its size
  is read before every call and after every change the node applies (a
  subscription wakes a watcher for each one);
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

        async def watch() -> None:
            async for _event in subscription:
                # The table as this node applied the change: a whole batch
                # at once (a re-sync replaces a node's view in one step, and
                # its events list every leave before every join).
                sizes.append(len(client.groups.get_members(GROUP)))

        watcher = asyncio.get_running_loop().create_task(watch())
        numbers = iter(range(1, CALLS + 1))
        outcomes: dict[str, list[int]] = collections.defaultdict(list)
        crashed: set[shoal.Pid] = set()

        async def caller() -> None:
            for n in numbers:
                sizes.append(len(client.groups.get_members(GROUP)))
                try:
                    assert await client.groups.call(GROUP, n, timeout=10.0) == n
                    outcomes["ok"].append(n)
                except shoal.CallError as exc:
                    outcomes["CallError"].append(n)
                    crashed.add(exc.pid)
                except shoal.ShoalError as exc:
                    outcomes[type(exc).__name__].append(n)

        try:
            await asyncio.gather(*(caller() for _ in range(CALLERS)))
            # the last replacement's join reaches the client after its call failed
            await wait_until(lambda: len(set(client.groups.get_members(GROUP)) - crashed)
                             == WORKERS, what=f"{WORKERS} live workers at the client again")
        finally:
            subscription.close()
            await watcher
        crashing = [n for n in range(1, CALLS + 1) if crashes(n)]
        assert sorted(outcomes["CallError"]) == crashing  # once each, and only those
        assert set(outcomes) == {"ok", "CallError"}, {k: v[:5] for k, v in outcomes.items()}
        assert len(outcomes["ok"]) == CALLS - len(crashing)
        # the group was never empty, and every crashed worker was replaced
        assert min(sizes) >= 1 and len(sizes) > CALLS
        final = client.groups.get_members(GROUP)
        assert len(crashed) == len(crashing) and not crashed & set(final)
        assert [await client.call(pid, 1) for pid in final] == [1] * WORKERS  # all alive
