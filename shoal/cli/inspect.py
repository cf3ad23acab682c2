"""Read-only views of a cluster for the command line, and one-off calls.

``nodes``, ``groups`` and ``members`` read one snapshot of the store; they
do not join the cluster, so they work while nodes are down and change
nothing. ``call`` starts a short-lived node named ``shoal-cli-<os pid>``,
makes one group call and stops it (leaving nothing behind).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import msgpack

import shoal
from shoal.membership.keys import decode_members, parse_member_key
from shoal.store import Store, open_store

__all__ = ["ClusterView", "call_group", "read_cluster"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterView:
    """What the store holds now: nodes and memberships."""

    nodes: dict[str, dict[str, Any]]
    # (scope, group) -> [(pid, count)]
    members: dict[tuple[str, str], list[tuple[shoal.Pid, int]]]
    revision: int


def _store(url: str | None, cluster: str | None) -> Store:
    url = url or os.environ.get("SHOAL_STORE") or ""
    name = cluster or os.environ.get("SHOAL_CLUSTER") or "default"
    if url.startswith("etcd://") and "cluster=" not in url:
        url += ("&" if "?" in url else "?") + f"cluster={name}"
    return open_store(url or None)


async def read_cluster(url: str | None, cluster: str | None) -> ClusterView:
    """Read the cluster's nodes and memberships from one store snapshot.

    Raises:
        StoreUnavailable: the store cannot be read.
        BadArgument: the URL is not a store URL.
    """
    store = _store(url, cluster)
    try:
        snapshot = await store.snapshot("")
    finally:
        await store.close()
    nodes: dict[str, dict[str, Any]] = {}
    members: dict[tuple[str, str], list[tuple[shoal.Pid, int]]] = {}
    for key, entry in snapshot.entries.items():
        if key.startswith("nodes/"):
            try:
                info = msgpack.unpackb(entry.value, raw=False, strict_map_key=True)
            except Exception:
                info = None
            if isinstance(info, dict):
                nodes[unquote(key[len("nodes/"):])] = info
    for key, entry in snapshot.entries.items():
        parsed = parse_member_key(key) if key.startswith("members/") else None
        if parsed is None:
            continue
        owner = nodes.get(parsed.node)
        if owner is None or owner.get("creation") != parsed.creation:
            continue  # an entry of an incarnation that is gone
        counts = decode_members(parsed.bucket, entry.value) or {}
        listed = members.setdefault((parsed.scope, parsed.group), [])
        listed.extend((shoal.Pid(parsed.node, parsed.creation, serial), count)
                      for serial, count in sorted(counts.items()))
        if not listed:
            del members[(parsed.scope, parsed.group)]
    return ClusterView(nodes=nodes, members=members, revision=snapshot.revision)


def describe_node(name: str, info: dict[str, Any]) -> dict[str, Any]:
    started = info.get("started")
    uptime = time.time() - started if isinstance(started, (int, float)) else None
    return {
        "name": name,
        "address": f"{info.get('host')}:{info.get('port')}",
        "creation": info.get("creation"),
        "os_pid": info.get("os_pid"),
        "host": info.get("hostname"),
        "version": info.get("version"),
        "uptime_s": round(uptime, 1) if uptime is not None else None,
    }


async def call_group(url: str | None, cluster: str | None, group: str, request: Any, *,
                     scope: str, timeout: float, strategy: str, key: Any) -> Any:
    """Make one group call from a short-lived node; return the reply.

    Raises:
        ShoalError: whatever the group call raised (NoMembers, CallTimeout, ...).
    """
    options: dict[str, Any] = {"name": f"shoal-cli-{os.getpid()}", "drain_timeout": 1.0}
    if url:
        options["store"] = url
    if cluster:
        options["cluster"] = cluster
    async with shoal.Node(**options) as node:
        return await node.scope(scope).call(group, request, timeout=timeout,
                                            strategy=strategy, key=key)
