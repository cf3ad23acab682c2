"""What ``shoal top`` shows, below its rendering (``top_view.py``).

``shoal top`` joins the cluster briefly as a CLI node (``operate.cli_node``)
and, once per interval, asks every node for its admin ``stats``
(``runtime/admin_stats.py``; docs/protocol.md 3.5), all at once, each
bounded by the command's timeout. Figures come from those answers and from
the CLI node's own view of the groups, never from logs.

Definitions (the same in the view, the text and the JSON):

- calls in: calls *served* by the node: its local calls (caller and callee
  both on it) plus the remote calls other nodes delivered to its processes;
- calls out: calls *made* by the node: local plus remote (a group call
  counts through the attempt it makes, as ``shoal_calls_total`` does);
- per-second rates and p99 come from the difference between two answers of
  the same incarnation, over the seconds between them; the p99 is that of
  remote calls made (local calls are counted, not timed), given as the
  upper bound of the duration bucket that holds it, in milliseconds.

Owns: :class:`Watch`, one top session's memory: the previous sample (for
rates), the names of the nodes it has seen (a node gone from the store
stays listed as down for the session) and the recent events, at most
:data:`MAX_EVENTS` (older ones are dropped).
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

import shoal
from shoal.cli.operate import UnknownTarget, ask

__all__ = ["CLI_PREFIX", "MAX_EVENTS", "Sample", "Watch", "p99_ms", "take_sample"]

CLI_PREFIX: Final = "shoal-cli-"
"""Nodes named so are operators' commands, not shown."""
MAX_EVENTS: Final = 20
"""Recent events a session keeps (node up and down, restarts, operators'
actions received)."""
ACTIONS: Final = {"evict": "evict (a reap removed dead members)",
                  "forget": "forget (a reap removed a dead node's records)",
                  "drain": "drain (a deploy or a shutdown)", "reload": "reload (new code)"}
"""Admin requests shown as events, and what each means (the read-only ones,
such as ``ping`` and ``stats``, are not events)."""


def _iso(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).isoformat(
        timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at the cluster: each node's ``stats`` answer, or why it
    could not be asked; and the CLI node's view of the groups named."""

    at: float  # time.monotonic() when the answers were in
    answers: dict[str, dict[str, Any] | str]
    groups: list[dict[str, Any]] = field(default_factory=list)


async def _stats(node: shoal.Node, name: str, timeout: float, top: int
                 ) -> dict[str, Any] | str:
    try:
        answer = await ask(node, name, "stats", {"top": top}, timeout)
    except UnknownTarget:
        return "no longer registered in the store (its session ended)"
    except shoal.ShoalError as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if not isinstance(answer, dict):
        return "answered stats with something that is not a map"
    return answer


def _view_groups(node: shoal.Node, answers: dict[str, dict[str, Any] | str],
                 limit: int) -> list[dict[str, Any]]:
    """The groups the nodes named, as the CLI node sees them, largest first."""
    owned: dict[tuple[str, str], int] = {}
    for answer in answers.values():
        if isinstance(answer, dict):
            for row in answer.get("groups", []):
                key = (str(row["scope"]), str(row["group"]))
                owned[key] = owned.get(key, 0) + int(row["local_members"])
    view = node.cluster_view
    rows: list[tuple[int, str, str, int, int]] = []
    for (scope, group), local in owned.items():
        members = node.scope(scope).get_members(group)
        routable = [p for p in members if p.node == node.name or view.is_routable(p.node)]
        rows.append((len(members), scope, group, len(routable), local))
    rows.sort(key=lambda r: (-r[0], r[1], r[2]))
    return [{"scope": scope, "group": group, "members": members, "routable": routable,
             "members_by_owners": local} for members, scope, group, routable, local
            in rows[:limit]]


async def take_sample(node: shoal.Node, known: set[str], *, timeout: float, top: int
                      ) -> Sample:
    """Ask every node in the store's view, and every name in ``known``, for
    its ``stats`` at once; a node that does not answer is reported with why."""
    names = sorted({n for n in node.cluster_view.names() if not n.startswith(CLI_PREFIX)}
                   | known)
    found = await asyncio.gather(*(_stats(node, name, timeout, top) for name in names))
    answers = dict(zip(names, found, strict=True))
    for scope in sorted({str(row["scope"]) for answer in answers.values()
                         if isinstance(answer, dict) for row in answer.get("groups", [])}):
        await node.open_scope(scope, timeout)  # the CLI's node follows what it opens
    return Sample(time.monotonic(), answers, _view_groups(node, answers, top))


def _sum(calls: dict[str, dict[str, int]], kind: str) -> int:
    return sum(calls.get(kind, {}).values())


def _totals(answer: dict[str, Any]) -> tuple[int, int]:
    """(calls in, calls out) so far (module header)."""
    calls = answer["calls"]
    local = _sum(calls, "local")
    return local + int(answer["served"]), local + _sum(calls, "remote")


def p99_ms(buckets: list[float], before: list[int], after: list[int]) -> float | None:
    """The upper bound (ms) of the bucket holding the 99th percentile of the
    calls counted between ``before`` and ``after``; None if there were none.
    Past the last bound, the last bound is given (it is a lower bound then)."""
    deltas = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(deltas)
    if total <= 0:
        return None
    rank, seen = 0.99 * total, 0
    for i, count in enumerate(deltas):
        seen += count
        if seen >= rank:
            return round(buckets[min(i, len(buckets) - 1)] * 1000, 3)
    return round(buckets[-1] * 1000, 3)  # pragma: no cover - seen reaches total


def node_row(name: str, answer: dict[str, Any] | str, before: dict[str, Any] | str | None,
             seconds: float) -> dict[str, Any]:
    """One node's row (see ``shoal top --help`` for the fields)."""
    if isinstance(answer, str):
        return {"node": name, "state": "down", "why": answer}
    calls_in, calls_out = _totals(answer)
    row: dict[str, Any] = {
        "node": name, "state": "up", "creation": answer["creation"],
        "up_since": _iso(float(answer["started"])), "uptime_s": answer["uptime_s"],
        "calls_in_per_s": None, "calls_out_per_s": None, "p99_ms": None,
        "calls_in_total": calls_in, "calls_out_total": calls_out,
        "calls": answer["calls"], "served": answer["served"],
        "processes": answer["processes"], "mailbox_max": answer["mailbox_max"],
        "mailbox_sum": answer["mailbox_sum"], "suspects": answer["suspects"],
        "peers": answer["peers"], "restarts": answer["restarts"],
    }
    if isinstance(before, dict) and before["creation"] == answer["creation"] and seconds > 0:
        was_in, was_out = _totals(before)
        row["calls_in_per_s"] = round((calls_in - was_in) / seconds, 1)
        row["calls_out_per_s"] = round((calls_out - was_out) / seconds, 1)
        row["p99_ms"] = p99_ms(answer["buckets"], before["durations"]["remote"],
                               answer["durations"]["remote"])
    return row


class Watch:
    """One top session (see the module header)."""

    def __init__(self) -> None:
        self.previous: Sample | None = None
        # Invariant: every node name a sample answered for (bounded by the cluster).
        self.known: set[str] = set()
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)

    def _event(self, node: str, event: str, detail: str) -> None:
        self.events.append({"time": _iso(time.time()), "node": node, "event": event,
                            "detail": detail})

    def update(self, sample: Sample) -> dict[str, Any]:
        """The report of ``sample`` against the previous one; remember it."""
        before = self.previous
        seconds = sample.at - before.at if before is not None else 0.0
        rows = []
        for name, answer in sample.answers.items():
            was = before.answers.get(name) if before is not None else None
            rows.append(node_row(name, answer, was, seconds))
            if before is not None:
                self._compare(name, was, answer)
        self.known.update(sample.answers)
        self.previous = sample
        return {"time": _iso(time.time()), "interval_s": round(seconds, 3) or None,
                "nodes": rows, "groups": sample.groups, "events": list(self.events)}

    def _compare(self, name: str, was: dict[str, Any] | str | None,
                 now: dict[str, Any] | str) -> None:
        if isinstance(now, str):
            if not isinstance(was, str):
                self._event(name, "node_down", now)
            return
        if not isinstance(was, dict):
            self._event(name, "node_up", f"incarnation {now['creation']}")
            return
        if was["creation"] != now["creation"]:
            self._event(name, "node_up", f"new incarnation {now['creation']} "
                                         f"(was {was['creation']})")
            return
        if now["restarts"] > was["restarts"]:
            self._event(name, "restarts", f"{now['restarts'] - was['restarts']} supervisor "
                                          "restart(s)")
        before, after = was.get("admin_actions", {}), now.get("admin_actions", {})
        for op, meaning in ACTIONS.items():
            if after.get(op, 0) > before.get(op, 0):
                self._event(name, "admin", f"{after[op] - before.get(op, 0)} x {meaning}")
