"""Failover: how fast a dead, hung or new member changes where calls go.

Real node processes on loopback (``LocalCluster``: three nodes and an
in-process client node, the embedded SQLite store), measured on the client:

- kill -9 of a node under a steady stream of group calls (8 callers,
  ``idempotent=True``, ``round_robin`` over 2 members on each of 3 nodes):
  ``kill9_last_routed_ms`` is the start of the last call attempt routed to
  the killed node minus the kill time (goal <= 5 ms; Erlang's pg drops a
  dead node's members ~3 ms after the connection breaks);
  ``kill9_unroutable_ms`` when the client saw the connection break;
  ``kill9_members_removed_ms`` when its members left the client's view (its
  store session ended: the SQLite lock probe). Median over ``--rounds``
  clusters, and the worst round.
- SIGSTOP of a node with the default heartbeat timeout (2 s):
  ``sigstop_unroutable_s``, from the signal to its members being
  unroutable at the client (goal <= 2.5 s).
- membership propagation: a node joins a fresh worker to a group and sends
  back the ``time.monotonic()`` just before its join; the client timestamps
  the join event of its subscription (CLOCK_MONOTONIC is one clock for every
  process of the host). ``join_to_select_p50_ms`` / ``_p99_ms`` (goal <= 5 ms
  p99 on the embedded store), ``--joins`` samples.

Last line: ``kill9_last_routed_ms: X`` (median over the rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from _common import emit, loop_name, machine, median, percentile, run

import shoal
from shoal.testing import agent
from shoal.testing.cluster import LocalCluster, wait_until

HERE = Path(__file__).resolve().parent
ENV = {"PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
APP = "failover:setup"
SCOPE = "bench"


class Joiner(shoal.GenServer):
    """Runs on each node: spawns a worker, joins it, answers when it joined."""

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        group = request
        pid = await self.node.spawn(agent.Echo)
        t0 = time.monotonic()
        await self.node.groups.join(group, pid)
        return [pid, t0]


async def setup(node: shoal.Node) -> None:
    """The node program: the test agent plus a ``Joiner`` (``shoal run failover:setup``)."""
    await agent.setup(node)
    joiner = await node.spawn(Joiner)
    await node.scope(SCOPE).join(node.name, joiner)


def _cluster(**options: Any) -> LocalCluster:
    return LocalCluster(3, app=APP, env=ENV, client_name="bench-client", **options)


class _Recorder:
    """Every group call attempt the client makes: (start, node), as
    ``Groups.call(observe=...)`` reports them (on ``time.monotonic()``)."""

    def __init__(self) -> None:
        self.starts: list[tuple[float, str]] = []
        self._loop_time = asyncio.get_running_loop().time

    def __call__(self, pid: shoal.Pid, started: float, ended: float,
                 error: shoal.ShoalError | None) -> None:
        self.starts.append((time.monotonic() - (self._loop_time() - started), pid.node))


async def kill9_round(callers: int) -> dict[str, float]:
    async with _cluster(heartbeat_timeout=2.0) as cluster:
        client = cluster.client
        for name in cluster.names:
            await cluster.spawn(name, group="g", count=2)
        await wait_until(lambda: len(client.groups.get_members("g")) == 6, what="members")
        victim = "n2"
        victim_pids = {p for p in client.groups.get_members("g") if p.node == victim}
        removed: list[float] = []
        sub = client.groups.subscribe("g")

        async def watch_leaves() -> None:
            left: set[shoal.Pid] = set()
            async for event in sub:
                if event.kind == "leave":
                    left |= set(event.pids) & victim_pids
                    if left == victim_pids:
                        removed.append(time.monotonic())
                        return

        unroutable: list[float] = []
        on_peer_down = client._remote.on_peer_down

        def peer_down(name: str, creation: int, reason: str) -> None:
            if name == victim:
                unroutable.append(time.monotonic())
            on_peer_down(name, creation, reason)

        client._remote.on_peer_down = peer_down  # type: ignore[method-assign]
        recorder = _Recorder()
        stop = asyncio.Event()
        failures: list[BaseException] = []
        calls = 0

        async def caller() -> None:
            nonlocal calls
            while not stop.is_set():
                try:
                    await client.groups.call("g", "x", timeout=5.0, strategy="round_robin",
                                         idempotent=True, observe=recorder)
                except shoal.ShoalError as exc:
                    failures.append(exc)
                calls += 1

        watcher = asyncio.create_task(watch_leaves())
        tasks = [asyncio.create_task(caller()) for _ in range(callers)]
        await wait_until(lambda: calls >= 2000, what="warm-up calls", interval=0.01)
        killed = time.monotonic()
        cluster.kill9(victim)
        await asyncio.wait_for(watcher, 10)
        mark = calls
        await wait_until(lambda: calls >= mark + 2000, what="calls after the kill",
                         interval=0.01)
        stop.set()
        await asyncio.gather(*tasks)
        sub.close()
        last = max(t for t, node in recorder.starts if node == victim)
        if failures:
            print(f"warning: {len(failures)} group calls failed: {failures[0]!r}")
        return {"last_routed_ms": (last - killed) * 1000,
                "unroutable_ms": (unroutable[0] - killed) * 1000 if unroutable else float("nan"),
                "removed_ms": (removed[0] - killed) * 1000,
                "failures": len(failures), "calls": calls}


async def sigstop_rounds(rounds: int) -> list[float]:
    out = []
    async with _cluster() as cluster:  # default heartbeat timeout
        client = cluster.client
        pids = await cluster.spawn("n2", group="g")
        # The join reaches the client through the store. Stopping n2 before
        # its write left would leave the client with a routable node and no
        # member in "g" once n2 continues (NoMembers until the write lands).
        await wait_until(lambda: client.groups.get_members("g") == pids,
                         what="n2's member at the client")
        for _ in range(rounds):
            await wait_until(lambda: client.cluster_view.is_routable("n2"), what="n2 routable")
            stopped = time.monotonic()
            cluster.sigstop("n2")
            try:
                await wait_until(lambda: not client.cluster_view.is_routable("n2"), timeout=10,
                                 what="n2 unroutable", interval=0.001)
                out.append(time.monotonic() - stopped)
            finally:
                cluster.sigcont("n2")
            # Its session lives on (TTL 5 s): n2 answers again, same incarnation.
            await wait_until(lambda: client.cluster_view.is_routable("n2"), what="n2 back")
            await client.groups.call("g", "x", timeout=5.0)
    return out


async def join_samples(count: int) -> list[float]:
    async with _cluster(heartbeat_timeout=2.0) as cluster:
        client = cluster.client
        arrived: dict[shoal.Pid, float] = {}
        sub = client.groups.subscribe("joins")

        async def watch() -> None:
            async for event in sub:
                if event.kind == "join":
                    now = time.monotonic()
                    for pid in event.pids:
                        # Selection reads the same table the event came from.
                        assert pid in client._table.routable("default", "joins")
                        arrived[pid] = now

        watcher = asyncio.create_task(watch())
        scope = await client.open_scope(SCOPE)  # a node follows only the scopes it opened
        joiners = {name: scope.get_members(name)[0] for name in cluster.names}
        samples = []
        for i in range(count + 20):  # the first 20 warm up
            name = cluster.names[i % len(cluster.names)]
            pid, t0 = await client.call(joiners[name], "joins", 5.0)
            await wait_until(lambda pid=pid: pid in arrived, what="the join event")
            if i >= 20:
                samples.append((arrived[pid] - t0) * 1000)
        sub.close()
        watcher.cancel()
        return samples


async def main_async(args: argparse.Namespace) -> None:
    rounds = [await kill9_round(args.callers) for _ in range(args.rounds)]
    stops = await sigstop_rounds(args.sigstop_rounds)
    joins = await join_samples(args.joins)

    print(f"kill9_rounds: {args.rounds} (callers {args.callers}, "
          f"~{median([r['calls'] for r in rounds]):.0f} calls each, "
          f"{sum(int(r['failures']) for r in rounds)} failed)")
    for r in rounds:
        print(f"kill9_round: last_routed {r['last_routed_ms']:.3f} ms, unroutable "
              f"{r['unroutable_ms']:.3f} ms, members_removed {r['removed_ms']:.3f} ms")
    emit("kill9_unroutable_ms", median([r["unroutable_ms"] for r in rounds]), "ms")
    emit("kill9_members_removed_ms", median([r["removed_ms"] for r in rounds]), "ms")
    emit("kill9_members_removed_max_ms", max(r["removed_ms"] for r in rounds), "ms")
    emit("kill9_last_routed_max_ms", max(r["last_routed_ms"] for r in rounds), "ms")
    emit("sigstop_unroutable_s", median(stops), "s")
    emit("sigstop_unroutable_max_s", max(stops), "s")
    emit("join_to_select_p50_ms", percentile(joins, 50), "ms")
    emit("join_to_select_p99_ms", percentile(joins, 99), "ms")
    emit("join_to_select_max_ms", max(joins), "ms")
    print(f"join_samples: {len(joins)}")
    emit("kill9_last_routed_ms", median([r["last_routed_ms"] for r in rounds]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="kill -9 rounds (clusters)")
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--sigstop-rounds", type=int, default=3)
    parser.add_argument("--joins", type=int, default=1000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"loop: {loop_name()}")
    print(f"store: sqlite (embedded), python {sys.version.split()[0]}")
    run(lambda: main_async(args))


if __name__ == "__main__":
    main()
