"""What a node tells about itself: its ``nodes/<name>`` record in the store,
and the :class:`NodeStatistics` it reports to its user.

The record is a msgpack map written under the node's store session: the
address peers dial, the incarnation, the membership layout it writes
(``layout``; absent means 1), and facts for operators (OS pid, host,
version, start time, session TTL). Peers read only what routing needs; a
record they cannot read is skipped (G7). A restarting node reads its
predecessor's record to tell whether that one provably died on this host.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from shoal._backoff import backoff_delays
from shoal._version import __version__
from shoal.errors import NameInUse
from shoal.membership.keys import LAYOUT
from shoal.runtime.peers import PeerInfo
from shoal.store.base import Session, Store

if TYPE_CHECKING:
    from shoal.membership.table import GroupTable
    from shoal.runtime.process import Process

__all__ = ["NodeStatistics", "advertised_host", "holder_is_dead", "node_info",
           "node_statistics", "open_first_session", "parse_info", "process_identity"]

log = logging.getLogger("shoal")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStatistics:
    """A frozen summary of a node, from :meth:`Node.statistics`.

    Attributes:
        name: the node's name.
        processes: live local processes.
        queued: messages waiting in their mailboxes, in all.
        monitors: monitors held by local processes.
        groups: non-empty groups this node knows, over every scope.
        memberships: distinct (pid, scope, group) memberships it knows.
        calls_in_flight: group calls this node made that are not answered
            yet (what ``least_loaded`` counts), over every callee.
        connected: the peer nodes it has an open connection to now, by
            name (an idle one closes: ``Node(idle_timeout=...)``).
    """

    name: str
    processes: int
    queued: int
    monitors: int
    groups: int
    memberships: int
    calls_in_flight: int
    connected: tuple[str, ...] = ()


def node_statistics(name: str, processes: Iterable[Process], table: GroupTable,
                    calls_in_flight: int, connected: Iterable[str] = ()) -> NodeStatistics:
    """The :class:`NodeStatistics` of node ``name`` hosting ``processes``
    (live or dead: the dead are not counted) and holding ``table``."""
    live = [p for p in processes if p.alive]
    return NodeStatistics(
        name=name, processes=len(live),
        queued=sum(len(p.mailbox) for p in live),
        monitors=sum(len(p.monitoring) for p in live),
        groups=sum(len(table.which_groups(s)) for s in table.scopes()),
        memberships=sum(len(table.groups_of(p)) for p in table.pids()),
        calls_in_flight=calls_in_flight, connected=tuple(sorted(connected)),
    )


def advertised_host(host: str) -> str:
    """The address peers should dial for a listener bound to ``host``.

    A wildcard bind (``0.0.0.0``, ``::``: every interface) is no address a
    peer on another host can dial; advertised as is, those peers would dial
    their own host. Advertise the address of the interface that carries the
    default route instead (a UDP ``connect`` picks it and sends nothing), or
    loopback when there is no route at all (then only this host can reach us).
    """
    if host not in ("0.0.0.0", "::"):
        return host
    family, probe, fallback = (
        (socket.AF_INET6, "2001:db8::1", "::1") if host == "::"
        else (socket.AF_INET, "192.0.2.1", "127.0.0.1"))
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return fallback


def node_info(name: str, creation: int, ttl: float, host: str, port: int, *,
              as_given: bool = False) -> bytes:
    """The ``nodes/<name>`` value: what others need to reach and show us.

    ``host`` is the address listened on, translated for a wildcard bind
    (:func:`advertised_host`), or, ``as_given``, the address to advertise.
    """
    packed: bytes = msgpack.packb({
        "name": name, "creation": creation,
        "host": host if as_given else advertised_host(host),
        "port": port,
        "os_pid": os.getpid(), "hostname": socket.gethostname(), "version": __version__,
        "started": time.time(), "ttl": ttl, "process": process_identity(),
        "layout": LAYOUT,
    })
    return packed


def process_identity() -> str | None:
    """Where this OS process's pid means something: the boot and the pid
    namespace (Linux). Two processes with the same identity see the same
    pids, so one can tell whether the other's pid is still running; None
    where that cannot be known."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            boot = file.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot}/{namespace}"


def holder_is_dead(info: dict[str, Any]) -> bool:
    """True only when a ``nodes/`` record's process provably no longer runs:
    it ran under this process identity (same host, boot and pid namespace)
    and its pid is gone or a zombie (exited, not yet reaped by its parent:
    ``kill(pid, 0)`` still succeeds on it). Anything else (another host, no
    identity, a pid that runs, even if reused) counts as alive."""
    me = process_identity()
    pid = info.get("os_pid")
    if me is None or info.get("process") != me or type(pid) is not int or pid <= 0:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return _is_zombie(pid)  # it exists (owned by someone else)
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits to be reaped (state Z, or X)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            stat = file.read()
    except OSError:
        return False  # no /proc here, or gone since: nothing proven
    # The command name (field 2) is in parentheses and may hold anything,
    # spaces and ")" included; the state is the first field after the last ")".
    fields = stat[stat.rfind(")") + 1:].split()
    return bool(fields) and fields[0] in ("Z", "X")


def parse_info(name: str, value: bytes | None) -> PeerInfo | None:
    try:
        info = msgpack.unpackb(value or b"", raw=False, strict_map_key=True)
        creation, host, port = info["creation"], info["host"], info["port"]
        if type(creation) is not int or not isinstance(host, str) or type(port) is not int:
            raise TypeError("bad field types")
    except Exception as exc:  # anything malformed: skip it (Rule 4)
        log.warning("ignoring malformed node info for %r: %s", name, exc)
        return None
    return PeerInfo(name, creation, (host, port), info)


async def open_first_session(store: Store, name: str, info: bytes, ttl: float) -> Session:
    """Open a starting node's session. When the name is held by the session
    of a process of this host that is provably dead (killed before it could
    end its session), wait for that session to expire instead of failing: a
    supervisor restarting a killed node gets the name back within the dead
    one's TTL. A holder that may be alive still gets NameInUse at once.

    Raises:
        NameInUse: the holder may be alive, or its session did not expire in time.
        StoreUnavailable: the store cannot be reached.
    """
    try:
        return await store.open_session(name, info, ttl)
    except NameInUse:
        held = await store.snapshot(f"nodes/{name}")
        entry = held.entries.get(f"nodes/{name}")
        try:
            record = msgpack.unpackb(entry.value if entry else b"", raw=False)
        except Exception:
            record = None
        if not isinstance(record, dict) or not holder_is_dead(record):
            raise
    theirs = record.get("ttl")
    wait = (theirs if isinstance(theirs, (int, float)) and 0 < theirs < 3600 else ttl) + 2.0
    log.warning("node %s: the name is held by the session of os pid %s on this host, "
                "which is gone (killed?); waiting up to %.0fs for it to expire",
                name, record.get("os_pid"), wait)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    delays = backoff_delays(initial=0.05, maximum=0.4)
    while True:
        await asyncio.sleep(min(next(delays), max(0.0, deadline - loop.time())))
        try:
            return await store.open_session(name, info, ttl)
        except NameInUse:
            if loop.time() >= deadline:
                raise
