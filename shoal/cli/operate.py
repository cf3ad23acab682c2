"""What the operators' commands do, below their command-line shape.

Each command joins the cluster briefly as a node named ``shoal-cli-<os
pid>`` (:func:`cli_node`), asks the nodes concerned over the admin channel
(``runtime/admin.py``; docs/protocol.md 3.5) and stops again, leaving
nothing behind. The node that owns a process is the authority on it: these
functions plan from what owners answer, and owners re-check every guard
when they act.

Errors are ``ShoalError``s with a one-line message (the CLI prints it and
exits 1): :class:`UnknownTarget` for a node, group or pid that is not
there, ``BadRequest`` for a refusal by the owner.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import shoal
from shoal.runtime.admin import admin_request, operator
from shoal.store import SqliteStore, open_store

__all__ = ["EvictPlan", "UnknownTarget", "ask", "cli_node", "drain", "evict", "parse_target",
           "ping", "plan_evict", "refuse_empty"]


POLL_INTERVAL = 0.05  # seconds between looks at the store's view while a node drains


class UnknownTarget(shoal.TargetError):
    """A node, group or pid named on the command line is not in the cluster."""


def parse_target(text: str) -> shoal.Pid | str:
    """A pid when ``text`` is written as one (``<node.creation.serial>``,
    with the angle brackets), else ``text`` itself (a node or group name)."""
    if text.startswith("<") and text.endswith(">"):
        return shoal.Pid.parse(text)
    return text


@asynccontextmanager
async def cli_node(url: str | None, cluster: str | None) -> AsyncIterator[shoal.Node]:
    """A short-lived node of the cluster at ``url``; refuses to create a
    SQLite store that does not exist ("no cluster at PATH").

    Raises:
        StoreUnavailable: no cluster there, or the store cannot be reached.
    """
    if not url or url.startswith("sqlite://"):
        embedded = open_store(url or None)  # no IO; BadArgument for a malformed URL
        if isinstance(embedded, SqliteStore) and not embedded.path.is_file():
            raise shoal.StoreUnavailable(f"no cluster at {embedded.path}")
    # http="": no endpoint, whatever SHOAL_HTTP says (it is meant for the serving node).
    options: dict[str, Any] = {"name": f"shoal-cli-{os.getpid()}", "drain_timeout": 1.0,
                               "http": ""}
    if url:
        options["store"] = url
    if cluster:
        options["cluster"] = cluster
    async with shoal.Node(**options) as node:
        yield node


def _incarnation(node: shoal.Node, name: str) -> int:
    peer = node.cluster_view.peer(name)
    if peer is None:
        known = sorted(n for n in node.cluster_view.names() if not n.startswith("shoal-cli-"))
        raise UnknownTarget(f"no live node named {name!r} in the cluster "
                            f"(live: {', '.join(known) or 'none'})")
    return peer.creation


async def ask(node: shoal.Node, target: str, op: str, args: dict[str, Any],
              timeout: float) -> Any:
    """Send one admin request to node ``target``; return its answer.

    Raises:
        UnknownTarget: no live node of that name.
        BadRequest: the node refused (its message says why).
        NodeDown, CallTimeout: it could not be asked.
        ShoalError: the node does not serve admin requests.
    """
    pid = shoal.Pid(target, _incarnation(node, target), 0)
    try:
        return await node.call(pid, admin_request(op, {**args, "who": operator()}), timeout)
    except shoal.NoSuchProcess:
        raise shoal.ShoalError(f"node {target!r} does not serve admin requests "
                               "(a shoal release without them?)") from None


async def ping(node: shoal.Node, target: shoal.Pid | str, timeout: float) -> dict[str, Any]:
    """Round trip to a node (its admin ``ping``) or a pid (``ask_alive``)."""
    started = time.perf_counter()
    if isinstance(target, shoal.Pid):
        current = _incarnation(node, target.node)
        alive = await node.ask_alive(target, timeout)
        rtt = time.perf_counter() - started
        result = {"pid": str(target), "node": target.node, "alive": alive,
                  "creation": target.creation, "node_creation": current,
                  "rtt_ms": round(rtt * 1000, 3)}
        if target.creation != current:
            result["why"] = "a pid of an earlier incarnation of its node"
        return result
    answer = await ask(node, target, "ping", {}, timeout)
    rtt = time.perf_counter() - started
    return {**answer, "alive": True, "rtt_ms": round(rtt * 1000, 3)}


@dataclass(frozen=True, slots=True, kw_only=True)
class EvictPlan:
    """What ``evict`` would do: remove ``pids`` from the group."""

    scope: str
    group: str
    pids: list[shoal.Pid]
    live_before: list[shoal.Pid]
    live_after: list[shoal.Pid]
    unreachable: list[shoal.Pid]

    def as_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "group": self.group,
                "evict": [str(p) for p in self.pids],
                "live_members_before": len(self.live_before),
                "live_members_after": len(self.live_after),
                "unreachable_members": [str(p) for p in self.unreachable]}


async def _live(node: shoal.Node, members: list[shoal.Pid], timeout: float
                ) -> tuple[list[shoal.Pid], list[shoal.Pid]]:
    """Members whose owner says they are alive, and those whose owner could
    not be asked (kept: unreachable is never evidence of death)."""
    by_node: dict[str, list[shoal.Pid]] = {}
    for pid in members:
        by_node.setdefault(pid.node, []).append(pid)
    live: list[shoal.Pid] = []
    unreachable: list[shoal.Pid] = []
    for owner, pids in sorted(by_node.items()):
        try:
            states = await ask(node, owner, "alive", {"pids": pids}, timeout)
        except (shoal.TargetError, shoal.CallTimeout):
            unreachable.extend(pids)
            continue
        live.extend(p for p, state in zip(pids, states, strict=True) if state == "alive")
    return live, unreachable


async def plan_evict(node: shoal.Node, scope: str, group: str, pids: list[shoal.Pid], *,
                     allow_empty: bool, timeout: float) -> EvictPlan:
    """Check an eviction before doing it.

    Raises:
        UnknownTarget: the group has no members, or a pid is not one.
        BadRequest: it would leave the group without a live member and
            ``allow_empty`` is not set.
    """
    # The CLI's node follows only the scopes it opens: load this one first.
    members = sorted(set((await node.open_scope(scope, timeout)).get_members(group)))
    if not members:
        raise UnknownTarget(f"group {group!r} (scope {scope!r}) has no members")
    strangers = [str(p) for p in pids if p not in members]
    if strangers:
        raise UnknownTarget(f"not members of group {group!r} (scope {scope!r}): "
                            f"{', '.join(strangers)}")
    live, unreachable = await _live(node, members, timeout)
    after = [p for p in live if p not in pids]
    plan = EvictPlan(scope=scope, group=group, pids=sorted(set(pids)), live_before=live,
                     live_after=after, unreachable=unreachable)
    refuse_empty(plan, allow_empty=allow_empty)
    return plan


def refuse_empty(plan: EvictPlan, *, allow_empty: bool) -> None:
    """Refuse a plan that leaves its group without a live member.

    Raises:
        BadRequest: it would, and ``allow_empty`` is not set.
    """
    if not plan.live_after and not allow_empty:
        raise shoal.BadRequest(None, f"evicting would leave group {plan.group!r} (scope "
                                     f"{plan.scope!r}) without a live member "
                                     f"({len(plan.live_before)} live now); refused "
                                     "(--allow-empty to force)")


async def evict(node: shoal.Node, plan: EvictPlan, *, allow_empty: bool,
                timeout: float) -> list[dict[str, Any]]:
    """Ask each owner to evict its pids of ``plan``; one answer per owner."""
    by_node: dict[str, list[shoal.Pid]] = {}
    for pid in plan.pids:
        by_node.setdefault(pid.node, []).append(pid)
    results = []
    for owner, pids in sorted(by_node.items()):
        answer = await ask(node, owner, "evict", {"scope": plan.scope, "group": plan.group,
                                                  "pids": pids, "allow_empty": allow_empty},
                           timeout)
        results.append({"node": owner, "evicted": [str(p) for p in answer["evicted"]],
                        "live_members_left": answer["live_members_left"]})
    return results


async def drain(node: shoal.Node, target: str, timeout: float) -> dict[str, Any]:
    """Drain node ``target`` and wait until the store shows it out.

    Raises:
        CallTimeout: it was still registered after ``timeout`` seconds.
    """
    creation = _incarnation(node, target)
    started = time.monotonic()
    plan = await ask(node, target, "drain", {}, timeout)
    view = node.cluster_view
    deadline = started + timeout
    # The store's word, as this node's replication follows it: no event
    # announces another node's session ending to the CLI, so look, bounded.
    while (peer := view.peer(target)) is not None and peer.creation == creation:
        if time.monotonic() > deadline:
            raise shoal.ShoalError(f"node {target} is still registered {timeout:g}s after "
                                   "its drain began; see its log")
        await asyncio.sleep(POLL_INTERVAL)
    return {**plan, "out_after_s": round(time.monotonic() - started, 3)}
