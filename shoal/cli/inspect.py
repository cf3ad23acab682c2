"""Read-only views of a cluster for the command line, and one-off calls.

``nodes``, ``groups`` and ``members`` read one snapshot of the store; they
do not join the cluster, so they work while nodes are down and change
nothing: a SQLite store is opened read-only, and one that does not exist is
"no cluster at PATH", never a new empty store. ``call`` starts a
short-lived node named ``shoal-cli-<os pid>``, makes one group call and
stops it (leaving nothing behind); it too refuses a SQLite store that does
not exist rather than create one.
"""

from __future__ import annotations

import base64
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import msgpack

import shoal
from shoal.membership.keys import PREFIX as MEMBERS
from shoal.membership.keys import decode_members, parse_member_key
from shoal.store import read_snapshot

__all__ = ["ClusterView", "call_group", "cluster_name", "read_cluster", "store_url", "to_json"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterView:
    """What the store holds now: nodes and memberships."""

    nodes: dict[str, dict[str, Any]]
    # (scope, group) -> [(pid, count)]
    members: dict[tuple[str, str], list[tuple[shoal.Pid, int]]]
    revision: int


def store_url(url: str | None) -> str:
    """The store URL a command uses: ``--store``, else ``SHOAL_STORE``, else
    "" (the embedded default)."""
    return url or os.environ.get("SHOAL_STORE") or ""


def cluster_name(cluster: str | None) -> str:
    """The cluster a command uses: ``--cluster``, else ``SHOAL_CLUSTER``, else "default"."""
    return cluster or os.environ.get("SHOAL_CLUSTER") or "default"


async def read_cluster(url: str | None, cluster: str | None) -> ClusterView:
    """Read the cluster's nodes and memberships from one store snapshot,
    changing nothing (see the module docstring).

    Raises:
        StoreUnavailable: the store cannot be read, or there is no SQLite
            database at its path ("no cluster at PATH").
        BadArgument: the URL is not a store URL.
        ConfigError: an etcd URL is malformed.
    """
    snapshot = await read_snapshot(store_url(url) or None, "", cluster=cluster_name(cluster))
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
        parsed = parse_member_key(key) if key.startswith(MEMBERS) else None
        if parsed is None:
            continue
        owner = nodes.get(parsed.node)
        if owner is None or owner.get("creation") != parsed.creation:
            continue  # an entry of an incarnation that is gone
        counts: Mapping[int, int] = decode_members(parsed.bucket, entry.value) or {}
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


async def call_group(url: str | None, cluster: str | None, group: str | shoal.Pid,
                     request: Any, *, scope: str, timeout: float, strategy: str,
                     key: Any, by_name: bool = False) -> Any:
    """Make one group call (or a call to one pid) from a short-lived node;
    return the reply. With ``by_name``, ``group`` is a cluster-wide
    registered name instead (``shoal.Global``), and the call goes to the
    process registered as it.

    Raises:
        StoreUnavailable: there is no SQLite database at the store's path
            ("no cluster at PATH"), or the store cannot be reached.
        BadArgument: ``by_name`` and ``group`` is not a valid name.
        ShoalError: whatever the call raised (NoMembers, NoSuchProcess for an
            unknown name, CallTimeout, ...).
    """
    from shoal.cli.operate import cli_node

    target = shoal.Global(str(group)) if by_name else None  # BadArgument before any IO
    async with cli_node(store_url(url), cluster) as node:
        if target is not None:
            return await node.call(target, request, timeout)
        if isinstance(group, shoal.Pid):
            return await node.call(group, request, timeout)
        # The CLI's node follows only the scopes it opens: load this one first.
        groups = await node.open_scope(scope, timeout)
        return await groups.call(group, request, timeout=timeout, strategy=strategy, key=key)


def to_json(value: Any) -> Any:
    """``value`` as something ``json.dumps(allow_nan=False)`` accepts.

    NaN and the infinities become None (null), as JavaScript's
    ``JSON.stringify`` does; bytes become text (UTF-8, else base64); tuples
    lists; map keys that JSON cannot hold, and any other value, their str().
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return base64.b64encode(value).decode()
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {_json_key(k): to_json(v) for k, v in value.items()}
    return str(value)


def _json_key(key: Any) -> str | int | float | bool | None:
    if key is None or isinstance(key, (bool, int, str)):
        return key
    if isinstance(key, float):
        return key if math.isfinite(key) else str(key)
    return str(key)
