"""``shoal members GROUP --live``: each member, asked of its owner.

The default ``shoal members`` reads the store only (read-only, no cluster
join). ``--live`` joins the cluster briefly (``operate.cli_node``) and,
from one store snapshot of the group's entries, asks:

- every registered node, its admin ``ping``: which nodes it suspects (its
  connection went silent or broke) and for how long;
- each member's owner, its admin ``members``: whether the pid is alive,
  its queue length, and seconds since it joined (``runtime/join_times.py``).

Per member it reports whether it is routable and why not (the ``why``
values are listed in :data:`WHY`): a member is routable only when its
owner's session is in the store, its owner answered that it is alive and a
member, and no node suspects its owner.
"""

from __future__ import annotations

import asyncio
from typing import Any

import shoal
from shoal.cli.inspect import cluster_name, store_url
from shoal.cli.operate import UnknownTarget, ask
from shoal.cli.reaping import registrations
from shoal.membership.keys import PREFIX as MEMBERS
from shoal.membership.keys import decode_members, parse_member_key
from shoal.store import read_snapshot

__all__ = ["WHY", "live_members"]

WHY = {
    "ok": "routable: its owner says it is alive and no node suspects its owner",
    "node-down": "no session in the store for its node's incarnation",
    "suspect": "its owner could not be asked, or a node suspects its owner",
    "noproc": "its owner says the process is not alive",
    "not-member": "its owner no longer lists it in the group (a leave in flight)",
}
"""The ``why`` values of ``members --live``, as ``--help`` and the README list them."""

_UNREACHABLE = (shoal.TargetError, shoal.CallTimeout, shoal.Overloaded, shoal.NodeDown)


async def _suspicions(node: shoal.Node, names: list[str], timeout: float
                      ) -> dict[str, dict[str, float]]:
    """suspected node -> {suspecting node: seconds}, from every node that answers."""
    async def one(name: str) -> dict[str, float]:
        try:
            answer = await ask(node, name, "ping", {}, timeout)
        except _UNREACHABLE:
            return {}
        suspects = answer.get("suspects") if isinstance(answer, dict) else None
        return dict(suspects) if isinstance(suspects, dict) else {}

    found: dict[str, dict[str, float]] = {}
    answers = await asyncio.gather(*(one(name) for name in names))
    for name, suspects in zip(names, answers, strict=True):
        for suspect, seconds in suspects.items():
            found.setdefault(str(suspect), {})[name] = float(seconds)
    return found


async def live_members(node: shoal.Node, url: str | None, cluster: str | None, scope: str,
                       group: str, timeout: float) -> list[dict[str, Any]]:
    """One row per member of the group (see the module header).

    Raises:
        UnknownTarget: the store lists no member of the group.
        StoreUnavailable: the store cannot be read.
    """
    snapshot = await read_snapshot(store_url(url) or None, "", cluster=cluster_name(cluster))
    registered = registrations(snapshot)
    joins: dict[shoal.Pid, int] = {}
    for key, entry in snapshot.entries.items():
        parsed = parse_member_key(key) if key.startswith(MEMBERS) else None
        if parsed is None or parsed.scope != scope or parsed.group != group:
            continue
        for serial, count in (decode_members(parsed.bucket, entry.value) or {}).items():
            pid = shoal.Pid(parsed.node, parsed.creation, serial)
            joins[pid] = joins.get(pid, 0) + count
    if not joins:
        raise UnknownTarget(f"group {group!r} (scope {scope!r}) has no members")
    me = node.name
    peers = sorted(name for name in registered if name != me)
    suspected = await _suspicions(node, peers, timeout)
    owners: dict[str, dict[shoal.Pid, dict[str, Any]] | None] = {}
    for owner in sorted({pid.node for pid in joins}):
        if owner not in registered:
            continue
        try:
            answer = await ask(node, owner, "members", {"scope": scope, "group": group}, timeout)
            owners[owner] = {row["pid"]: row for row in answer}
        except _UNREACHABLE:
            owners[owner] = None
    rows = []
    for pid in sorted(joins):
        row: dict[str, Any] = {"pid": str(pid), "node": pid.node, "joins": joins[pid],
                               "routable": False, "why": "ok", "suspect_since_s": None,
                               "suspected_by": suspected.get(pid.node, {}),
                               "queue_len": None, "joined_s": None}
        local = owners.get(pid.node)
        if registered.get(pid.node) != pid.creation:
            row["why"] = "node-down"
        elif local is None:
            row["why"] = "suspect"
        elif pid not in local:
            row["why"] = "not-member"
        else:
            row["queue_len"] = local[pid]["queue_len"]
            row["joined_s"] = local[pid].get("joined_s")
            if not local[pid]["alive"]:
                row["why"] = "noproc"
            elif row["suspected_by"]:
                row["why"] = "suspect"
        if row["why"] == "suspect" and row["suspected_by"]:
            row["suspect_since_s"] = max(row["suspected_by"].values())
        row["routable"] = row["why"] == "ok"
        rows.append(row)
    return rows
