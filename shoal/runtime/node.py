"""The Node: one OS process's share of the cluster, hosting processes.

A facade: it builds its components, wires them by constructor, runs the G4
start/stop order and offers the public API as one-line delegations (those
about processes live in ``node_api.py``, the base class ``NodeAPI``). The
process table (``processes.py``), messages (``messaging.py``: call, cast,
send, deadlines), signals (``signals.py``: monitors, links, exit signals,
the exit-path hooks) and the group table (a pure ``GroupTable``) all run on
one event loop, so "before any other code on this node runs" means "before
the next ``await``".

Rules:

- Rule 1: a process that exits leaves every group in ``_left``, called
  from the synchronous half of its exit path through ``Signals`` (G1).
- Rule 2: stopping runs in the order of G4: leave every group, drain the
  calls in flight (bounded by ``drain_timeout``), run every ``terminate``
  newest process first (so children stop before the parents that spawned
  them), each bounded by its ``shutdown_timeout``."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import time
from typing import TYPE_CHECKING

from shoal.errors import CallTimeout, ShoalError
from shoal.membership.table import GroupTable
from shoal.pid import SHUTDOWN, Pid, Reason
from shoal.runtime.admin import Admin, AdminParts
from shoal.runtime.checks import check_int, check_name, check_timeout
from shoal.runtime.cluster import ClusterView
from shoal.runtime.config import store_and_addresses
from shoal.runtime.counters import Counters
from shoal.runtime.deadlines import Deadlines
from shoal.runtime.feed import MembershipFeed
from shoal.runtime.groups import GroupParts, Groups
from shoal.runtime.health import Readiness
from shoal.runtime.idle import DEFAULT_IDLE_TIMEOUT
from shoal.runtime.join_times import JoinTimes
from shoal.runtime.messaging import Messaging
from shoal.runtime.metrics import MetricsParts, peer_states
from shoal.runtime.names import Names
from shoal.runtime.node_api import NodeAPI
from shoal.runtime.node_info import NodeStatistics, node_statistics
from shoal.runtime.observe import Observer, parse_http
from shoal.runtime.process import mailbox_limit
from shoal.runtime.processes import ProcessTable
from shoal.runtime.reload import Reloader
from shoal.runtime.remote import Remote
from shoal.runtime.replication import Replication
from shoal.runtime.signals import Signals
from shoal.runtime.spin import BusyPoll, busy_poll_window
from shoal.runtime.startup import Attachment, StoreProber, Wiring, attach, detach
from shoal.runtime.subscriptions import SubscriptionHub
from shoal.store import Store
from shoal.transport import (
    DEFAULT_MAX_HANDSHAKES,
    DEFAULT_MAX_UNSENT,
    MIN_MAX_UNSENT,
)

if TYPE_CHECKING:
    from shoal.gateway.context import GatewayContext

__all__ = ["Node", "NodeStatistics"]

log = logging.getLogger("shoal")


class Node(NodeAPI):
    """A node hosting processes; use it as an async context manager.

    Every setting may also come from the environment (``SHOAL_CLUSTER``,
    ``SHOAL_SECRET``, ``SHOAL_SECRET_FILE``, ``SHOAL_STORE``, ``SHOAL_LISTEN``,
    ``SHOAL_ADVERTISE``, ``SHOAL_TLS_CERT``, ``SHOAL_TLS_KEY``, ``SHOAL_TLS_CA``,
    ``SHOAL_TLS_SERVER_NAME``, ``SHOAL_HTTP``); an argument wins over the environment.

    Args:
        name: the node's name, unique among the live nodes of its cluster.
        cluster: the cluster's name (default ``"default"``): nodes of other
            clusters are refused.
        secret: the cluster secret (bytes or str, at least 16 bytes). Default:
            ``SHOAL_SECRET`` or the file named by ``SHOAL_SECRET_FILE``; with
            the embedded store, one generated beside the database.
        store: a store URL (``sqlite:///path``, ``etcd://host:port``,
            ``memory://``) or a Store object. Default: ``SHOAL_STORE`` or the
            embedded ``sqlite://.shoal/cluster.db`` (relative to the working
            directory). ``memory://`` makes a private store: a node on its
            own, reachable by nobody.
        listen: ``"host:port"`` to accept peers on (default ``127.0.0.1:0``:
            loopback, any free port); ``None`` for no listener.
        advertise: ``"host:port"`` or ``"host"`` (a name or an address) that
            peers dial to reach this node, when it differs from ``listen``:
            behind NAT, in a container with a mapped port, or a DNS name.
            Without a port, or with port 0, the port listened on. Default:
            ``SHOAL_ADVERTISE``, else the listen address (for a wildcard
            bind, the address of the interface carrying the default route).
        heartbeat_timeout: seconds of silence after which a peer's members
            are unroutable (default 2).
        session_ttl: seconds etcd keeps this node's entries after it stops
            renewing its lease (default 5; on SQLite a hung node keeps them).
        idle_timeout: seconds after which a connection to a peer that
            carried no call, cast, send, monitor or link either way (and
            holds no monitor or link) is closed (default 300); the next
            call dials again, and the peer's members stay routable. None:
            connections stay open.
        drain_timeout: seconds ``stop`` waits for in-flight calls.
        mailbox_size: bound of mailboxes whose behaviour sets none (None: unbounded).
        max_unsent: bytes held at most for a peer node that does not read
            (default 64 MiB): past it, calls, casts and sends to it raise
            ``Overloaded``; if it stays past, it is disconnected.
        max_handshakes: accepted connections that may be authenticating at
            once (default 64); more are closed when accepted, and logged.
        tls_cert, tls_key, tls_ca: PEM files for mutual TLS between peers:
            this node's certificate, its key, and the CA that signed every
            node's certificate. All three or none (default:
            ``SHOAL_TLS_CERT``, ``SHOAL_TLS_KEY``, ``SHOAL_TLS_CA``; unset:
            plain TCP). Read by ``start``.
        tls_server_name: the name a peer's certificate must carry (default:
            ``SHOAL_TLS_SERVER_NAME``, else the address dialled).
        server_ssl, client_ssl: ready-made TLS contexts for peer connections
            instead of the files (for setups the files cannot express).
        http: ``"HOST:PORT"`` to serve ``/metrics``, ``/healthz`` and
            ``/readyz`` on (port 0: any free one; see ``http_address``).
            Default: ``SHOAL_HTTP``, else none; ``""``: none whatever
            ``SHOAL_HTTP`` says. ``/readyz``
            answers 200 only after :meth:`set_ready` (``docs/operations.md``).
            The same endpoint serves the HTTP/JSON gateway under ``/v1/``
            (``docs/gateway.md``; see :attr:`gateway`).
        gateway_remote: serve gateway clients that are not on loopback
            (default: ``SHOAL_GATEWAY_REMOTE``, else False).
        http_tls: serve the HTTP endpoint over TLS with the node's peer
            certificate and key (default: ``SHOAL_HTTP_TLS``, else False).
        busy_poll_us: microseconds the node's event loop keeps polling its
            sockets, instead of sleeping, after call traffic (a call sent or
            served, an answer, a cast or send received): an answer arriving
            within it is read without an OS wake-up, which costs 150-300 µs
            on a virtual machine whose idle CPUs halt. Costs at most that
            much CPU per call when calls are sparse, nothing extra when busy;
            an idle node never polls (``docs/operations.md``). Default:
            ``SHOAL_BUSY_POLL_US``, else 150; 0 turns it off. See
            :attr:`busy_poll`.
        seed: seed for the node's random selection (tests).

    Raises:
        BadArgument: a bad argument, named.
        ConfigError: an unsafe or missing secret.
    """

    def __init__(
        self,
        name: str = "node",
        *,
        cluster: str | None = None,
        secret: bytes | str | None = None,
        store: str | Store | None = None,
        listen: str | None = "",
        advertise: str | None = None,
        heartbeat_timeout: float = 2.0,
        session_ttl: float = 5.0,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        drain_timeout: float = 5.0,
        mailbox_size: int | None = None,
        max_unsent: int = DEFAULT_MAX_UNSENT,
        max_handshakes: int = DEFAULT_MAX_HANDSHAKES,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
        tls_server_name: str | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        http: str | None = None,
        gateway_remote: bool | None = None,
        http_tls: bool | None = None,
        busy_poll_us: int | None = None,
        seed: int | None = None,
    ) -> None:
        self.name = check_name("name", name)
        self.cluster = check_name("cluster", cluster or os.environ.get("SHOAL_CLUSTER")
                                  or "default")
        self.drain_timeout = check_timeout(drain_timeout, "drain_timeout")
        self.heartbeat_timeout = check_timeout(heartbeat_timeout, "heartbeat_timeout")
        self.session_ttl = check_timeout(session_ttl, "session_ttl")
        self.idle_timeout = None if idle_timeout is None else check_timeout(
            idle_timeout, "idle_timeout")
        self.max_unsent = check_int("max_unsent", max_unsent, MIN_MAX_UNSENT)
        self.max_handshakes = check_int("max_handshakes", max_handshakes, 1)
        self.mailbox_size = mailbox_limit(-1, None, mailbox_size)
        self._store_arg, self._listen, self._advertise = store_and_addresses(
            store, listen, advertise)
        self._secret = secret
        self._ssl = (server_ssl, client_ssl)
        self._tls_files = (tls_cert, tls_key, tls_ca, tls_server_name)
        self.address: tuple[str, int] | None = None
        self._store: Store | None = None
        self._replication: Replication | None = None
        self._attached: Attachment | None = None
        # Invariant: creation differs between any two starts of this name
        # on one host (microseconds since the epoch at construction).
        self.creation = time.time_ns() // 1000
        self.self_pid = Pid(self.name, self.creation, 0)
        self._processes = ProcessTable(self.name, self.creation, self.mailbox_size)
        self._table = GroupTable(self.name)
        self._hub = SubscriptionHub(self._processes)
        self._cluster = ClusterView(self._table)
        self._joined = JoinTimes(self.name, self.creation, self._table)
        self._feed = MembershipFeed(self._hub, self._cluster, self._joined)
        self._deadlines = Deadlines()
        self._prober = StoreProber(self.name)
        # The loop keeps polling after call traffic (spin.py); the gateway pokes it too.
        self.busy_poll = BusyPoll(busy_poll_window(busy_poll_us))
        self._remote = Remote(self._processes, self._cluster, self._deadlines,
                             probe_store=self._prober.probe,
                             heartbeat_timeout=self.heartbeat_timeout, busy_poll=self.busy_poll)
        self._rng = random.Random(seed)
        self._scopes: dict[str, Groups] = {}
        self._names = Names(self._processes)
        self._signals = Signals(self._processes, self._remote, exiting=self._left,
                                dead=self._cluster.process_dead, resolve=self._names.resolve)
        self.counters = Counters()  # read by /metrics; bumped where outcomes are known
        self._messaging = Messaging(self._processes, self._remote, self._table, self._deadlines,
                                    self._names.resolve, self.counters)
        # node.call is Messaging.call itself, bound once: a call from user code
        # pays no delegating frame (~480 instructions; NodeAPI.call documents it).
        self.call = self._messaging.call  # type: ignore[method-assign]
        self._reloader = Reloader(self._processes, self._messaging)
        self._group_parts = GroupParts(
            name=self.name, creation=self.creation, table=self._table, hub=self._hub,
            processes=self._processes, signals=self._signals, cluster=self._cluster,
            feed=self._feed, messaging=self._messaging, rng=self._rng)
        self._admin = Admin(AdminParts(
            name=self.name, creation=self.creation, processes=self._processes,
            table=self._table, cluster=self._cluster, scope=self.scope, stop=self.stop,
            forget=self._left, reload=self.reload, joined=self._joined,
            counters=self.counters, peers=lambda: peer_states(self._cluster, self._remote)))
        self._remote.serve_admin(self._admin)
        self._running = False
        self._stopping = False
        self._stopped = asyncio.Event()
        self._readiness = Readiness(self._not_serving, self._feed.replicated)
        address = parse_http(os.environ.get("SHOAL_HTTP") if http is None else http)
        self._observer = None if address is None else Observer(self.name, address, MetricsParts(
            counters=self.counters, processes=self._processes, table=self._table,
            cluster=self._cluster, remote=self._remote, replication=lambda: self._replication),
            self._readiness)
        self._http_options = (gateway_remote, http_tls)
        # Set by start(); every process exists only after it.
        self._loop: asyncio.AbstractEventLoop

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the node: open the store, listen for peers, register, and
        load the cluster's membership. Idempotent while running; a stopped
        node cannot be started again (create a new Node).

        Raises:
            NameInUse: a live node of the cluster already has this name.
            StoreUnavailable: the store cannot be reached.
            ConfigError: the secret is missing or unsafe, or the peer TLS
                files are incomplete, unreadable or do not match.
            OSError: the listen address (or the HTTP address) cannot be bound.
        """
        if self._running:
            return
        if self._stopping:
            raise ShoalError(f"node {self.name!r} was stopped; a Node is used once: "
                             "create a new one (a new incarnation, with a new creation)")
        self._loop = asyncio.get_running_loop()
        self._deadlines.start(self._loop)
        self._remote.start(self._loop)
        self._attached = attached = await attach(Wiring(
            name=self.name, cluster=self.cluster, creation=self.creation,
            store=self._store_arg, listen=self._listen, advertise=self._advertise,
            secret=self._secret, ssl=self._ssl, tls_files=self._tls_files,
            heartbeat_timeout=self.heartbeat_timeout, session_ttl=self.session_ttl,
            idle_timeout=self.idle_timeout, max_unsent=self.max_unsent,
            max_handshakes=self.max_handshakes,
            table=self._table, processes=self._processes, remote=self._remote,
            cluster_view=self._cluster, feed=self._feed, global_names=self._names.global_names,
            scopes=("default", *self._scopes)))
        self._store, self._replication = attached.store, attached.replication
        for scope in self._scopes:  # opened while starting
            attached.replication.follow(scope)
        self.address = attached.address
        self._prober.store = attached.store
        self._messaging.start(self._loop)
        self._processes.open()
        self._running = True
        if self._observer is not None:
            try:
                from shoal.gateway.server import prepare

                self._observer.gateway, self._observer.ssl = prepare(
                    self, self._secret, self._store_arg, self._tls_files, *self._http_options)
                await self._observer.start()
            except BaseException:
                await self.stop()
                raise

    async def stop(self) -> None:
        """Stop the node in the order of G4 (see the module header).
        Idempotent; returns when the node is stopped (a second caller waits
        for the first one's stop to finish)."""
        if self._stopping:
            await self._stopped.wait()
            return
        if not self._running:
            return
        self._stopping = True
        self._prober.store = None
        self._processes.close()
        try:
            for pid in self._table.pids_on(self.name):
                self._feed.publish(self._table.remove_pid(pid, SHUTDOWN))
            # G4: the leave must be visible before anything else stops.
            if self._replication is not None and self._replication.fenced is None \
                    and not await self._feed.replicated(self.drain_timeout):
                log.warning("node %s: leaving groups was not confirmed by the store "
                                "within %gs", self.name, self.drain_timeout)
            await self._processes.drain(self.drain_timeout)
            self._signals.halt()
            await self._processes.stop_all()
        finally:
            try:
                if self._attached is not None:
                    await detach(self._attached, self._remote)
            finally:
                self._deadlines.close()
                self.busy_poll.stop()
                self._messaging.stop()
                self._running = False
                if self._observer is not None:
                    await self._observer.stop()
                self._stopped.set()

    @property
    def running(self) -> bool:
        """True between start and the end of stop."""
        return self._running

    @property
    def stopping(self) -> bool:
        """True once ``stop`` began (by this program or a ``shoal drain``)."""
        return self._stopping

    async def wait_stopped(self) -> None:
        """Wait until the node has stopped (``stop``, or a ``shoal drain`` of it)."""
        await self._stopped.wait()

    def set_ready(self) -> None:
        """Say the application finished setting this node up: from now on
        ``/readyz`` answers 200 while the node runs, is not draining or
        fenced, and the store confirmed its joins. ``shoal run`` calls it
        once the app's setup returned (or its top supervisor started)."""
        self._readiness.set_ready()

    @property
    def http_address(self) -> tuple[str, int] | None:
        """Where the HTTP endpoint listens (its real port), or None."""
        return self._observer.bound if self._observer is not None else None

    @property
    def gateway(self) -> GatewayContext | None:
        """The HTTP/JSON gateway this node serves (its ``token``, ``metrics``,
        open ``watches``), or None without an HTTP endpoint or before start."""
        return self._observer.gateway if self._observer is not None else None

    def _not_serving(self) -> str | None:
        if self.fenced is not None:
            return f"fenced: {self.fenced}"
        if self._stopping:
            return "draining"
        return None if self._running else "starting"

    @property
    def fenced(self) -> str | None:
        """Why this node fenced itself (a newer incarnation holds its name), or None."""
        return self._replication.fenced if self._replication is not None else None

    async def wait_fenced(self) -> str:
        """Wait until this node fences itself; return why (``shoal run`` then exits 3).

        Raises:
            ShoalError: the node was never started.
        """
        if self._replication is None:
            raise ShoalError(f"node {self.name!r} is not running")
        return await self._replication.wait_fenced()

    def _left(self, pid: Pid, reason: Reason) -> None:
        # G1: runs inside the synchronous half of the exit path.
        self._feed.publish(self._table.remove_pid(pid, reason))
        self._hub.drop_owner(pid)
        self._names.process_exiting(pid)

    # -- groups ---------------------------------------------------------------------

    @property
    def groups(self) -> Groups:
        """Process groups of the default scope."""
        return self.scope("default")

    def scope(self, name: str) -> Groups:
        """Process groups of the scope ``name`` (scopes are independent).

        The node follows a scope from the first time it opens it: it reads
        only ``"default"`` and the scopes it opened, so a scope opened now is
        empty here until its membership is loaded from the store, in the
        background (``await node.open_scope(name)`` waits for that).
        """
        # Unhashable names must raise BadArgument, not TypeError from the dict.
        groups = self._scopes.get(name) if type(name) is str else None
        if groups is None:
            groups = self._scopes[check_name("scope", name)] = Groups(self._group_parts, name)
            if self._replication is not None:
                self._replication.follow(name)
        return groups

    async def open_scope(self, name: str, timeout: float = 5.0) -> Groups:
        """Open the scope ``name`` (as :meth:`scope`) and wait until this node
        holds its whole membership as the store has it; changes after that
        arrive live. Immediate for a scope already loaded.

        Raises:
            ShoalError: the node is not running.
            CallTimeout: the store did not answer within ``timeout``
                (the scope keeps loading in the background).
            BadArgument: ``name`` is not a valid scope name or ``timeout``
                not a number > 0.
        """
        groups = self.scope(name)
        seconds = check_timeout(timeout)
        if self._replication is None:
            raise ShoalError(f"node {self.name!r} is not running")
        if self._replication.following.is_loaded(name):
            return groups
        try:
            await asyncio.wait_for(self._replication.loaded(name), seconds)
        except TimeoutError:
            raise CallTimeout("the membership store", seconds) from None
        return groups

    def followed_scopes(self) -> list[str]:
        """The scopes this node follows (``"default"`` and those it opened),
        sorted; groups of any other scope are not in its view."""
        if self._replication is None:
            return sorted({"default", *self._scopes})
        return self._replication.following.scopes()

    # -- introspection -----------------------------------------------------------------

    @property
    def cluster_view(self) -> ClusterView:
        """What this node knows of the other nodes (``runtime/cluster.py``): a
        hook for tests and debugging, to read (``peer(name)``, ``names()``,
        ``is_routable(name)``, ``reported_queue_lengths()``)."""
        return self._cluster

    def groups_of(self, pid: Pid) -> list[tuple[str, str]]:
        """The (scope, group) pairs ``pid`` is a member of, as this node knows
        them, each once; empty if none (the SIGUSR1 dump of ``shoal run``)."""
        return [(scope, str(group)) for scope, group in self._table.groups_of(pid)]

    def statistics(self) -> NodeStatistics:
        """Counts describing the node now."""
        manager = self._remote.manager
        return node_statistics(self.name, self._processes.all(), self._table,
                               self._cluster.calls_in_flight(),
                               manager.peers() if manager is not None else ())
