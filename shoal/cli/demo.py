"""``shoal demo``: a real cluster under load, broken on purpose, and the verdict.

Owns the demo's story. It starts a cluster of real node processes
(``shoal.testing.LocalCluster``) running the sample service
(``shoal.testing.sample``: a supervisor of workers in group ``service``)
on an embedded store in a temporary directory, drives idempotent group
calls from an in-process node (``Load``), and breaks the cluster in
phases (``Faults``): kill -9 a node (then restart it under its name), hang
another (SIGSTOP, then SIGCONT), crash workers (their supervisor restarts
them), a rolling deploy (each node drained and restarted in turn), and
``reap`` (which finds nothing on a healthy cluster). Every call, attempt
and fault goes into one ``Timeline``; the invariant checker's verdict ends
the report (``shoal/cli/demo_report.py``). The display is
``shoal/cli/demo_display.py``, the picture ``shoal/cli/demo_plot.py``.

Rules:

- Rule 1: the calls are marked idempotent because the sample workers'
  requests are (they echo the request; nothing changes), which is what lets
  a call in flight on a killed node be retried elsewhere. ``--non-idempotent``
  shows the other case, whose unknown-delivery failures are counted apart.
- Rule 2: no process is left behind. The first SIGINT (Ctrl-C), SIGTERM
  or SIGHUP (its terminal closed) cancels the run and later ones are
  ignored, so that its clean-up completes: the cluster stops every node it started (SIGTERM, then
  SIGKILL); :func:`run_demo` then kills, by PID, any node process of this
  demo that is still its child. The PIDs are shown as nodes start.
- Rule 3: each call's deadline (``CALL_TIMEOUT``) is longer than the hang
  (``HANG_SECONDS``): a call caught on the hung node waits for it and
  completes, as its deadline allows, while new calls avoid the node once
  it is silent for the heartbeat timeout (``HEARTBEAT_TIMEOUT``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shoal.cli.demo_display import NodeState, Progress, Tick
from shoal.cli.demo_metrics import DemoMetrics, scrape_group_calls
from shoal.cli.demo_report import DemoFault, DemoResult, DemoSecond
from shoal.testing import LocalCluster, Timeline, check, wait_until
from shoal.testing.sample import GROUP, WORKERS
from shoal.testing.scenario import SERVICE_APP, FaultRecord, Faults, Load, LoadStats

__all__ = ["CALL_TIMEOUT", "HANG_SECONDS", "HEARTBEAT_TIMEOUT", "DemoOptions",
           "check_plot_path", "kill_leftovers", "run_demo"]

HEARTBEAT_TIMEOUT = 1.0
"""Seconds of silence before the callers stop routing to a node."""
HANG_SECONDS = 3.0
CALL_TIMEOUT = 5.0
CRASHED_WORKERS = 2
PHASES = 6
TICK = 0.25
CLIENT = "demo-callers"
START_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    """What ``shoal demo``'s options ask for (checked by the command's parser)."""

    nodes: int = 3
    callers: int = 16
    scale: float = 1.0
    """Multiplies the pauses between faults."""
    idempotent: bool = True
    http: str = "127.0.0.1:0"
    """Where the callers' node serves ``/metrics`` (port 0: any free one)."""


class _Demo:
    """One run: the cluster, the load, the faults, and what the display is told."""

    def __init__(self, options: DemoOptions, progress: Progress,
                 os_pids: dict[str, list[int]]) -> None:
        self.options = options
        self.progress = progress
        # Invariant: every OS pid a node of this run ever had, as soon as the
        # ticker or a phase saw it (Rule 2 reads it after the loop is gone).
        self.os_pids = os_pids
        self.names = [f"n{i + 1}" for i in range(options.nodes)]
        self.origin = 0.0  # loop time the callers started at
        self.stopped = 0.0  # when the callers were told to stop, since self.origin

    def _now(self) -> float:
        return asyncio.get_running_loop().time() - self.origin

    def _event(self, text: str) -> None:
        self.progress.event(text, self._now() if self.origin else None)

    def _phase(self, number: int, name: str, detail: str) -> None:
        self.progress.phase(number, PHASES, name, detail, self._now())

    def _note_pids(self, cluster: LocalCluster, *, announce: bool) -> None:
        for name, node in cluster.nodes.items():
            seen = self.os_pids.setdefault(name, [])
            if node.pid not in seen:
                seen.append(node.pid)
                if announce:
                    self._event(f"node {name} now runs as OS pid {node.pid}")

    async def run(self) -> DemoResult:
        loop = asyncio.get_running_loop()
        began = loop.time()
        self.progress.event(f"starting {len(self.names)} node processes (shoal run "
                            f"{SERVICE_APP}: {WORKERS} supervised workers each, group "
                            f"{GROUP!r}) on an embedded store in a temporary directory")
        # Always a fresh embedded store, whatever $SHOAL_TEST_STORE says,
        # removed when the run ends (the cluster removes its logs itself).
        scratch = tempfile.mkdtemp(prefix="shoal-demo-")
        cluster = LocalCluster(self.names, app=SERVICE_APP, client_name=CLIENT,
                               store=f"sqlite://{scratch}/cluster.db",
                               heartbeat_timeout=HEARTBEAT_TIMEOUT,
                               client_http=self.options.http)
        try:
            await cluster.start()
            address = cluster.client.http_address
            if address is not None:
                self.progress.event(f"the callers' node serves its metrics at "
                                    f"http://{address[0]}:{address[1]}/metrics")
            stats, timeline, log = await self._serve(cluster)
            # demo_metrics Rule 1: every caller is done, the node still up.
            metrics = None if address is None else await scrape_group_calls(*address)
            self._event("callers stopped; stopping the cluster")
        except asyncio.CancelledError:
            raise  # interrupted: no logs to show, only processes to stop
        except BaseException:
            cluster.show_logs()  # a node did not come back: show why
            raise
        finally:
            await cluster.stop()
            shutil.rmtree(scratch, ignore_errors=True)
        report = check(timeline)
        return self._result(stats, log, [str(v) for v in report.violations],
                            loop.time() - began, metrics)

    async def _serve(self, cluster: LocalCluster
                     ) -> tuple[LoadStats, Timeline, list[FaultRecord]]:
        """Load the started cluster and run the phases; the load's figures,
        the timeline and the faults' records."""
        options = self.options
        self._note_pids(cluster, announce=False)
        self.progress.event("cluster up: " + ", ".join(
            f"{name} (OS pid {cluster.nodes[name].pid})" for name in self.names))
        groups = cluster.client.groups
        expected = WORKERS * len(self.names)
        await wait_until(lambda: len(groups.get_members(GROUP)) >= expected,
                         timeout=START_TIMEOUT, what="every node's workers in the group")
        timeline = Timeline()
        load = Load(cluster.client, GROUP, timeline, callers=options.callers,
                    timeout=CALL_TIMEOUT, idempotent=options.idempotent)
        faults = Faults(cluster, timeline, GROUP)
        marked = "idempotent" if options.idempotent else "NOT idempotent (--non-idempotent)"
        self.progress.event(f"{options.callers} callers in this process call group "
                            f"{GROUP!r} in a loop, {CALL_TIMEOUT:g} s deadline each, "
                            f"marked {marked}: a worker's request has no side effects")
        self.origin = asyncio.get_running_loop().time()
        load.start()
        ticker = asyncio.create_task(self._ticker(cluster, load))
        try:
            await self._phases(faults)
        finally:
            for name in self.names:  # interrupted mid-hang: wake it so it can stop
                cluster.sigcont(name)
            self.stopped = self._now()
            stats = await load.stop()
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            self._note_pids(cluster, announce=False)
        return stats, timeline, faults.log

    async def _hold(self, seconds: float) -> None:
        # The demo's pacing (time to watch the cluster settle), not a synchronisation.
        await asyncio.sleep(seconds * self.options.scale)

    async def _phases(self, faults: Faults) -> None:
        victim, hung = self.names[0], self.names[1]
        self._phase(1, "warm-up", "the callers call the service group")
        await self._hold(3.0)

        self._phase(2, f"kill -9 {victim}", "then restart it under its name")
        record = await faults.kill9(victim)
        self._event(f"{victim} killed: the callers stopped routing to it after "
                    f"{_seconds(record.excluded_after)} (its connections broke)")
        await self._hold(1.5)
        record = await faults.restart(victim)
        self._event(f"{victim} restarted under its name ({record.detail}): routable again")
        await self._hold(1.0)

        self._phase(3, f"hang {hung}", f"SIGSTOP for {HANG_SECONDS:g} s, then SIGCONT")
        record = await faults.hang(hung, HANG_SECONDS)
        self._event(f"{hung} was silent: the callers stopped routing to it after "
                    f"{_seconds(record.excluded_after)} (heartbeat timeout "
                    f"{HEARTBEAT_TIMEOUT:g} s); the calls already sent to it waited for it "
                    f"(within their {CALL_TIMEOUT:g} s deadline) and were answered after "
                    "SIGCONT")
        await self._hold(1.0)

        self._phase(4, "crash workers",
                    f"{CRASHED_WORKERS} workers crash; their supervisors restart them")
        record = await faults.crash_workers(CRASHED_WORKERS)
        self._event(record.detail)
        await self._hold(1.5)

        self._phase(5, "rolling deploy", "each node drained, then restarted, in turn")
        record = await faults.rolling_deploy()
        self._event(record.detail)
        await self._hold(1.0)

        self._phase(6, "reap", "look for dead members in the store (there should be none)")
        record = await faults.reap()
        self._event(f"reap: {record.detail}"
                    + (", as it should: every worker that died left its groups as it exited"
                       if record.detail.startswith("nothing") else ""))
        await self._hold(1.0)

    async def _ticker(self, cluster: LocalCluster, load: Load) -> None:
        view = cluster.client.cluster_view
        groups = cluster.client.groups
        while True:
            self._note_pids(cluster, announce=True)
            stats = load.snapshot()
            now = self._now()
            # The last whole second; no bucket for it: no call ended in it.
            last = next((s for s in reversed(stats.per_second) if s.t == int(now) - 1), None)
            members: dict[str, int] = {}
            in_flight: dict[str, int] = {}
            for pid in groups.get_members(GROUP):
                members[pid.node] = members.get(pid.node, 0) + 1
                in_flight[pid.node] = in_flight.get(pid.node, 0) + view.load(pid, 0)
            nodes = tuple(NodeState(name=name, members=members.get(name, 0),
                                    routable=view.is_routable(name),
                                    in_flight=in_flight.get(name, 0)) for name in self.names)
            self.progress.tick(Tick(
                t=now, ok=stats.ok, failed=stats.failed, retried=stats.retried,
                rate=0 if last is None else last.ok + last.failed,
                p50_ms=0.0 if last is None else last.p50_ms,
                p99_ms=0.0 if last is None else last.p99_ms, nodes=nodes))
            await asyncio.sleep(TICK)

    def _result(self, stats: LoadStats, log: list[FaultRecord], violations: list[str],
                seconds: float, metrics: DemoMetrics | None) -> DemoResult:
        faults = tuple(DemoFault(kind=r.kind, node=r.node, start=r.start - self.origin,
                                 end=r.end - self.origin, detail=r.detail,
                                 excluded_after=r.excluded_after) for r in log)
        # A second in which no call ended has no bucket: it counts 0 calls.
        # The last, cut short by the stop, would look like a fall: left out.
        buckets = {s.t: s for s in stats.per_second if s.t + 1 <= self.stopped}
        per_second = tuple(
            DemoSecond(t=t, ok=0, failed=0, p50_ms=0.0, p99_ms=0.0) if s is None else
            DemoSecond(t=t, ok=s.ok, failed=s.failed, p50_ms=s.p50_ms, p99_ms=s.p99_ms)
            for t in range(max(buckets, default=-1) + 1) for s in [buckets.get(t)])
        return DemoResult(
            nodes=tuple(self.names), callers=self.options.callers,
            idempotent=self.options.idempotent, seconds=seconds, ok=stats.ok,
            failed=stats.failed, unknown=stats.unknown, retried=stats.retried,
            p50_ms=stats.p50_ms, p99_ms=stats.p99_ms,
            failures_by_error=dict(stats.failures_by_error), per_second=per_second,
            faults=faults, violations=tuple(violations),
            os_pids={name: list(pids) for name, pids in self.os_pids.items()},
            metrics=metrics)


def _seconds(value: float | None) -> str:
    return "more than the fault lasted" if value is None else f"{value:.3f} s"


def kill_leftovers(os_pids: dict[str, list[int]]) -> list[int]:
    """SIGKILL every pid in ``os_pids`` that is still a running child of
    this process (Rule 2); return those it killed. A pid that is not this
    process's child (already reaped, never ours) is left alone."""
    killed = []
    for pid in sorted({p for pids in os_pids.values() for p in pids}):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue  # reaped already: nothing of ours runs under this pid
        if done:
            continue  # it had exited; now reaped
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        killed.append(pid)
    return killed


def run_demo(options: DemoOptions, progress: Progress,
             os_pids: dict[str, list[int]] | None = None) -> DemoResult:
    """Run the demo in a new event loop; return what it measured.

    Args:
        options: the run's size and pace.
        progress: told of phases, events and figures as they happen.
        os_pids: filled with every node process's OS pid as it starts (so
            a caller still knows them if the run is interrupted).

    Raises:
        KeyboardInterrupt: interrupted (Ctrl-C, SIGINT, SIGTERM or SIGHUP);
            every node process of the run has stopped by then.
        TimeoutError: a node did not come back after a fault.
    """
    pids: dict[str, list[int]] = {} if os_pids is None else os_pids
    try:
        return asyncio.run(_until_signalled(_Demo(options, progress, pids)))
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None  # a signal of _until_signalled, as Ctrl-C
    finally:
        kill_leftovers(pids)


async def _until_signalled(demo: _Demo) -> DemoResult:
    """Run ``demo``; the first SIGINT, SIGTERM or SIGHUP cancels it (its
    clean-up stops every node), later ones are ignored so that the clean-up
    completes."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(demo.run())
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def interrupt() -> None:
        for sig in signals:
            loop.add_signal_handler(sig, lambda: None)
        task.cancel()
    try:
        for sig in signals:
            loop.add_signal_handler(sig, interrupt)
    except (ValueError, RuntimeError):
        pass  # not the main thread (a test calling main()): signals stay as they were
    try:
        return await task
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def check_plot_path(path: Path) -> None:
    """Raises:
        BadArgument: ``path``'s directory does not exist."""
    from shoal import BadArgument

    if not path.parent.is_dir():
        raise BadArgument("--plot", str(path), "a PNG file path in an existing directory")
