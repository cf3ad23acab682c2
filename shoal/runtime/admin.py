"""Admin requests: what operators' tools ask a node about its own processes.

An admin request is an ordinary CALL (docs/protocol.md, 3.5) to the node's
serial 0, ``[node, creation, 0]``, whose request is the array
``["shoal.admin", 1, op, args]``. It travels on the authenticated peer
protocol, so only a node holding the cluster's secret (the CLI joins as a
short-lived node) can send one, and it is answered by the node that owns
the processes it is about: that node is the authority on them (G5). A node
that does not serve admin requests answers FAIL ``"noproc"``, as for any
CALL to serial 0.

Owns: ``_running``, the admin requests being served now (each one task;
at most :data:`MAX_ADMIN_REQUESTS`, more are answered ``"overloaded"``),
and ``_drain_task``, the node's stop a drain request started.

Rules:

- Rule 1: read-only operations (``ping``, ``alive``, ``members``,
  ``stats``: ``admin_stats.py``) change
  nothing. Changing ones (``evict``, ``forget``, ``drain``, ``reload``) re-check their guards on
  this node's state at the moment they act, whatever the requester planned,
  and log one line at WARNING naming the requesting node and the operator
  (``who``: OS user and host, as the requester states them).
- Rule 2: a refusal (a guard, an unknown group or pid, bad arguments) is a
  FAIL ``"badrequest"`` carrying a one-line message; nothing was changed.
- Rule 2b: ``reload`` runs the node's hot reload (``runtime/reload.py``)
  and answers what moved and what failed per pid, or the import's error
  (then nothing changed); it logs one line at WARNING like the other changes.
- Rule 3: ``drain`` answers first (with what it will drain), then stops the
  node in the order of G4; the requester watches the store to see it out.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from shoal._version import __version__
from shoal.errors import BadArgument, BadRequest, NodeDown
from shoal.pid import Crash, Pid
from shoal.runtime.admin_stats import stats
from shoal.wire import Call, Fail, Reply

if TYPE_CHECKING:
    from shoal.membership.table import GroupTable
    from shoal.runtime.cluster import ClusterView
    from shoal.runtime.counters import Counters
    from shoal.runtime.groups import Groups
    from shoal.runtime.join_times import JoinTimes
    from shoal.runtime.processes import ProcessTable
    from shoal.runtime.reload import ReloadResult
    from shoal.transport import PeerConnection

__all__ = ["ADMIN_TAG", "ADMIN_VERSION", "MAX_ADMIN_REQUESTS", "Admin", "AdminParts",
           "admin_request", "operator"]

log = logging.getLogger("shoal")

ADMIN_TAG: Final = "shoal.admin"
ADMIN_VERSION: Final = 1
MAX_ADMIN_REQUESTS: Final = 8
"""Admin requests one node serves at once; more are answered "overloaded"."""
CHANGES: Final = frozenset({"evict", "forget", "drain"})
"""The admin ops that change something (logged at INFO when received)."""


def admin_request(op: str, args: dict[str, Any]) -> list[Any]:
    """The request term of an admin CALL (see the module header)."""
    return [ADMIN_TAG, ADMIN_VERSION, op, args]


def operator() -> dict[str, str]:
    """Who is asking, as the CLI states it: OS user and host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (a bare container)
        user = str(os.getuid())
    return {"user": user, "host": socket.gethostname()}


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminParts:
    """What admin requests read and act on (the node's components)."""

    name: str
    creation: int
    processes: ProcessTable
    table: GroupTable
    cluster: ClusterView
    scope: Callable[[str], Groups]
    stop: Callable[[], Coroutine[Any, Any, None]]
    forget: Callable[[Pid, str], None]
    reload: Callable[..., Awaitable[ReloadResult]]
    joined: JoinTimes
    counters: Counters
    peers: Callable[[], dict[str, list[str]]]


class Admin:
    """Serves admin requests on one node (see the module header)."""

    def __init__(self, parts: AdminParts) -> None:
        self._p = parts
        self.counters = parts.counters  # remote calls served are counted here too
        self.self_pid = Pid(parts.name, parts.creation, 0)
        self._started = time.time()
        # Invariant: at most MAX_ADMIN_REQUESTS tasks; each removes itself.
        self._running: set[asyncio.Task[None]] = set()
        # The node's stop a drain request started (once; it outlives the request).
        self._drain_task: asyncio.Task[None] | None = None
        self._ops: dict[str, Callable[[dict[str, Any], str], Awaitable[Any]]] = {
            "ping": self._ping, "alive": self._alive, "members": self._members,
            "evict": self._evict, "forget": self._forget, "drain": self._drain,
            "reload": self._reload, "stats": self._stats,
        }

    def accepts(self, msg: Call) -> bool:
        """Whether ``msg`` is an admin request for this node."""
        request = msg.request
        return (msg.to == self.self_pid and type(request) is list and len(request) == 4
                and request[0] == ADMIN_TAG)

    def handle(self, peer: PeerConnection, msg: Call) -> None:
        """Serve one admin request; the answer goes back on ``peer``."""
        if len(self._running) >= MAX_ADMIN_REQUESTS:
            _answer(peer, Fail(ref=msg.ref, kind="overloaded", pid=msg.to,
                               detail=MAX_ADMIN_REQUESTS, queue_len=len(self._running)))
            return
        task = asyncio.get_running_loop().create_task(self._serve(peer, msg))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _serve(self, peer: PeerConnection, msg: Call) -> None:
        _, version, op, args = msg.request
        requester = str(peer.peer_node)
        self._p.counters.admin_action(op)
        # Changes are logged at INFO as received; reads (ping, alive,
        # members: what dashboards poll) at DEBUG, so polling floods no log.
        log.log(logging.INFO if op in CHANGES else logging.DEBUG,
                "node %s: admin %r received from node %s", self._p.name, op, requester,
                extra={"shoal_event": {"event": "admin_action", "action": str(op)[:40],
                                       "requester": requester}})
        try:
            if version != ADMIN_VERSION:
                raise BadRequest(msg.request, f"admin version {version!r} is not served "
                                              f"here (this node speaks {ADMIN_VERSION})")
            serve = self._ops.get(op) if type(op) is str else None
            if serve is None:
                raise BadRequest(msg.request, f"unknown admin operation {op!r}; known: "
                                              f"{', '.join(sorted(self._ops))}")
            if type(args) is not dict:
                raise BadRequest(msg.request, "admin arguments must be a map")
            value = await serve(args, requester)
        except (BadRequest, BadArgument) as exc:
            _answer(peer, Fail(ref=msg.ref, kind="badrequest", pid=msg.to,
                               detail=str(exc), queue_len=0))
            return
        except Exception as exc:
            log.exception("admin %r from node %s failed", op, requester)
            crash = Crash.from_exception(exc)
            _answer(peer, Fail(ref=msg.ref, kind="crash", pid=msg.to,
                               detail=[crash.type, crash.message, crash.traceback], queue_len=0))
            return
        _answer(peer, Reply(ref=msg.ref, value=value, queue_len=0))
        if op == "drain":
            self._stop_soon(requester, args)

    # -- read-only ------------------------------------------------------------------

    async def _ping(self, args: dict[str, Any], requester: str) -> dict[str, Any]:
        return {"node": self._p.name, "creation": self._p.creation, "version": __version__,
                "os_pid": os.getpid(), "host": socket.gethostname(),
                "processes": len(self._p.processes.pids()),
                "uptime_s": round(time.time() - self._started, 3),
                "suspects": self._p.cluster.suspected()}

    async def _stats(self, args: dict[str, Any], requester: str) -> dict[str, Any]:
        p = self._p
        return stats((p.name, p.creation, self._started), p.processes, p.table, p.counters,
                     p.peers, args)

    async def _alive(self, args: dict[str, Any], requester: str) -> list[str]:
        """Per pid: "alive", "noproc" (this node's word: it is dead), or
        "not-mine" (a pid of another node or of a later incarnation)."""
        states = []
        for pid in _pids(args.get("pids")):
            if pid.node != self._p.name or pid.creation > self._p.creation:
                states.append("not-mine")
            elif self._p.processes.live(pid) is not None:
                states.append("alive")
            else:
                states.append("noproc")
        return states

    async def _members(self, args: dict[str, Any], requester: str) -> list[dict[str, Any]]:
        scope, group = _scope_group(args)
        rows = []
        for pid in sorted(set(self._p.table.local_members(scope, group))):
            proc = self._p.processes.live(pid)
            joined = self._p.joined.seconds_since(scope, group, pid)
            rows.append({"pid": pid, "alive": proc is not None,
                         "queue_len": proc.queue_len() if proc is not None else 0,
                         "joins": self._p.table.members(scope, group).count(pid),
                         "joined_s": None if joined is None else round(joined, 3)})
        return rows

    # -- changes --------------------------------------------------------------------

    def _live_members(self, scope: str, group: str) -> set[Pid]:
        """Members this node can tell are live: its own running processes,
        and those of peers it can route to."""
        live: set[Pid] = set()
        for pid in self._p.table.members(scope, group):
            if pid.node == self._p.name:
                if self._p.processes.live(pid) is not None:
                    live.add(pid)
            elif self._p.cluster.is_routable(pid.node):
                live.add(pid)
        return live

    async def _evict(self, args: dict[str, Any], requester: str) -> dict[str, Any]:
        scope, group = _scope_group(args)
        pids = _pids(args.get("pids"))
        if not pids:
            raise BadRequest(args, "evict needs at least one pid")
        allow_empty = args.get("allow_empty") is True
        joined = self._p.table.members(scope, group)
        for pid in pids:
            if pid.node != self._p.name or pid.creation != self._p.creation:
                raise BadRequest(args, f"{pid} is not a process of this node "
                                       f"({self._p.name}, creation {self._p.creation})")
            if pid not in joined:
                raise BadRequest(args, f"{pid} is not a member of group {group!r} "
                                       f"(scope {scope!r})")
        live = self._live_members(scope, group)
        remaining = live - set(pids)
        if not remaining and not allow_empty:
            raise BadRequest(args, f"evicting would leave group {group!r} (scope {scope!r}) "
                                   f"without a live member; refused (allow_empty to force)")
        groups = self._p.scope(scope)
        for pid in sorted(set(pids)):
            await groups.leave(group, [pid] * joined.count(pid))
        who = _who(args)
        log.warning("admin: evicted %s from group %r (scope %r) at the request of %s via "
                    "node %s; %d live member(s) left", ", ".join(map(str, sorted(set(pids)))),
                    group, scope, who, requester, len(remaining))
        return {"evicted": sorted(set(pids)), "live_members_left": len(remaining)}

    async def _forget(self, args: dict[str, Any], requester: str) -> dict[str, Any]:
        """Drop the memberships of this incarnation's pids that are not alive
        (reap's "noproc" evidence); a live pid is refused, nothing changed."""
        pids = _pids(args.get("pids"))
        mine = [p for p in pids if p.node == self._p.name and p.creation == self._p.creation]
        living = [str(p) for p in mine if self._p.processes.live(p) is not None]
        if living:
            raise BadRequest(args, f"alive, not forgotten: {', '.join(living)}")
        forgotten = [p for p in mine if self._p.table.groups_of(p)]
        for pid in forgotten:
            self._p.forget(pid, "noproc")
        if forgotten:
            log.warning("admin: forgot the memberships of dead %s at the request of %s via "
                        "node %s", ", ".join(map(str, forgotten)), _who(args), requester)
        return {"forgotten": forgotten}

    async def _drain(self, args: dict[str, Any], requester: str) -> dict[str, Any]:
        groups: dict[str, int] = {}
        for pid in self._p.processes.pids():
            for scope, group in self._p.table.groups_of(pid):
                label = f"{scope}/{group}"
                groups[label] = groups.get(label, 0) + 1
        return {"node": self._p.name, "creation": self._p.creation,
                "processes": len(self._p.processes.pids()), "memberships": groups,
                "calls_in_flight": self._p.cluster.calls_in_flight()}

    async def _reload(self, args: dict[str, Any], requester: str) -> dict[str, Any]:
        module, timeout = args.get("module"), args.get("timeout", 5.0)
        if type(module) is not str or not module:
            raise BadRequest(args, "reload needs a module name (a non-empty string)")
        result = await self._p.reload(module, args.get("extra"), timeout=timeout)
        if result.error is not None:
            outcome = "failed to import; nothing changed"
        else:
            outcome = f"{len(result.moved)} process(es) moved, {len(result.failed)} failed"
        log.warning("admin: reloaded module %s at the request of %s via node %s: %s",
                    module, _who(args), requester, outcome)
        return {"node": self._p.name, "module": module, "moved": list(result.moved),
                "failed": [{"pid": pid, "why": why} for pid, why in result.failed.items()],
                "error": result.error}

    def _stop_soon(self, requester: str, args: dict[str, Any]) -> None:
        if self._drain_task is not None:
            return  # already draining: the node's stop runs once
        log.warning("admin: draining node %s at the request of %s via node %s",
                    self._p.name, _who(args), requester)
        self._drain_task = asyncio.get_running_loop().create_task(self._p.stop())


def _answer(peer: PeerConnection, msg: Reply | Fail) -> None:
    if peer.is_open:
        try:
            peer.send(msg)
        except NodeDown:
            pass  # the requester went away: nobody reads the answer
        except BadArgument:
            # A reply shoal cannot encode is a bug here, not the peer's.
            log.exception("admin answer could not be sent")


def _pids(value: Any) -> list[Pid]:
    if not isinstance(value, list) or not all(type(p) is Pid for p in value):
        raise BadRequest(value, "pids must be a list of pids")
    return value


def _scope_group(args: dict[str, Any]) -> tuple[str, str]:
    scope, group = args.get("scope", "default"), args.get("group")
    if type(scope) is not str or not scope or type(group) is not str or not group:
        raise BadRequest(args, "scope and group must be non-empty strings")
    return scope, group


def _who(args: dict[str, Any]) -> str:
    who = args.get("who")
    if isinstance(who, dict):
        return f"{who.get('user', '?')}@{who.get('host', '?')}"
    return "an unnamed operator"
