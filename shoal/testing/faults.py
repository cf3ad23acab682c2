"""Faults: injectors for a LocalCluster that record what they did in a Timeline.

Each injector of :class:`Faults` acts on a :class:`LocalCluster` and records
the facts the invariant checker needs (``shoal.testing.invariants``) at the
instant they happen, on the event loop's clock: a node down (kill -9,
SIGSTOP, a partition from the callers), up again, an incarnation replaced,
a worker's exit, a graceful stop with the processes that ran ``terminate``
(read from the node's log, where the sample service logs ``terminate ran
for <pid>``), a removal by a tool. Each returns a :class:`FaultRecord`,
also appended to :attr:`Faults.log`.

Rules:

- Rule 1: one injector at a time leaves the cluster whole again before it
  returns (a node killed is restarted only when asked: :meth:`Faults.restart`),
  so the checker's "a live member existed" holds on the other nodes.
- Rule 2: every wait is bounded; a node that does not come back raises
  ``TimeoutError`` naming it.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
from dataclasses import dataclass

import shoal
from shoal.pid import Pid
from shoal.testing.cluster import LocalCluster, wait_until
from shoal.testing.invariants import Timeline
from shoal.testing.sample import TERMINATE_LINE

__all__ = ["FaultRecord", "Faults", "terminated_in_log"]

_TERMINATED = re.compile(re.escape(TERMINATE_LINE) + r" (<[^>\s]+>)")
RECOVERY_TIMEOUT = 30.0
"""Longest wait for a node to serve again after a fault, in seconds."""


def terminated_in_log(text: str) -> set[Pid]:
    """The pids a node's log says ran ``terminate`` (sample service lines)."""
    found = set()
    for match in _TERMINATED.finditer(text):
        try:
            found.add(Pid.parse(match.group(1)))
        except (ValueError, shoal.ShoalError):
            continue
    return found


@dataclass(slots=True, kw_only=True)
class FaultRecord:
    """One fault: what, on which node, when (loop time), and what was seen."""

    kind: str
    node: str | None
    start: float
    end: float
    detail: str
    excluded_after: float | None = None
    """Seconds from the fault until the callers' node stopped routing to
    the node (None: not measured, or it was never excluded)."""
    origin: float = 0.0
    """Loop time the injectors were created at: :meth:`line` counts from it."""

    def line(self, origin: float | None = None) -> str:
        """One line for a progress display; times relative to ``origin``
        (default: :attr:`origin`)."""
        origin = self.origin if origin is None else origin
        where = f" {self.node}" if self.node else ""
        excluded = ("" if self.excluded_after is None
                    else f", excluded after {self.excluded_after:.2f}s")
        return (f"t={self.start - origin:6.1f}s {self.kind}{where}: {self.detail} "
                f"({self.end - self.start:.1f}s{excluded})")


class Faults:
    """Fault injectors on ``cluster``, recording into ``timeline`` (module header).

    Args:
        cluster: a started cluster (its app the sample service, or one whose
            workers log ``terminate ran for <pid>`` for :meth:`rolling_deploy`).
        timeline: where the facts go (the one the load records into).
        group: the group :meth:`crash_workers` and :meth:`rolling_deploy` look at.
        rng: chooses which workers crash (default: a fresh ``random.Random()``).
        scope: the group's scope.
    """

    def __init__(self, cluster: LocalCluster, timeline: Timeline, group: str = "service", *,
                 rng: random.Random | None = None, scope: str = "default") -> None:
        self.cluster, self.timeline, self.group = cluster, timeline, group
        self.rng = rng or random.Random()
        self.groups = cluster.client.scope(scope)
        self.log: list[FaultRecord] = []
        self.origin = asyncio.get_running_loop().time()

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _done(self, kind: str, node: str | None, start: float, detail: str,
              excluded_after: float | None = None) -> FaultRecord:
        record = FaultRecord(kind=kind, node=node, start=start, end=self._now(),
                             detail=detail, excluded_after=excluded_after, origin=self.origin)
        self.log.append(record)
        return record

    async def _excluded(self, name: str, since: float, within: float) -> float | None:
        """Seconds until the client's view stopped routing to ``name``, if
        within ``within`` seconds."""
        view = self.cluster.client.cluster_view
        try:
            await wait_until(lambda: not view.is_routable(name), timeout=within,
                             what=f"node {name} excluded")
        except TimeoutError:
            return None
        return self._now() - since

    async def _hold(self, until: float) -> None:
        """Keep a fault in place until loop time ``until``."""
        await asyncio.sleep(max(0.0, until - self._now()))

    async def _routable(self, name: str) -> None:
        view = self.cluster.client.cluster_view
        await wait_until(lambda: view.is_routable(name), timeout=RECOVERY_TIMEOUT,
                         what=f"node {name} routable again")

    # -- a node dies or hangs ------------------------------------------------------------

    async def kill9(self, name: str) -> FaultRecord:
        """SIGKILL node ``name``; returns once the callers' node excluded it."""
        start = self._now()
        creation = self.cluster.nodes[name].creation
        self.cluster.kill9(name)
        self.timeline.node_down(name, start, "kill -9", creation=creation)
        excluded = await self._excluded(name, start, RECOVERY_TIMEOUT)
        await self.cluster.wait_exit(name)
        return self._done("kill", name, start, "kill -9", excluded)

    async def restart(self, name: str) -> FaultRecord:
        """Start node ``name`` again under its name once its process ended;
        records its incarnation replaced, and the node up once the callers
        see the new one."""
        start = self._now()
        old = self.cluster.nodes[name]
        await self.cluster.wait_exit(name, timeout=RECOVERY_TIMEOUT)
        await self._start_again(name, old.creation)
        return self._done("restart", name, start,
                          f"incarnation {old.creation} -> {self.cluster.nodes[name].creation}")

    async def _start_again(self, name: str, old_creation: int | None) -> None:
        await self.cluster.start_node(name, wait=False)
        if old_creation is not None:
            self.timeline.incarnation_replaced(name, old_creation, self._now())
        await self.cluster.wait_node(name, timeout=RECOVERY_TIMEOUT)
        self.timeline.node_up(name, self._now())

    async def restart_same_name(self, name: str) -> FaultRecord:
        """kill -9 node ``name`` and start it again at once, under its name,
        without waiting for the cluster to notice the death."""
        start = self._now()
        old = self.cluster.nodes[name].creation
        self.cluster.kill9(name)
        self.timeline.node_down(name, start, "kill -9, restarted at once", creation=old)
        await self.cluster.wait_exit(name)
        await self._start_again(name, old)
        return self._done("restart_same_name", name, start,
                          f"incarnation {old} -> {self.cluster.nodes[name].creation}")

    async def hang(self, name: str, seconds: float) -> FaultRecord:
        """SIGSTOP node ``name`` for ``seconds``, then SIGCONT; returns once
        the callers route to it again."""
        start = self._now()
        self.cluster.sigstop(name)
        self.timeline.node_down(name, start, "SIGSTOP",
                                creation=self.cluster.nodes[name].creation)
        excluded = await self._excluded(name, start, seconds)
        await self._hold(start + seconds)
        self.cluster.sigcont(name)
        self.timeline.node_up(name, self._now())
        await self._routable(name)
        return self._done("hang", name, start, f"SIGSTOP for {seconds:.1f}s, then SIGCONT",
                          excluded)

    async def replace_hung(self, name: str) -> FaultRecord:
        """Hang node ``name`` and start a replacement under its name (etcd
        only: its lease runs out; the hung one fences itself on SIGCONT).
        On SQLite a hung node keeps its name by design: skipped, saying so."""
        start = self._now()
        if self.cluster.store.startswith("sqlite://"):
            return self._done("replace_hung", name, start,
                              "skipped: needs etcd (on the embedded SQLite store a hung node "
                              "keeps its name by design)")
        old = self.cluster.nodes[name]
        self.cluster.sigstop(name)
        self.timeline.node_down(name, start, "SIGSTOP, replaced while hung",
                                creation=old.creation)
        excluded = await self._excluded(name, start, RECOVERY_TIMEOUT)
        view = self.cluster.client.cluster_view

        def released() -> bool:  # its lease ran out: the name is free
            peer = view.peer(name)
            return peer is None or peer.creation != old.creation
        await wait_until(released, timeout=RECOVERY_TIMEOUT,
                         what=f"node {name}'s session to expire")
        await self._start_again(name, old.creation)
        old.signal(signal.SIGCONT)
        code = await asyncio.wait_for(old.process.wait(), RECOVERY_TIMEOUT)
        return self._done("replace_hung", name, start,
                          f"incarnation {old.creation} -> {self.cluster.nodes[name].creation}; "
                          f"the hung one exited {code} on SIGCONT", excluded)

    # -- the network and the store ------------------------------------------------------

    async def partition(self, a: str, b: str, seconds: float) -> FaultRecord:
        """Cut the link between ``a`` and ``b`` (either may be the client)
        for ``seconds``, then heal it (needs ``partitionable=True``)."""
        cluster = self.cluster
        start = self._now()
        cluster.cut(a, b)
        client = cluster.client_name
        other = b if a == client else a if b == client else None
        excluded = None
        if other is not None:
            self.timeline.node_down(other, start, "partitioned from the callers",
                                    creation=cluster.nodes[other].creation)
            excluded = await self._excluded(other, start, seconds)
        else:
            self.timeline.events.append((start, f"link {a} <-> {b} cut"))
        await self._hold(start + seconds)
        cluster.heal(a, b)
        if other is not None:
            self.timeline.node_up(other, self._now())
            await self._routable(other)
        else:
            self.timeline.events.append((self._now(), f"link {a} <-> {b} healed"))
        return self._done("partition", f"{a}<->{b}", start,
                          f"cut for {seconds:.1f}s, then healed", excluded)

    async def store_outage(self, seconds: float) -> FaultRecord:
        """The embedded store refuses writes for ``seconds`` (SQLite only;
        skipped on etcd, saying so)."""
        start = self._now()
        if not self.cluster.store.startswith("sqlite://"):
            return self._done("store_outage", None, start,
                              "skipped: stop and start your etcd server for an etcd outage")
        async with self.cluster.store_outage():
            self.timeline.events.append((self._now(), "store refuses writes"))
            await self._hold(start + seconds)
        self.timeline.events.append((self._now(), "store writable again"))
        return self._done("store_outage", None, start, f"writes refused for {seconds:.1f}s")

    # -- processes and tools -----------------------------------------------------------

    async def crash_workers(self, n: int) -> FaultRecord:
        """Make ``n`` members of the group crash (request ``"crash"``, from
        the client, outside any load); returns once the group is back to
        its size (their supervisors restarted them)."""
        start = self._now()
        members = sorted(self.groups.get_members(self.group))
        size = len(members)
        chosen = self.rng.sample(members, min(n, size))
        crashed: list[Pid] = []
        for pid in chosen:
            try:
                await self.cluster.client.call(pid, "crash", 5.0)
            except shoal.CallError:
                self.timeline.process_exited(pid, self._now())
                crashed.append(pid)
            except shoal.ShoalError:
                continue  # already gone: nothing crashed

        def restarted() -> bool:
            members = self.groups.get_members(self.group)
            return len(members) >= size and not set(crashed) & set(members)
        await wait_until(restarted, timeout=RECOVERY_TIMEOUT,
                         what=f"group {self.group!r} back to {size} members")
        return self._done("crash", None, start,
                          f"{len(crashed)} worker(s) crashed, restarted by their supervisors")

    async def rolling_deploy(self) -> FaultRecord:
        """Drain each node (the admin drain of ``shoal drain``) and start it
        again, one at a time; records each graceful stop with the processes
        that logged ``terminate ran for`` (G4)."""
        from shoal.cli.operate import drain

        start = self._now()
        cluster = self.cluster
        missing = total = 0
        for name in cluster.names:
            old = cluster.nodes[name]
            processes = {p for p in self.groups.get_members(self.group)
                         if p.node == name and p.creation == old.creation}
            await drain(cluster.client, name, RECOVERY_TIMEOUT)
            await cluster.wait_exit(name, timeout=RECOVERY_TIMEOUT)
            stopped = self._now()
            terminated = terminated_in_log(old.log_text())
            missing += len(processes - terminated)
            total += len(processes)
            self.timeline.graceful_stop(name, stopped, processes, terminated)
            self.timeline.node_down(name, stopped, "drained and exited",
                                    creation=old.creation)
            await self._start_again(name, old.creation)
        return self._done("deploy", None, start,
                          f"{len(cluster.names)} node(s) drained and restarted one at a time; "
                          f"{total - missing} of {total} worker(s) ran terminate")

    async def reap(self) -> FaultRecord:
        """Run ``shoal reap``'s planner against the store (and apply what it
        plans, as ``--apply`` would); each removal is recorded for G5. On a
        healthy cluster it finds nothing."""
        from shoal.cli.reaping import apply, gather
        from shoal.membership.reap import DEFAULT_MAX_DEAD_SHARE, plan_reap

        start = self._now()
        client, url = self.cluster.client, self.cluster.store
        evidence = await gather(client, url, None, 5.0)
        plan = plan_reap(evidence.entries, evidence.owners, max_dead_share=DEFAULT_MAX_DEAD_SHARE)
        if not plan.remove:
            return self._done("reap", None, start,
                              f"nothing to reap ({plan.live} live member(s))")
        done = await apply(client, url, None, plan, max_dead_share=DEFAULT_MAX_DEAD_SHARE,
                           timeout=5.0)
        at = self._now()
        deleted, forgotten = set(done["deleted_keys"]), set(done["forgotten"])
        removed = [r.entry for r in plan.remove
                   if r.entry.key in deleted or str(r.entry.pid) in forgotten]
        for entry in removed:
            self.timeline.removed_by_tool(entry.group, entry.pid, at, "reap")
        return self._done("reap", None, start,
                          f"removed {len(removed)} entr(ies): "
                          + ", ".join(f"{e.pid} ({e.group})" for e in removed[:5]))

