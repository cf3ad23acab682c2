"""Local clusters and rolling restarts: ``shoal up``, ``shoal down``, ``shoal deploy``.

The command-line shape only: ``upfile.py`` reads the cluster file,
``upsuper.py`` runs it, ``upstate.py`` finds a running ``shoal up`` and
talks to it, ``deploying.py`` carries out a deploy. Exit codes as every
operators' command: 0 done, 1 failed or refused, 2 bad usage (a cluster
file that breaks the format included).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

import click

import shoal
from shoal.cli.audit import Audit
from shoal.cli.common import loop_factory, parse_json, store_options, verbose_option
from shoal.cli.deploying import DeployPlan, NodeResult, deploy
from shoal.cli.inspect import to_json
from shoal.cli.operate import cli_node
from shoal.cli.upfile import load_config, state_path
from shoal.cli.upstate import find_up, proc_identity
from shoal.cli.upsuper import run_up
from shoal.runtime.checks import check_group, check_name, check_timeout

__all__ = ["UP_COMMANDS"]

_FILE_FORMAT = """\b
CLUSTER.toml (relative paths are relative to its directory, where every
node runs):
  cluster = "demo"                  # optional, default "default"
  store = "sqlite://.shoal/cluster.db"   # optional, this is the default
  app = "workers:setup"             # MODULE:FUNCTION or a supervisor factory
  args = ["--session-ttl", "2"]     # optional, extra `shoal run` options
  [env]                             # optional, environment of every node
  LOG_LEVEL = "info"
  [restart]                         # optional, these are the defaults
  max_restarts = 5                  # restarts of one node within window_s
  window_s = 60
  backoff_initial_s = 0.5
  backoff_max_s = 10
  stop_timeout_s = 30               # SIGTERM, then SIGKILL after this
  [[node]]                          # one table per node
  name = "api-1"
  env = { REGION = "a" }            # optional, added to [env]
  # app = "...", args = [...]       # optional, per node
  [[node]]
  name = "api-2"
"""


@click.command("up", epilog=_FILE_FORMAT)
@click.argument("file", metavar="CLUSTER.toml", type=click.Path(dir_okay=False))
@verbose_option
def up_command(file: str) -> None:
    """Run every node of CLUSTER.toml, each a `shoal run` child, until
    Ctrl-C, SIGTERM or `shoal down CLUSTER.toml`.

    Every line a node writes is printed on stdout prefixed with its name.
    A node that dies (a non-zero exit, kill -9) is started again after a
    backoff delay, at most restart.max_restarts times within
    restart.window_s, then left stopped; each exit and restart is logged. A
    node that exits 0 (drained) is not, until `shoal deploy` starts it
    again. On Ctrl-C or SIGTERM every node gets SIGTERM (it leaves its
    groups, finishes its calls, runs every terminate) and
    restart.stop_timeout_s seconds; then SIGKILL. While it runs, its state
    (its pid, each node's OS pid, a control port and token) is in
    .shoal/up-<cluster>.json beside the file, mode 0600. The file is checked
    whole first: an unknown key, a missing app, a duplicate node name is
    exit 2 with a one-line message naming the key.
    """
    config = load_config(file)
    loop_factory()
    code = asyncio.run(run_up(config))
    if code:
        raise SystemExit(code)


@click.command("down")
@click.argument("file", metavar="CLUSTER.toml", type=click.Path(dir_okay=False))
@click.option("--timeout", default=None, type=float,
              help="Seconds to wait for `shoal up` to exit [default: the file's "
                   "restart.stop_timeout_s + 10].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@verbose_option
def down_command(file: str, timeout: float | None, as_json: bool) -> None:
    """Stop the `shoal up` of CLUSTER.toml and every node it runs, gracefully.

    Sends SIGTERM to that `shoal up` (found by its state file, and only if
    that pid is still a `shoal up` of this file), which stops every node as
    on Ctrl-C, and waits until it has exited. A stale state file (its
    `shoal up` is gone) is exit 1 with a message saying so. JSON fields:
    file, cluster, up_pid, nodes ({name: os_pid or null}), stopped,
    after_s.
    """
    config = load_config(file)
    seconds = check_timeout(timeout if timeout is not None
                            else config.restart.stop_timeout_s + 10)
    state = find_up(state_path(config), config.path)
    up_pid = int(state["up_pid"])
    identity = proc_identity(up_pid)
    started = time.monotonic()
    os.kill(up_pid, signal.SIGTERM)
    # Not our child: no wait() for it; look at /proc, bounded by the timeout.
    while proc_identity(up_pid) == identity:
        if time.monotonic() - started > seconds:
            raise shoal.ShoalError(f"shoal up (pid {up_pid}) still running {seconds:g}s after "
                                   "SIGTERM; see its output")
        time.sleep(0.05)
    nodes = {name: info.get("os_pid") for name, info in sorted(state["nodes"].items())}
    result = {"file": str(config.path), "cluster": config.cluster, "up_pid": up_pid,
              "nodes": nodes, "stopped": True,
              "after_s": round(time.monotonic() - started, 3)}
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"shoal up (pid {up_pid}) of {config.path.name} stopped with its "
                   f"{len(nodes)} node(s) after {result['after_s']}s")


def _min_available(values: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for text in values:
        group, sep, count = text.rpartition("=")
        if not sep or not count.isdigit():
            raise shoal.BadArgument("--min-available", text, "GROUP=N, N an integer >= 0")
        out[check_group(group, "--min-available")] = int(count)
    return out


def _echo(as_json: bool) -> Any:
    return (lambda text: click.echo(text, err=True)) if as_json else click.echo


@click.command("deploy")
@click.argument("file", metavar="[CLUSTER.toml]", required=False,
                type=click.Path(dir_okay=False))
@store_options
@click.option("--node", "only", multiple=True,
              help="Restart only this node (repeat; this order) [default: every node of "
                   "the file in its order, or without a file every live node by name].")
@click.option("--restart-cmd", default=None,
              help="Restart each node with this shell command, {node} replaced by its "
                   "name (e.g. 'systemctl restart app@{node}') instead of through "
                   "`shoal up`. Required without a file.")
@click.option("--max-unavailable", default=1, show_default=True, type=click.IntRange(1),
              help="Nodes restarted at once.")
@click.option("--min-available", multiple=True, metavar="GROUP=N",
              help="Before each drain: refuse if GROUP would be left with fewer than N "
                   "live members (repeat for several groups).")
@click.option("--scope", default="default", show_default=True,
              help="The scope of --min-available and --health-call groups.")
@click.option("--health-call", nargs=2, default=None, metavar="GROUP REQUEST",
              help="Part of the gate: call every member of GROUP on the new incarnation "
                   "with REQUEST (JSON); each must answer without an error.")
@click.option("--gate-timeout", default=30.0, show_default=True, type=float,
              help="Seconds for a restarted node to pass its gate.")
@click.option("--drain-timeout", default=30.0, show_default=True, type=float,
              help="Seconds for a node to be out after its drain begins.")
@click.option("--yes", is_flag=True, help="Act without asking (required without a terminal).")
@click.option("--dry-run", is_flag=True, help="Print the plan only.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON (progress lines go to stderr).")
def deploy_command(file: str | None, store: str | None, cluster: str | None,
                   only: tuple[str, ...], restart_cmd: str | None, max_unavailable: int,
                   min_available: tuple[str, ...], scope: str,
                   health_call: tuple[str, str] | None, gate_timeout: float,
                   drain_timeout: float, yes: bool, dry_run: bool, as_json: bool) -> None:
    """Restart the nodes of a `shoal up` cluster (or, with --restart-cmd, any
    cluster) one at a time, each behind a health gate.

    Prints the plan (which nodes, in which order) first, then asks on a
    terminal (--yes otherwise; --dry-run stops there). For each node: check
    --min-available; drain it (it leaves its groups, finishes its calls,
    exits 0); start it again (the `shoal up` of CLUSTER.toml is asked over
    its control port, or --restart-cmd runs); then the gate, within
    --gate-timeout: the new incarnation is registered (a new creation), it
    has rejoined every group the old one was in, as many times (counted
    from the store by scope and group), it answers an admin ping, and the
    --health-call succeeds. The first failure stops the deploy: exit 1 with
    one line naming the node, the step and why; the nodes after it are
    untouched. JSON fields: plan (nodes, batches, max_unavailable,
    restart_via, restart_cmd, up_pid, scope, min_available, health_call,
    gate_timeout_s, drain_timeout_s), results [{node, ok, step, reason,
    old_creation, new_creation, groups {"scope/group": [old, new]},
    drained, seconds}], ok, failed ({node, step, reason} or null). A deploy
    that began is written to the audit log (`shoal audit`), with its plan
    and results, whatever its outcome.
    """
    gate_s, drain_s = check_timeout(gate_timeout), check_timeout(drain_timeout)
    for name in only:
        check_name("--node", name)
    minimums = _min_available(min_available)
    health = None
    if health_call is not None:
        health = (check_group(health_call[0], "--health-call"),
                  parse_json("--health-call", health_call[1]))
    up_state: dict[str, Any] | None = None
    names: list[str] | None = list(only) or None
    if file is not None:
        config = load_config(file)
        store, cluster = config.store, config.cluster
        for name in only:
            config.node(name)
        names = names or [spec.name for spec in config.nodes]
        if restart_cmd is None:
            up_state = find_up(state_path(config), config.path)
    elif restart_cmd is None:
        raise shoal.BadArgument("--restart-cmd", None, "a restart command, or a CLUSTER.toml "
                                                       "run by `shoal up`")
    loop_factory()

    async def go() -> tuple[DeployPlan, list[NodeResult] | None]:
        async with cli_node(store, cluster) as node:
            planned = names or sorted(n for n in node.cluster_view.names()
                                      if not n.startswith("shoal-cli-"))
            plan = DeployPlan(nodes=planned, max_unavailable=max_unavailable,
                              restart_via="command" if restart_cmd else "shoal-up",
                              restart_cmd=restart_cmd,
                              up_pid=up_state["up_pid"] if up_state else None, scope=scope,
                              min_available=minimums, health_call=health,
                              gate_timeout=gate_s, drain_timeout=drain_s)
            if dry_run:
                return plan, None
            _echo(as_json)(plan.text())
            if not yes:
                if not sys.stdin.isatty():
                    raise shoal.BadArgument("--yes", False,
                                            "--yes to act without a terminal to confirm on")
                click.confirm("deploy?", abort=True, err=as_json)
            return plan, await deploy(node, plan, up_state, store=store, cluster=cluster,
                                      echo=_echo(as_json))

    audit = Audit(store, cluster, "deploy", {
        "file": file, "nodes": names, "restart_cmd": restart_cmd,
        "max_unavailable": max_unavailable, "min_available": minimums, "scope": scope,
        "health_call": None if health is None else list(health), "gate_timeout": gate_s,
        "drain_timeout": drain_s})
    with audit.refusals():
        plan, results = asyncio.run(go())
    failed = next((r for r in results or [] if not r.ok), None)
    if as_json:
        click.echo(json.dumps(to_json({
            "plan": plan.as_dict(), "results": [r.as_dict() for r in results or []],
            "ok": failed is None,
            "failed": None if failed is None else
            {"node": failed.node, "step": failed.step, "reason": failed.reason}}), indent=2))
    elif results is None:
        click.echo(plan.text() + "\n(dry run: nothing changed)")
    if results is None:
        return  # a dry run changes nothing and is not recorded
    audit.evidence = {"plan": plan.as_dict(), "results": [r.as_dict() for r in results]}
    if failed is not None:
        rest = [n for n in plan.nodes if n not in {r.node for r in results}]
        message = (f"deploy stopped at node {failed.node} ({failed.step}): {failed.reason}"
                   + (f"; untouched: {', '.join(rest)}" if rest else ""))
        audit.done("refused" if failed.step == "check" else "failed", message)
        raise shoal.ShoalError(message)
    if not as_json:
        click.echo(f"deployed {len(results)} node(s): every gate passed")
    audit.done()


UP_COMMANDS = (up_command, down_command, deploy_command)
"""The commands ``shoal`` adds from this module."""
