"""Chaos runs: a seeded schedule of faults under load, checked for the guarantees.

The shared engine of ``shoal chaos`` and ``shoal demo``:

- :data:`SERVICE_APP`, the sample service the nodes run
  (``shoal.testing.sample``: 4 supervised workers per node in group
  ``"service"``);
- :class:`Load` (``load.py``): callers recording every call and attempt in
  a :class:`~shoal.testing.invariants.Timeline`;
- :class:`Faults` (``faults.py``): injectors recording the facts;
- :func:`fault_sequence` and :func:`run_chaos`: which faults, on which
  node, how long, drawn from ``random.Random(seed)`` alone, so a seed names
  one run; then the checker's report.

Rules:

- Rule 1: the sequence of faults depends on the seed, the fault kinds and
  the node names only, never on timing: the same arguments give the same
  faults in the same order (:func:`fault_sequence`). A run plays them
  until its duration has passed, and always at least one full round
  (every kind once), so a slower machine plays fewer rounds of the same
  sequence, and a short run still covers every kind asked for.
- Rule 2: faults run one at a time and each leaves the cluster whole
  (``faults.py`` Rule 1), so some member is live throughout every call.
- Rule 3: every node process started is stopped in a ``finally``, also
  when the run is cancelled (Ctrl-C).
- Rule 4 (memory): calls are checked and dropped from the timeline
  :data:`SETTLE_AFTER` seconds after they ended (``RollingCheck``), and the
  load's figures are bounded (``load.py``), so a soak of hours holds the
  calls of its last fault and a few seconds, plus a small record per
  second and per fault.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import shoal
from shoal.testing.cluster import LocalCluster, wait_until
from shoal.testing.faults import FaultRecord, Faults
from shoal.testing.invariants import Bounds, Report, RollingCheck, Timeline
from shoal.testing.load import Load, LoadStats, SecondBucket
from shoal.testing.sample import GROUP, WORKERS

__all__ = ["FAULT_KINDS", "SERVICE_APP", "ChaosResult", "FaultRecord", "Faults", "Load",
           "LoadStats", "PlannedFault", "SecondBucket", "fault_sequence", "parse_faults",
           "plan_schedule", "run_chaos"]

SERVICE_APP = "shoal.testing.sample:service"
"""The sample service chaos runs and the demo start on every node."""

FAULT_KINDS = ("kill", "hang", "partition", "store", "restart", "replace", "deploy", "reap",
               "crash")
"""kill: kill -9 a node, restart it once excluded; hang: SIGSTOP then
SIGCONT; partition: cut a node from the callers (or from another node),
then heal; store: the store refuses writes for a while (SQLite); restart:
kill -9 and restart at once under the same name; replace: replace a hung
node (etcd only); deploy: drain and restart every node, one at a time;
reap: run the reap planner (it must find nothing); crash: crash workers
(their supervisors restart them)."""

WARMUP = 1.0  # seconds of load before the first fault
SETTLE_AFTER = 10.0
"""Seconds after a call ended before a run checks it and drops it from the
timeline (``RollingCheck``): a soak keeps only its last calls in memory."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedFault:
    """One fault of a schedule: ``seconds`` long (hang, partition, store),
    followed by ``gap`` seconds of load alone."""

    kind: str
    node: str
    peer: str | None = None
    """The other end of a partition (a node, or the client)."""
    seconds: float = 0.0
    count: int = 0
    """Workers to crash."""
    gap: float = 0.5

    def text(self) -> str:
        what = {"partition": f"{self.node}<->{self.peer} for {self.seconds:.1f}s",
                "hang": f"{self.node} for {self.seconds:.1f}s",
                "store": f"for {self.seconds:.1f}s", "crash": f"{self.count} worker(s)",
                "deploy": "every node", "reap": "the store"}.get(self.kind, self.node)
        return f"{self.kind} {what}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChaosResult:
    """What a chaos run found."""

    seed: int
    report: Report
    load: LoadStats
    faults: list[FaultRecord]
    schedule: list[PlannedFault]

    @property
    def ok(self) -> bool:
        return self.report.ok

    def summary(self) -> str:
        lines = [f"seed: {self.seed}", self.load.summary()]
        errors = ", ".join(f"{name}: {n}" for name, n in sorted(self.load.failures_by_error
                                                                 .items()))
        if errors:
            lines.append(f"failures by error: {errors}")
        return "\n".join([*lines, self.report.summary()])


def parse_faults(text: str | Iterable[str]) -> list[str]:
    """Fault kinds from ``"kill,hang"`` or a list, checked, in the order given.

    Raises:
        BadArgument: an unknown kind, or none.
    """
    kinds = [k.strip() for k in (text.split(",") if isinstance(text, str) else text)]
    kinds = [k for k in kinds if k]
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown or not kinds:
        raise shoal.BadArgument("faults", ",".join(unknown) or text,
                                f"a comma-separated list of {', '.join(FAULT_KINDS)}")
    return list(dict.fromkeys(kinds))


def fault_sequence(seed: int, faults: Sequence[str], names: Sequence[str],
                   client: str = "test-client") -> Iterator[PlannedFault]:
    """The endless sequence of faults a seed names (Rule 1): rounds of the
    kinds, each kind once per round in a seeded order, on seeded nodes."""
    rng = random.Random(seed)
    kinds = parse_faults(faults)
    while True:
        for kind in rng.sample(kinds, len(kinds)):
            node = rng.choice(list(names))
            seconds = round(rng.uniform(1.0, 3.0), 2)
            gap = round(rng.uniform(0.3, 1.0), 2)
            peer = None
            if kind == "partition":
                others = [n for n in names if n != node]
                peer = client if not others or rng.random() < 0.67 else rng.choice(others)
            count = rng.randint(1, 3) if kind == "crash" else 0
            if kind not in ("hang", "partition", "store"):
                seconds = 0.0
            yield PlannedFault(kind=kind, node=node, peer=peer, seconds=seconds, count=count,
                               gap=gap)


def plan_schedule(seed: int, count: int, faults: Sequence[str], names: Sequence[str],
                  client: str = "test-client") -> list[PlannedFault]:
    """The first ``count`` faults of :func:`fault_sequence`."""
    return list(itertools.islice(fault_sequence(seed, faults, names, client), count))


async def inject(faults: Faults, planned: PlannedFault) -> list[FaultRecord]:
    """Carry out one planned fault; the records it made."""
    before = len(faults.log)
    kind, node = planned.kind, planned.node
    if kind == "kill":
        await faults.kill9(node)
        await faults.restart(node)
    elif kind == "hang":
        await faults.hang(node, planned.seconds)
    elif kind == "partition":
        await faults.partition(node, planned.peer or faults.cluster.client_name,
                               planned.seconds)
    elif kind == "store":
        await faults.store_outage(planned.seconds)
    elif kind == "restart":
        await faults.restart_same_name(node)
    elif kind == "replace":
        await faults.replace_hung(node)
    elif kind == "deploy":
        await faults.rolling_deploy()
    elif kind == "reap":
        await faults.reap()
    elif kind == "crash":
        await faults.crash_workers(planned.count)
    return faults.log[before:]


async def run_chaos(*, seed: int, duration: float, faults: Sequence[str] = FAULT_KINDS,
                    nodes: int = 3, store: str | None = None, callers: int = 8,
                    on_progress: Callable[[FaultRecord], None] | None = None,
                    heartbeat_timeout: float = 1.0, call_timeout: float = 3.0,
                    bounds: Bounds | None = None) -> ChaosResult:
    """Play the seeded faults (:func:`fault_sequence`) against a fresh
    :class:`LocalCluster` of ``nodes`` nodes running :data:`SERVICE_APP`,
    under ``callers`` callers' load, and check the timeline.

    Args:
        seed: names the run (print it: the same seed gives the same faults).
        duration: seconds of faults under load: faults are played until
            then (at least one of each kind, however long that takes).
        faults: fault kinds (:data:`FAULT_KINDS`) to draw from.
        store: a store URL (default: SQLite in a temporary directory, or
            ``$SHOAL_TEST_STORE``); an etcd URL naming no cluster gets one
            of its own, ``shoal-chaos-SEED``.
        on_progress: called with each fault's record as it ends.
        heartbeat_timeout: the nodes' (a hung node is excluded after it).
        call_timeout: each call's deadline; above ``heartbeat_timeout`` so a
            call caught on a hung node can still be retried elsewhere.
        bounds: the checker's bounds (default :class:`Bounds`).

    Raises:
        BadArgument: unknown fault kinds, or fewer than 2 nodes.
    """
    if nodes < 2:
        raise shoal.BadArgument("nodes", nodes, "at least 2 (one is faulted at a time)")
    kinds = parse_faults(faults)
    names = [f"n{i + 1}" for i in range(nodes)]
    if store is not None and store.startswith("etcd://") and "cluster=" not in store:
        # Never join a real cluster of a shared etcd: the run's own.
        store += f"{'&' if '?' in store else '?'}cluster=shoal-chaos-{seed}"
    cluster = LocalCluster(names, store=store, app=SERVICE_APP,
                           heartbeat_timeout=heartbeat_timeout,
                           partitionable="partition" in kinds)
    sequence = fault_sequence(seed, kinds, names, cluster.client_name)
    played: list[PlannedFault] = []
    timeline = Timeline()
    verdict = RollingCheck(timeline, bounds)
    try:
        await cluster.start()
        members = cluster.client.groups
        await wait_until(lambda: len(members.get_members(GROUP)) >= nodes * WORKERS,
                         timeout=30.0, what=f"{nodes * WORKERS} members of {GROUP!r}")
        injector = Faults(cluster, timeline, GROUP, rng=random.Random(seed))
        load = Load(cluster.client, GROUP, timeline, callers=callers, timeout=call_timeout)
        load.start()
        loop = asyncio.get_running_loop()
        until = loop.time() + duration
        try:
            await asyncio.sleep(WARMUP)
            while len(played) < len(kinds) or loop.time() < until:
                planned = next(sequence)
                played.append(planned)
                for record in await inject(injector, planned):
                    if on_progress is not None:
                        on_progress(record)
                await asyncio.sleep(planned.gap)
                verdict.settle(loop.time() - SETTLE_AFTER)
        finally:
            stats = await load.stop()
    finally:
        await cluster.stop()
    return ChaosResult(seed=seed, report=verdict.report(), load=stats,
                       faults=injector.log, schedule=played)
