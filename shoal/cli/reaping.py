"""``shoal reap``: gather the evidence, plan with the pure planner, apply.

The plan is :func:`shoal.membership.reap.plan_reap`'s; this module gives it
what it needs and carries out what it decides:

- :func:`gather` reads one consistent store snapshot (every membership
  entry and every node registration), then asks each registered owner who
  it is (admin ``ping``) and whether its listed pids are alive (admin
  ``alive``). An owner that cannot be asked is left unanswered: its entries
  are kept as "unreachable".
- :func:`apply` re-gathers and re-plans first, and acts only on the entries
  both plans agree on (the guards hold on the state at the time of acting,
  not on what the operator read a minute earlier). Entries of an ended
  session or another incarnation are deleted from the store (a bucket key
  only when every pid in it is planned: they share one incarnation);
  entries a live owner calls dead are forgotten by that owner (admin
  ``forget``, which refuses a pid that is alive), then their bucket keys
  deleted as above.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

import shoal
from shoal.cli.inspect import cluster_name, store_url
from shoal.cli.operate import ask
from shoal.membership.keys import PREFIX as MEMBERS
from shoal.membership.keys import decode_members, parse_member_key
from shoal.membership.reap import MemberEntry, OwnerView, PidState, ReapPlan, plan_reap
from shoal.runtime.node_info import node_info
from shoal.store import Delete, Snapshot, open_store, read_snapshot

__all__ = ["Evidence", "apply", "gather", "plan_as_dict", "registrations"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """What reap saw: the entries, and each owner's view."""

    entries: list[MemberEntry]
    owners: dict[str, OwnerView]
    keys: dict[str, set[shoal.Pid]]  # bucket key -> the pids it lists


def registrations(snapshot: Snapshot) -> dict[str, int]:
    """node name -> the creation of its registered incarnation (``nodes/``)."""
    registered: dict[str, int] = {}
    for key, entry in snapshot.entries.items():
        if not key.startswith("nodes/"):
            continue
        try:
            info = msgpack.unpackb(entry.value, raw=False, strict_map_key=True)
        except Exception:  # a record shoal cannot read names no incarnation
            continue
        if isinstance(info, dict) and type(info.get("creation")) is int:
            registered[key[len("nodes/"):]] = info["creation"]
    return registered


async def gather(node: shoal.Node, url: str | None, cluster: str | None,
                 timeout: float) -> Evidence:
    """Read the store and ask the owners (see the module header)."""
    snapshot = await read_snapshot(store_url(url) or None, "", cluster=cluster_name(cluster))
    registered = registrations(snapshot)
    entries: list[MemberEntry] = []
    keys: dict[str, set[shoal.Pid]] = {}
    for key, entry in sorted(snapshot.entries.items()):
        parsed = parse_member_key(key) if key.startswith(MEMBERS) else None
        if parsed is None:
            continue
        counts: Mapping[int, int] = decode_members(parsed.bucket, entry.value) or {}
        pids = {shoal.Pid(parsed.node, parsed.creation, serial) for serial in counts}
        keys[key] = pids
        entries.extend(MemberEntry(scope=parsed.scope, group=parsed.group, pid=pid, key=key)
                       for pid in sorted(pids))
    owners: dict[str, OwnerView] = {}
    for name in sorted({e.pid.node for e in entries}):
        creation = registered.get(name)
        answered: int | None = None
        states: dict[shoal.Pid, PidState] = {}
        if creation is not None:
            try:
                answered = (await ask(node, name, "ping", {}, timeout))["creation"]
                asked = sorted({e.pid for e in entries
                                if e.pid.node == name and e.pid.creation == answered})
                if asked:
                    answers = await ask(node, name, "alive", {"pids": asked}, timeout)
                    states = dict(zip(asked, answers, strict=True))
            except (shoal.TargetError, shoal.CallTimeout, shoal.Overloaded):
                answered, states = None, {}
        owners[name] = OwnerView(registered=creation, answered=answered, states=states)
    return Evidence(entries=entries, owners=owners, keys=keys)


def plan_as_dict(plan: ReapPlan) -> dict[str, Any]:
    """The plan as ``--json`` prints it."""
    return {
        "remove": [{"scope": r.entry.scope, "group": r.entry.group, "pid": str(r.entry.pid),
                    "evidence": r.evidence} for r in plan.remove],
        "unreachable_kept": [{"scope": e.scope, "group": e.group, "pid": str(e.pid)}
                             for e in plan.unreachable],
        "held": [{"scope": h.scope, "group": h.group, "dead": h.dead, "entries": h.entries,
                  "reason": h.reason} for h in plan.held],
        "live": plan.live,
    }


async def apply(node: shoal.Node, url: str | None, cluster: str | None, planned: ReapPlan, *,
                max_dead_share: float, timeout: float) -> dict[str, Any]:
    """Carry out ``planned`` where a fresh plan agrees; return what was done."""
    evidence = await gather(node, url, cluster, timeout)
    fresh = plan_reap(evidence.entries, evidence.owners, max_dead_share=max_dead_share)
    agreed = {(r.entry.key, r.entry.pid): r for r in fresh.remove} \
        .keys() & {(r.entry.key, r.entry.pid) for r in planned.remove}
    chosen = [r for r in fresh.remove if (r.entry.key, r.entry.pid) in agreed]
    doomed_keys: dict[str, set[shoal.Pid]] = {}
    forget: dict[str, set[shoal.Pid]] = {}
    for removal in chosen:
        doomed_keys.setdefault(removal.entry.key, set()).add(removal.entry.pid)
        if removal.evidence == "noproc":
            forget.setdefault(removal.entry.pid.node, set()).add(removal.entry.pid)
    forgotten: list[str] = []
    for owner, pids in sorted(forget.items()):
        # The owner first: a membership its table still holds would be written again.
        answer = await ask(node, owner, "forget", {"pids": sorted(pids)}, timeout)
        forgotten.extend(str(p) for p in answer["forgotten"])
    # A bucket key lists pids of one incarnation, scope and group: deleted
    # only when every pid in it is planned (a live owner's other members stay).
    deletes = [key for key, pids in sorted(doomed_keys.items()) if pids == evidence.keys[key]]
    if deletes:
        store = open_store(store_url(url) or None, cluster=cluster_name(cluster))
        try:
            # A registration other nodes can read (a tool: no address to dial).
            name = f"shoal-reap-{os.getpid()}"
            info = node_info(name, time.time_ns() // 1000, 10.0, "", 0, as_given=True)
            session = await store.open_session(name, info, 10.0)
            try:
                await session.apply([Delete(key=key) for key in deletes])
            finally:
                await session.close()
        finally:
            await store.close()
    return {"deleted_keys": deletes, "forgotten": forgotten,
            "skipped": len(planned.remove) - len(chosen)}
