"""The admin ``stats`` op: one node's figures for ``shoal top`` (docs/protocol.md 3.5).

Owns nothing: :func:`stats` reads the node's parts when asked and returns a
map of plain terms (ints, floats, strs, lists, maps), the same figures
``/metrics`` serves (``metrics.py``) from the same counters, so the two
agree on one run.

Rules:

- Rule 1: the answer is bounded whatever the node holds: groups are those
  with a member on this node, the ``top`` largest by members (ties by scope
  and name; ``top`` from the request, at most :data:`MAX_TOP_GROUPS`), the
  rest counted in ``groups_omitted``; the suspect list is at most the
  node's peers.
- Rule 2: reading costs one pass over the node's processes and the groups
  of its local members; nothing is kept between requests.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from shoal.errors import BadRequest
from shoal.runtime.counters import BUCKETS, KINDS, OUTCOMES, Counters

if TYPE_CHECKING:
    from shoal.membership.table import GroupTable
    from shoal.runtime.processes import ProcessTable

__all__ = ["DEFAULT_TOP_GROUPS", "MAX_TOP_GROUPS", "stats"]

DEFAULT_TOP_GROUPS: Final = 20
"""Groups a ``stats`` answer lists when the request names no ``top``."""
MAX_TOP_GROUPS: Final = 200
"""The most groups one ``stats`` answer lists (Rule 1)."""


def _top(args: dict[str, Any]) -> int:
    top = args.get("top", DEFAULT_TOP_GROUPS)
    if type(top) is not int or not 0 <= top <= MAX_TOP_GROUPS:
        raise BadRequest(args, f"top must be an int from 0 to {MAX_TOP_GROUPS}")
    return top


def stats(node: tuple[str, int, float], processes: ProcessTable, table: GroupTable,
          counters: Counters, peer_states: Callable[[], dict[str, list[str]]],
          args: dict[str, Any]) -> dict[str, Any]:
    """The ``stats`` answer of node ``(name, creation, started)`` (see the
    module header)."""
    top = _top(args)
    name, creation, started = node
    procs = processes.all()
    sizes = [len(proc.mailbox) for proc in procs]
    local: dict[tuple[str, str], int] = {}
    for proc in procs:
        for scope, group in table.groups_of(proc.pid):
            key = (scope, str(group))
            local[key] = local.get(key, 0) + 1
    rows = [(len(table.members(scope, group)), scope, group, count,
             len(table.routable(scope, group))) for (scope, group), count in local.items()]
    shown = heapq.nsmallest(top, rows, key=lambda r: (-r[0], r[1], r[2]))
    peers = peer_states()
    return {
        "node": name, "creation": creation,
        "started": round(started, 3), "uptime_s": round(time.time() - started, 3),
        "processes": len(sizes), "mailbox_max": max(sizes, default=0),
        "mailbox_sum": sum(sizes),
        "calls": {kind: dict(zip(OUTCOMES, counters.calls[k], strict=True))
                  for k, kind in enumerate(KINDS)},
        "served": counters.served,
        "buckets": list(BUCKETS),
        "durations": {kind: list(counters.durations[k]) for k, kind in enumerate(KINDS)},
        "restarts": counters.restarts,
        "admin_actions": dict(counters.admin_actions),
        "peers": {state: len(names) for state, names in peers.items()},
        "suspects": peers["suspect"],
        "groups": [{"scope": scope, "group": group, "members": members,
                    "local_members": count, "routable": routable}
                   for members, scope, group, count, routable in shown],
        "groups_omitted": len(rows) - len(shown),
    }
