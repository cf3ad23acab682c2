"""``shoal top``: the command, and how a report (``top.py``) is shown.

Three forms: ``--json`` (one report, the fields in the command's help),
plain text (``--once``, or whenever stdout is not a terminal: one report),
and the live view (a terminal): panels redrawn in place by ``rich`` every
``--interval`` seconds until Ctrl-C, which exits 0.

Every form takes two samples ``--interval`` apart before its first report,
so rates are over a real interval. The last audit records (reap, deploy,
drain, evict, reload: ``shoal audit``) are read at each refresh; one that
cannot be read is an event, not an error.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

import shoal
from shoal.cli.audit import read as read_audit
from shoal.cli.common import echo_table, loop_factory, store_options
from shoal.cli.inspect import to_json
from shoal.cli.operate import cli_node
from shoal.cli.top import Watch, take_sample
from shoal.runtime.admin_stats import MAX_TOP_GROUPS
from shoal.runtime.checks import check_timeout

__all__ = ["top_command"]

AUDIT_SHOWN = 5


async def _audit(store: str | None, cluster: str | None) -> list[dict[str, Any]]:
    try:
        rows = await read_audit(store, cluster, AUDIT_SHOWN)
    except shoal.ShoalError as exc:
        return [{"unreadable": str(exc).splitlines()[0] if str(exc) else "unreadable"}]
    return [{k: row.get(k) for k in ("seq", "time", "command", "outcome", "user", "why")}
            | {"args": row.get("args")} for row in rows]


def _fmt(value: Any, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def _node_cells(row: dict[str, Any]) -> dict[str, str]:
    if row["state"] != "up":
        return {"node": row["node"], "state": "DOWN", "incarnation": row["why"]}
    return {"node": row["node"], "state": "up", "incarnation": str(row["creation"]),
            "up since": row["up_since"], "in/s": _fmt(row["calls_in_per_s"]),
            "out/s": _fmt(row["calls_out_per_s"]), "p99": _fmt(row["p99_ms"], " ms"),
            "procs": str(row["processes"]), "mbox max": str(row["mailbox_max"]),
            "suspects": ", ".join(row["suspects"]) or "-"}


NODE_COLUMNS = ["node", "state", "incarnation", "up since", "in/s", "out/s", "p99", "procs",
                "mbox max", "suspects"]
GROUP_COLUMNS = ["scope", "group", "members", "routable", "members_by_owners"]


def _audit_line(row: dict[str, Any]) -> str:
    if "unreadable" in row and len(row) == 1:
        return f"audit log: {row['unreadable']}"
    return (f"{row.get('time')} {row.get('command')} {row.get('outcome')} by {row.get('user')}"
            + (f": {row['why']}" if row.get("why") else ""))


def _print_text(report: dict[str, Any]) -> None:
    click.echo(f"shoal top at {report['time']} (rates over {report['interval_s']} s)")
    echo_table([_node_cells(r) for r in report["nodes"]], NODE_COLUMNS)
    click.echo("")
    echo_table(report["groups"], GROUP_COLUMNS)
    click.echo("")
    for event in report["events"]:
        click.echo(f"{event['time']} {event['node']} {event['event']}: {event['detail']}")
    for row in report["audit"]:
        click.echo(_audit_line(row))


def _render(report: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    nodes = Table(expand=True)
    for column in NODE_COLUMNS:
        nodes.add_column(column)
    for row in report["nodes"]:
        cells = _node_cells(row)
        style = None if row["state"] == "up" else "bold red"
        nodes.add_row(*(escape(cells.get(c, "")) for c in NODE_COLUMNS), style=style)
    groups = Table(expand=True)
    for column in ("scope", "group", "members", "routable", "by owners"):
        groups.add_column(column)
    for row in report["groups"]:
        style = "bold yellow" if row["routable"] < row["members"] else None
        groups.add_row(escape(row["scope"]), escape(row["group"]), str(row["members"]),
                       str(row["routable"]), str(row["members_by_owners"]), style=style)
    lines = [f"{e['time']} {e['node']} {e['event']}: {e['detail']}" for e in report["events"]]
    lines += [_audit_line(row) for row in report["audit"]]
    return Group(
        Panel(nodes, title=f"nodes — {escape(report['time'])}, rates over "
                           f"{report['interval_s']} s (Ctrl-C quits)"),
        Panel(groups, title="groups (as this view sees them; calls/s per group: not counted)"),
        Panel("\n".join(escape(line) for line in lines) or "(none yet)", title="recent events"))


async def _run(store: str | None, cluster: str | None, interval: float, timeout: float,
               top: int, live: bool, as_json: bool) -> None:
    async with cli_node(store, cluster) as node:
        watch = Watch()
        watch.update(await take_sample(node, watch.known, timeout=timeout, top=top))
        await asyncio.sleep(interval)
        report = watch.update(await take_sample(node, watch.known, timeout=timeout, top=top))
        report["audit"] = await _audit(store, cluster)
        if not live:
            if as_json:
                click.echo(json.dumps(to_json(report), indent=2, allow_nan=False))
            else:
                _print_text(report)
            return
        from rich.console import Console
        from rich.live import Live

        with Live(_render(report), console=Console(), refresh_per_second=4) as view:
            while True:  # until Ctrl-C: a live view runs as long as the operator watches
                await asyncio.sleep(interval)
                report = watch.update(await take_sample(node, watch.known, timeout=timeout,
                                                        top=top))
                report["audit"] = await _audit(store, cluster)
                view.update(_render(report))


def _number(text: str, argument: str) -> float:
    """``text`` as a number, or bad usage in one line (click's own message
    for a bad number spans several)."""
    try:
        return float(text)
    except ValueError:
        raise shoal.BadArgument(argument, text, "a number") from None


@click.command("top")
@store_options
@click.option("--interval", default="1.0", show_default=True,
              help="Seconds between refreshes (and between the two samples of --once).")
@click.option("--timeout", default="2.0", show_default=True,
              help="Seconds to wait for each node's answer; past it the node is shown down.")
@click.option("--groups", "top", default="20", show_default=True,
              help=f"Groups listed, largest first (0 to {MAX_TOP_GROUPS}).")
@click.option("--once", is_flag=True, help="Print one report as text and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print one report as JSON and exit.")
def top_command(store: str | None, cluster: str | None, interval: str, timeout: str,
                top: str, once: bool, as_json: bool) -> None:
    """A live view of the cluster: nodes, groups, recent events.

    Joins the cluster briefly as a node and asks every node for its figures
    over the admin channel (op stats), every --interval seconds. Calls in are
    calls served by the node (its local calls plus remote calls delivered to
    its processes); calls out are calls made by it (local plus remote; a
    group call counts through its attempts). Rates and p99 (of remote calls
    made: the upper bound of the duration bucket holding it) are over the
    last interval. A node that does not answer within --timeout is shown
    down, with why. Groups: members and routable as this view sees them,
    and members as their owners count them. Events: nodes up and down,
    supervisor restarts and operators' actions a node received (evict and
    forget: a reap; drain: a deploy or a shutdown; reload) seen during the
    session, and the last audit records.

    --once, --json, or a stdout that is not a terminal: one report, from two
    samples --interval apart. JSON fields: time, interval_s; nodes: node,
    state ("up" or "down"), why (down), creation, up_since, uptime_s,
    calls_in_per_s, calls_out_per_s, p99_ms, calls_in_total, calls_out_total,
    calls (kind -> outcome -> count made), served, processes, mailbox_max,
    mailbox_sum, suspects, peers (state -> count), restarts; groups: scope,
    group, members, routable, members_by_owners; events: time, node, event
    (node_up, node_down, restarts, admin), detail; audit: seq, time, command,
    outcome, user, why, args. Exit 0; 1 if the cluster cannot be reached.
    """
    seconds = check_timeout(_number(interval, "interval"), "interval")
    wait = check_timeout(_number(timeout, "timeout"))
    groups = int(_number(top, "groups")) if top.strip().isdigit() else -1
    if not 0 <= groups <= MAX_TOP_GROUPS:
        raise shoal.BadArgument("groups", top, f"an int from 0 to {MAX_TOP_GROUPS}")
    live = not (once or as_json) and sys.stdout.isatty()
    loop_factory()
    try:
        asyncio.run(_run(store, cluster, seconds, wait, groups, live, as_json))
    except KeyboardInterrupt:
        return
