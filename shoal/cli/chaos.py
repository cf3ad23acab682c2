"""``shoal chaos``: a seeded chaos run against a local cluster, checked for the guarantees.

The command-line shape of :func:`shoal.testing.scenario.run_chaos`: it
starts N node processes of the sample service on loopback, drives group
calls at them, plays the faults its seed names, prints one line per fault
and the invariant checker's report, and exits 1 on any violation (2 on bad
arguments). Every process it started is stopped before it exits, also on
Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
from collections.abc import Coroutine
from typing import Any

import click

from shoal.cli.common import EXIT_FAILED, EXIT_OK, loop_factory, verbose_option
from shoal.testing.faults import FaultRecord
from shoal.testing.scenario import FAULT_KINDS, ChaosResult, parse_faults, run_chaos

__all__ = ["chaos_command", "result_as_dict"]


def result_as_dict(result: ChaosResult) -> dict[str, Any]:
    """What ``--json`` prints (times in seconds from the first fault's
    injector start, as the progress lines show them)."""
    origin = result.faults[0].origin if result.faults else 0.0
    load = result.load
    return {
        "seed": result.seed, "ok": result.ok,
        "violations": [{"guarantee": v.guarantee, "what": v.what,
                        "at_s": round(v.at - origin, 3), "timeline": list(v.timeline)}
                       for v in result.report.violations],
        "calls": result.report.calls, "failed": result.report.failed,
        "unknown_delivery": result.report.unknown_delivery,
        "load": {"ok": load.ok, "failed": load.failed, "unknown": load.unknown,
                 "retried": load.retried, "p50_ms": round(load.p50_ms, 3),
                 "p99_ms": round(load.p99_ms, 3), "failures_by_error": load.failures_by_error},
        "faults": [{"kind": r.kind, "node": r.node, "start_s": round(r.start - origin, 3),
                    "seconds": round(r.end - r.start, 3), "detail": r.detail,
                    "excluded_after_s": None if r.excluded_after is None
                    else round(r.excluded_after, 3)} for r in result.faults],
    }


async def _until_signalled(run: Coroutine[Any, Any, ChaosResult]) -> ChaosResult:
    """Await ``run``; the first SIGINT or SIGTERM cancels it (its cleanup
    stops every node), later ones are ignored so the cleanup completes."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(run)
    signals = (signal.SIGINT, signal.SIGTERM)

    def interrupt() -> None:
        for sig in signals:
            loop.add_signal_handler(sig, lambda: None)
        print("stopping: every node process of the run is being stopped", file=sys.stderr,
              flush=True)
        task.cancel()
    for sig in signals:
        loop.add_signal_handler(sig, interrupt)
    try:
        return await task
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


@click.command("chaos")
@click.option("--duration", default=60.0, show_default=True,
              type=click.FloatRange(0, 7 * 86400),
              help="Seconds of faults under load; at least one fault of each kind is "
                   "played, however long that takes.")
@click.option("--seed", default=None, type=click.IntRange(0, 2**63 - 1),
              help="Names the run: the same seed plays the same faults in the same order "
                   "[default: a random one, printed].")
@click.option("--faults", "kinds", default=",".join(FAULT_KINDS), show_default=True,
              help="Comma-separated fault kinds to draw from.")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(2, 16),
              help="Node processes (one is faulted at a time).")
@click.option("--callers", default=8, show_default=True, type=click.IntRange(1, 1000),
              help="Concurrent callers making group calls.")
@click.option("--store", default=None,
              help="Store URL for the run's nodes, e.g. an etcd URL (an etcd URL naming no "
                   "cluster gets one of its own: shoal-chaos-SEED) [default: a fresh "
                   "embedded store in a temporary directory].")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as JSON (progress lines then go to stderr): seed, ok, "
                   "violations (guarantee, what, at_s, timeline), calls, failed, "
                   "unknown_delivery, load (ok, failed, unknown, retried, p50_ms, p99_ms, "
                   "failures_by_error), faults (kind, node, start_s, seconds, detail, "
                   "excluded_after_s).")
@verbose_option
def chaos_command(duration: float, seed: int | None, kinds: str, nodes: int, callers: int,
                  store: str | None, as_json: bool) -> None:
    """Run a seeded schedule of faults against a local cluster under load,
    then check the guarantees (G2 to G6, incarnations).

    Starts NODES node processes of the sample service
    (shoal.testing.sample: 4 supervised workers per node in group
    "service") on 127.0.0.1, and CALLERS callers making idempotent group
    calls from an in-process node. Faults, one at a time: kill (kill -9,
    then restart), hang (SIGSTOP, then SIGCONT), partition (cut a node from
    the callers or from another node, then heal), store (the embedded
    store refuses writes; skipped on etcd), restart (kill -9 and restart
    at once under the same name), replace (replace a hung node; etcd
    only, skipped on the embedded store), deploy (drain and restart every
    node in turn), reap (the reap planner must find nothing), crash (crash
    workers; their supervisor restarts them).

    Prints the seed first (rerun the same faults with --seed), a line per
    fault, the callers' figures and the checker's report, ending with
    "violations: N". Exit 0: no violation; 1: a violation (each printed
    with the call or member and the timeline around it), or the run could
    not be carried out; 2: bad arguments. Ctrl-C stops every process it
    started.

    Example: shoal chaos --duration 30 --seed 7 --faults kill,hang,partition
    """
    faults = parse_faults(kinds)
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    out = sys.stderr if as_json else sys.stdout
    print(f"chaos run: seed {seed}, {nodes} nodes, {callers} callers, faults "
          f"{','.join(faults)}, about {duration:g}s (rerun: shoal chaos --seed {seed} "
          f"--faults {','.join(faults)} --nodes {nodes})", file=out, flush=True)

    def progress(record: FaultRecord) -> None:
        print(record.line(), file=out, flush=True)

    loop_factory()
    try:
        result = asyncio.run(_until_signalled(run_chaos(
            seed=seed, duration=duration, faults=faults, nodes=nodes, store=store,
            callers=callers, on_progress=progress)))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("interrupted: every node process of the run was stopped", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    if as_json:
        click.echo(json.dumps(result_as_dict(result), indent=2, allow_nan=False))
    else:
        click.echo(result.summary())
    sys.exit(EXIT_OK if result.ok else EXIT_FAILED)

