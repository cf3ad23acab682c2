"""Operators' commands: ping, cast, evict, drain, reap.

Each joins the cluster briefly (``operate.cli_node``) and talks to the
nodes concerned over the admin channel. Commands that change something
print their plan first, ask for confirmation on a terminal (``--yes``
otherwise), and leave the final word to the owning node, which re-checks
the guards when it acts. Exit codes: 0 done (or nothing to do), 1 failed
or refused (an unknown node, group or pid, a guard, an unreachable store or
node), 2 bad usage.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

import shoal
from shoal.cli.audit import Audit
from shoal.cli.common import confirm, loop_factory, parse_json, store_options
from shoal.cli.inspect import to_json
from shoal.cli.operate import (
    EvictPlan,
    cli_node,
    drain,
    evict,
    parse_target,
    ping,
    plan_evict,
    refuse_empty,
)
from shoal.cli.reaping import apply as apply_reap
from shoal.cli.reaping import gather, plan_as_dict
from shoal.membership.reap import DEFAULT_MAX_DEAD_SHARE, ReapPlan, plan_reap
from shoal.runtime.checks import check_group, check_name, check_timeout

__all__ = ["COMMANDS"]

_TIMEOUT_HELP = "Seconds to wait for each answer, a finite number > 0."


def _emit(value: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(to_json(value), indent=2, allow_nan=False) if as_json else text)


@click.command("ping")
@click.argument("target")
@store_options
@click.option("--timeout", default=5.0, show_default=True, type=float, help=_TIMEOUT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ping_command(target: str, store: str | None, cluster: str | None, timeout: float,
                 as_json: bool) -> None:
    """Round trip to a NODE (by name) or a PID (<node.creation.serial>).

    Prints the round-trip time and the incarnation (creation) answering.
    A pid of an earlier incarnation of its node is dead: exit 1. JSON
    fields: node, creation, alive, rtt_ms; for a node also version, os_pid,
    host, processes, uptime_s; for a pid also pid and node_creation.
    """
    parsed = parse_target(target)
    if isinstance(parsed, str):
        check_name("target", parsed)
    seconds = check_timeout(timeout)

    async def go() -> dict[str, Any]:
        async with cli_node(store, cluster) as node:
            return await ping(node, parsed, seconds)

    loop_factory()
    result = asyncio.run(go())
    what = result.get("pid") or result["node"]
    state = "alive" if result["alive"] else "dead"
    _emit(result, as_json, f"{what}: {state}, creation {result.get('creation')}, "
                           f"round trip {result['rtt_ms']} ms"
                           + (f" ({result['why']})" if "why" in result else ""))
    if not result["alive"]:
        raise SystemExit(1)


@click.command("cast")
@click.argument("target")
@click.argument("request")
@store_options
@click.option("--scope", default="default", show_default=True, help="The group's scope.")
@click.option("--timeout", default=5.0, show_default=True, type=float, help=_TIMEOUT_HELP)
@click.option("--global", "by_name", is_flag=True,
              help="TARGET is a cluster-wide registered name (node.register_global).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cast_command(target: str, request: str, store: str | None, cluster: str | None,
                 scope: str, timeout: float, by_name: bool, as_json: bool) -> None:
    """Cast REQUEST (JSON) to a GROUP (one member) or a PID (<node.creation.serial>),
    or with --global to the process registered cluster-wide as TARGET (exit 1,
    "no process registered globally", if none is).

    Returns once the cast is delivered: the command then asks the target's
    node whether the process is alive, on the same connection, so the cast
    arrived first. JSON fields: pid, delivered.
    """
    value = parse_json("request", request)
    parsed: shoal.Pid | shoal.Global | str = (
        shoal.Global(target) if by_name else parse_target(target))
    if isinstance(parsed, str):
        check_group(parsed, "target")
    seconds = check_timeout(timeout)

    async def go() -> dict[str, Any]:
        async with cli_node(store, cluster) as node:
            if isinstance(parsed, shoal.Global):
                pid = node.whereis_global(parsed.name)
                if pid is None:
                    raise shoal.NoSuchProcess(parsed)
                node.cast(pid, value)
            elif isinstance(parsed, shoal.Pid):
                pid = parsed
                node.cast(pid, value)
            else:
                pid = (await node.open_scope(scope, seconds)).cast(parsed, value)
            alive = await node.ask_alive(pid, seconds)
            return {"pid": str(pid), "delivered": alive}

    loop_factory()
    result = asyncio.run(go())
    if not result["delivered"]:
        _emit(result, as_json, f"{result['pid']} is not alive: the cast was not delivered")
        raise SystemExit(1)
    _emit(result, as_json, f"cast delivered to {result['pid']}")


def _plan_text(plan: EvictPlan) -> str:
    lines = [f"plan: evict {len(plan.pids)} member(s) from group {plan.group!r} "
             f"(scope {plan.scope!r})"]
    lines += [f"  {pid}" for pid in plan.pids]
    lines.append(f"live members: {len(plan.live_before)} now, {len(plan.live_after)} after")
    if plan.unreachable:
        lines.append(f"unreachable (kept, counted as not live): "
                     f"{', '.join(map(str, plan.unreachable))}")
    return "\n".join(lines)


@click.command("evict")
@click.argument("group")
@click.argument("pids", nargs=-1, required=True)
@store_options
@click.option("--scope", default="default", show_default=True, help="The group's scope.")
@click.option("--allow-empty", is_flag=True,
              help="Evict even if no live member would be left in the group.")
@click.option("--yes", is_flag=True, help="Act without asking (required without a terminal).")
@click.option("--dry-run", is_flag=True, help="Print the plan only.")
@click.option("--timeout", default=5.0, show_default=True, type=float, help=_TIMEOUT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def evict_command(group: str, pids: tuple[str, ...], store: str | None, cluster: str | None,
                  scope: str, allow_empty: bool, yes: bool, dry_run: bool, timeout: float,
                  as_json: bool) -> None:
    """Remove live members PIDS from GROUP, by asking their owners to leave them.

    For a misbehaving member: the process keeps running, out of the group.
    Prints the plan first. Refuses pids that are not members, and refuses
    to leave the group without a live member unless --allow-empty; each
    owner checks that again when it acts. JSON fields: plan (scope, group,
    evict, live_members_before, live_members_after, unreachable_members)
    and, once applied, results (node, evicted, live_members_left).
    """
    check_group(group)
    members = [shoal.Pid.parse(text) for text in pids]
    seconds = check_timeout(timeout)
    loop_factory()
    audit = Audit(store, cluster, "evict", {"group": group, "scope": scope, "pids": list(pids),
                                            "allow_empty": allow_empty})

    async def go() -> tuple[EvictPlan, list[dict[str, Any]] | None]:
        async with cli_node(store, cluster) as node:
            plan = await plan_evict(node, scope, group, members, allow_empty=True,
                                    timeout=seconds)
            audit.evidence = {"plan": plan.as_dict()}
            refuse_empty(plan, allow_empty=allow_empty)
            if dry_run:
                return plan, None
            if not as_json:
                click.echo(_plan_text(plan))
            confirm("apply this plan?", yes)
            return plan, await evict(node, plan, allow_empty=allow_empty, timeout=seconds)

    if dry_run:
        plan, results = asyncio.run(go())
    else:
        with audit.refusals():
            plan, results = asyncio.run(go())
    if as_json:
        _emit({"plan": plan.as_dict(), "results": results}, True, "")
    elif results is None:
        click.echo(_plan_text(plan) + "\n(dry run: nothing changed)")
    else:
        for row in results:
            click.echo(f"node {row['node']} evicted {', '.join(row['evicted'])}; "
                       f"{row['live_members_left']} live member(s) left")
    if results is not None:
        audit.evidence = {"plan": plan.as_dict(), "results": results}
        audit.done()


@click.command("drain")
@click.argument("node_name", metavar="NODE")
@store_options
@click.option("--yes", is_flag=True, help="Act without asking (required without a terminal).")
@click.option("--timeout", default=30.0, show_default=True, type=float,
              help="Seconds to wait for the node to be out, a finite number > 0.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def drain_command(node_name: str, store: str | None, cluster: str | None, yes: bool,
                  timeout: float, as_json: bool) -> None:
    """Stop NODE gracefully and wait until it is out of the cluster.

    The node runs the stop sequence of G4: it leaves every group and waits
    until the store shows it, finishes the calls in flight, runs every
    terminate and ends its store session; a `shoal run` node then exits 0.
    Returns when the store no longer lists it, with what was drained. JSON
    fields: node, creation, processes, memberships ({"scope/group": count}),
    calls_in_flight, out_after_s.
    """
    check_name("node", node_name)
    seconds = check_timeout(timeout)
    confirm(f"drain node {node_name}?", yes)
    loop_factory()

    async def go() -> dict[str, Any]:
        async with cli_node(store, cluster) as node:
            return await drain(node, node_name, seconds)

    audit = Audit(store, cluster, "drain", {"node": node_name, "timeout": seconds})
    with audit.refusals():
        result = asyncio.run(go())
    _emit(result, as_json,
          f"node {result['node']} drained: {result['processes']} process(es), "
          f"{sum(result['memberships'].values())} membership(s) in "
          f"{len(result['memberships'])} group(s); out of the cluster after "
          f"{result['out_after_s']} s")
    audit.evidence = result
    audit.done()


def _reap_text(plan: ReapPlan) -> str:
    lines: list[str] = []
    if plan.empty:
        lines.append(f"nothing to reap: {plan.live} live member(s) answered for by their "
                     "owners, no entry with evidence of death")
    else:
        lines.append(f"plan: remove {len(plan.remove)} membership(s), each with its "
                     "evidence of death:")
        lines += [f"  {r.entry.pid} from {r.entry.scope}/{r.entry.group}: {r.evidence}"
                  for r in plan.remove]
    lines += [f"unreachable, kept: {e.pid} in {e.scope}/{e.group}" for e in plan.unreachable]
    lines += [f"held: {h.scope}/{h.group}: {h.reason}" for h in plan.held]
    return "\n".join(lines)


@click.command("reap")
@store_options
@click.option("--apply", "do_apply", is_flag=True,
              help="Remove what the plan lists (asks first on a terminal; --yes otherwise).")
@click.option("--yes", is_flag=True, help="With --apply: act without asking.")
@click.option("--max-dead-share", default=DEFAULT_MAX_DEAD_SHARE, show_default=True,
              type=click.FloatRange(0, 1, min_open=True),
              help="Hold a group (remove nothing of it) when this share of its entries or "
                   "more looks dead at once: the observer is more likely cut off.")
@click.option("--timeout", default=5.0, show_default=True, type=float, help=_TIMEOUT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def reap_command(store: str | None, cluster: str | None, do_apply: bool, yes: bool,
                 max_dead_share: float, timeout: float, as_json: bool) -> None:
    """Find membership entries whose process is provably dead; remove them with --apply.

    Prints a plan: every entry it would remove, each with its evidence of
    death: "session-ended" (the store holds no live session for its
    incarnation), "other-incarnation" (another incarnation answers under
    its node's name), "noproc" (its own node says the process is not
    alive). Unreachable is never evidence: such entries are listed as
    "unreachable, kept". A group where --max-dead-share or more of the
    entries look dead at once is held, not touched. On a healthy cluster
    the plan is empty, and says so. With --apply, the plan is made again
    just before acting and only what both plans list is removed. JSON
    fields: remove [{scope, group, pid, evidence}], unreachable_kept,
    held [{scope, group, dead, entries, reason}], live, and with --apply
    applied {deleted_keys, forgotten, skipped}. Exit 1 with --apply when a
    group was held.
    """
    seconds = check_timeout(timeout)
    if yes and not do_apply:
        raise shoal.BadArgument("--yes", True, "--yes together with --apply")
    loop_factory()

    async def go() -> tuple[ReapPlan, dict[str, Any] | None]:
        async with cli_node(store, cluster) as node:
            evidence = await gather(node, store, cluster, seconds)
            plan = plan_reap(evidence.entries, evidence.owners, max_dead_share=max_dead_share)
            if not do_apply or plan.empty:
                return plan, None
            if not as_json:
                click.echo(_reap_text(plan))
            confirm("remove these memberships?", yes)
            return plan, await apply_reap(node, store, cluster, plan,
                                          max_dead_share=max_dead_share, timeout=seconds)

    audit = Audit(store, cluster, "reap", {"apply": True, "max_dead_share": max_dead_share})
    if do_apply:
        with audit.refusals():
            plan, applied = asyncio.run(go())
    else:
        plan, applied = asyncio.run(go())
    if as_json:
        _emit({**plan_as_dict(plan), "applied": applied}, True, "")
    elif applied is None:
        click.echo(_reap_text(plan))
    else:
        click.echo(f"removed: {len(applied['deleted_keys'])} store key(s) deleted, "
                   f"{len(applied['forgotten'])} dead pid(s) forgotten by their owners; "
                   f"{applied['skipped']} planned removal(s) skipped (no longer in a fresh "
                   "plan)")
    if do_apply:
        audit.evidence = {**plan_as_dict(plan), "applied": applied}
        held = "; ".join(f"held {h.scope}/{h.group}: {h.reason}" for h in plan.held)
        acted = applied is not None and (applied["deleted_keys"] or applied["forgotten"])
        audit.done("refused" if held and not acted else "done", held)
    if do_apply and plan.held:
        raise SystemExit(1)


COMMANDS = (ping_command, cast_command, evict_command, drain_command, reap_command)
"""The commands ``shoal`` adds from this module."""
