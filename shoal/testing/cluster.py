"""LocalCluster: real node processes on loopback, for end-to-end tests.

Starts N nodes as OS processes (``python -m shoal.cli run
shoal.testing.agent:setup``) against a temporary store, plus an in-process
client node in the same cluster from which the test drives them. Each node
hosts a ``Control`` process (``shoal.testing.agent``) that carries out
commands sent as ordinary shoal calls.

Rules:

- Rule 1: only processes this helper started are ever signalled, by the PID
  it got when starting them; ``stop`` always ends them (SIGTERM, then
  SIGKILL after a bounded wait), even after a failed test. On Linux each
  node also gets SIGKILL from the kernel when the thread that started it
  dies (a test runner killed mid-test, even while a test holds the node
  stopped): nodes run under ``shoal.testing.launch``, so none is left behind.
- Rule 2: every wait is bounded in time and raises ``TimeoutError`` naming
  what it waited for; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import shoal
import shoal.store
from shoal.testing.agent import CONTROL_SCOPE
from shoal.testing.partition import Partitions
from shoal.testing.ports import free_port

__all__ = ["LocalCluster", "NodeProcess", "free_port", "wait_until"]

SECRET = "local-cluster-secret-0123456789abcdef"


async def wait_until(predicate: Callable[[], bool], *, timeout: float = 10.0,
                     what: str = "condition", interval: float = 0.002) -> None:
    """Wait until ``predicate()`` is true, checking every ``interval``.

    A bounded sync helper for conditions no event announces (another OS
    process's state); it never waits longer than ``timeout``.

    Raises:
        TimeoutError: still false after ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


_HTTP_BOUND = re.compile(r"HTTP endpoint on https?://([^\s:/]+):(\d+)")


def _http_bound(node: NodeProcess) -> tuple[str, int]:
    """Where a started node's HTTP endpoint listens, from its log's
    ``http_listening`` line (written before its "ready" line). A port picked
    here and handed to the node could be taken by another test in between."""
    found = _HTTP_BOUND.findall(node.log_text())
    if not found:
        raise RuntimeError(f"node {node.name} never said where its HTTP endpoint "
                           f"listens:\n{node.log_text()}")
    host, port = found[-1]
    return host, int(port)


class NodeProcess:
    """One node's OS process, as the cluster started it."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log
        # The incarnation it announced ("... (creation N)"), once started.
        self.creation: int | None = None
        # Where its HTTP endpoint (and gateway) listens, for a cluster with http=True.
        self.http: tuple[str, int] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def signal(self, sig: int) -> None:
        if self.running:
            # It may have died and been reaped before asyncio noticed.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class LocalCluster:
    """N node processes on loopback plus an in-process client node.

    Args:
        names: node names, or a count (``n1``, ``n2``, ...).
        store: store URL; default: ``$SHOAL_TEST_STORE`` if set (the test
            suite runs some end-to-end tests on etcd this way), else SQLite
            in a temporary directory.
        heartbeat_timeout: passed to every node, the client included.
        session_ttl: passed to every node process (default: the node's own).
        secret: the cluster secret.
        env: extra environment for the node processes.
        mesh: wait at start until every node sees every other one (asking
            each node, which connects the client to all of them); False
            for a test that needs the client never to have dialled a node.
        app: the ``module:function`` each node runs (default the test agent;
            another app should call ``shoal.testing.agent.setup`` first, so
            the cluster can drive the node).
        partitionable: put a proxy in front of every node and the client
            (``shoal.testing.partition``), so that ``cut`` and ``heal`` can
            partition chosen pairs (plain TCP only, not peer TLS).
        client_http: the client node's ``http`` (``"HOST:PORT"``, port 0
            for any free one): it then serves ``/metrics`` of the calls the
            test makes; off by default.
        http: give every node an HTTP endpoint (and so the gateway) on a
            free 127.0.0.1 port, recorded in its ``NodeProcess.http``.
    """

    def __init__(self, names: int | list[str] = 3, *, store: str | None = None,
                 heartbeat_timeout: float = 2.0, session_ttl: float | None = None,
                 secret: str = SECRET,
                 env: dict[str, str] | None = None, client_name: str = "test-client",
                 app: str = "shoal.testing.agent:setup", mesh: bool = True,
                 partitionable: bool = False, client_http: str = "",
                 http: bool = False) -> None:
        self.http = http
        self.names = [f"n{i + 1}" for i in range(names)] if isinstance(names, int) else names
        self.mesh = mesh
        self._tmp = tempfile.mkdtemp(prefix="shoal-cluster-")
        self.store = (store or os.environ.get("SHOAL_TEST_STORE")
                      or f"sqlite://{self._tmp}/cluster.db")
        self.heartbeat_timeout = heartbeat_timeout
        self.session_ttl = session_ttl
        self.secret = secret
        self.env = env or {}
        self.client_name = client_name
        self.client_http = client_http
        self.app = app
        self.nodes: dict[str, NodeProcess] = {}
        self._stopped: list[NodeProcess] = []
        self._client: shoal.Node | None = None
        self.partitions = Partitions() if partitionable else None
        # Nodes run the test agent (Control, Echo): control() and spawn() work.
        self._agent = app == "shoal.testing.agent:setup"

    @property
    def client(self) -> shoal.Node:
        """The in-process node the test drives the cluster from."""
        if self._client is None:
            raise RuntimeError("the cluster is not started")
        return self._client

    async def __aenter__(self) -> LocalCluster:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is not None:
            self.show_logs()
        await self.stop()

    def show_logs(self, lines: int = 60) -> None:
        """Print the end of every node's log to stderr (done when the block
        inside ``async with`` raised, so a failing test shows them)."""
        for node in [*self._stopped, *self.nodes.values()]:
            tail = node.log_text().splitlines()[-lines:]
            print(f"----- log of node {node.name} (OS pid {node.pid}) -----", file=sys.stderr)
            print("\n".join(tail), file=sys.stderr)

    async def start(self) -> None:
        """Start every node and the client; return once every node (the
        client included) sees every other one."""
        await self._create_store()
        await asyncio.gather(*(self.start_node(name, wait=False) for name in self.names))
        advertise = None
        if self.partitions is not None:
            advertise = f"127.0.0.1:{await self.partitions.proxy(self.client_name)}"
        self._client = shoal.Node(self.client_name, store=self.store, secret=self.secret,
                                  heartbeat_timeout=self.heartbeat_timeout,
                                  advertise=advertise, http=self.client_http)
        await self._client.start()
        if self.partitions is not None and self._client.address is not None:
            self.partitions.target(self.client_name, *self._client.address)
        for name in self.names:
            await self.wait_node(name)
        if self.mesh and self._agent and len(self.names) <= 8:  # quadratic: big ones skip it
            await self.wait_mesh()

    async def wait_mesh(self, timeout: float = 15.0) -> None:
        """Wait until every node sees every other node's Control process, so
        a test can route from any node to any other. It asks each node, so
        the client connects to every node."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for seer in self.names:
            for other in self.names:
                while other != seer and not await self.control(
                        seer, "members", CONTROL_SCOPE, other):
                    if loop.time() > deadline:
                        raise TimeoutError(f"node {seer} never saw node {other}")
                    await asyncio.sleep(0.005)  # a bounded poll of another process's view

    async def _create_store(self) -> None:
        # An embedded store's database is created once, before the nodes start:
        # SQLite can answer "database is locked" without waiting when several
        # processes switch a brand-new file to WAL mode at the same moment.
        if self.store.startswith("sqlite://"):
            store = shoal.store.open_store(self.store)
            try:
                await store.snapshot("")
            finally:
                await store.close()

    async def start_node(self, name: str, *, wait: bool = True) -> NodeProcess:
        """Start (or restart) the node ``name``; wait until it serves."""
        log = Path(self._tmp) / f"{name}.{len(self._stopped)}.log"
        env = dict(os.environ, SHOAL_SECRET=self.secret, **self.env)
        env.pop("SHOAL_SECRET_FILE", None)
        advertise: tuple[str, ...] = ()
        if self.partitions is not None:
            advertise = ("--advertise", f"127.0.0.1:{await self.partitions.proxy(name)}")
        http: tuple[str, ...] = ()
        if self.http:  # port 0: the node binds a free one and logs which
            http = ("--http", "127.0.0.1:0")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shoal.testing.launch", str(os.getpid()), "run", self.app,
            "--node", name, "--store", self.store, *advertise, *http,
            "--heartbeat-timeout", str(self.heartbeat_timeout),
            *(() if self.session_ttl is None else ("--session-ttl", str(self.session_ttl))),
            stdout=asyncio.subprocess.PIPE, stderr=log.open("wb"), env=env)
        node = NodeProcess(name, process, log)
        old = self.nodes.get(name)
        if old is not None:
            self._stopped.append(old)
        self.nodes[name] = node
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), 30)
        except TimeoutError:
            line = b""
        if b"ready" not in line:
            raise RuntimeError(f"node {name} did not start:\n{node.log_text()}")
        # "shoal node NAME ready on HOST:PORT (creation N)"
        words = line.decode().split()
        node.creation = int(words[-1].rstrip(")"))
        if http:
            node.http = _http_bound(node)
        if self.partitions is not None:  # where it really listens, behind its proxy
            host, _, port = words[5].rpartition(":")
            self.partitions.target(name, host, int(port))
        if wait and self._client is not None:
            await self.wait_node(name)
        return node

    async def wait_node(self, name: str, timeout: float = 15.0) -> None:
        """Wait until the client sees the node's current incarnation, routable
        (and, with the test agent, its Control process)."""
        creation = self.nodes[name].creation
        view = self.client.cluster_view

        def seen() -> bool:
            peer = view.peer(name)
            if peer is None or peer.creation != creation or not view.is_routable(name):
                return False
            return not self._agent or bool(self.client.scope(CONTROL_SCOPE).get_members(name))
        await wait_until(seen, timeout=timeout, what=f"node {name} to be seen")

    def control_pid(self, name: str) -> shoal.Pid:
        members = self.client.scope(CONTROL_SCOPE).get_members(name)
        if not members:
            raise shoal.NoMembers(CONTROL_SCOPE, name)
        return max(members, key=lambda p: p.creation)

    async def control(self, name: str, *request: Any, timeout: float = 10.0) -> Any:
        """Send a command to the node's Control process (see agent.py), once
        the client sees it (an app that calls ``agent.setup`` itself is
        waited for here, not at start)."""
        await self.wait_control(name, timeout)
        return await self.client.call(self.control_pid(name), list(request), timeout)

    async def wait_control(self, name: str, timeout: float = 10.0) -> shoal.Pid:
        """Wait until the client sees the Control process of node ``name``'s
        current incarnation; return its pid."""
        creation = self.nodes[name].creation
        scope = self.client.scope(CONTROL_SCOPE)
        await wait_until(lambda: any(p.creation == creation for p in scope.get_members(name)),
                         timeout=timeout, what=f"node {name}'s control process")
        return self.control_pid(name)

    async def spawn(self, name: str, kind: str = "echo", *, group: str | None = None,
                    count: int = 1, scope: str = "default") -> list[shoal.Pid]:
        """Spawn ``count`` workers of ``kind`` on node ``name``, joined to ``group``."""
        pids: list[shoal.Pid] = await self.control(name, "spawn", kind, group, count, scope)
        return pids

    def cut(self, a: str, b: str, *, one_way: bool = False) -> None:
        """Partition nodes ``a`` and ``b`` (either may be the client's name):
        bytes between them stall, both ways or only from ``a`` to ``b``.

        Raises:
            RuntimeError: the cluster was not made ``partitionable``.
        """
        self._partitions().cut(a, b, one_way=one_way)

    def heal(self, a: str | None = None, b: str | None = None) -> None:
        """Undo cuts: between ``a`` and ``b``, involving ``a``, or all."""
        self._partitions().heal(a, b)

    def _partitions(self) -> Partitions:
        if self.partitions is None:
            raise RuntimeError("create the LocalCluster with partitionable=True to cut links")
        return self.partitions

    async def restart(self, name: str) -> NodeProcess:
        """Start node ``name`` again, under the same name, once its process
        ended (kill it first); waits until the client sees the new incarnation."""
        old = self.nodes[name]
        if old.running:
            await asyncio.wait_for(old.process.wait(), 30)
        return await self.start_node(name)

    async def replace_hung(self, name: str, timeout: float = 30.0) -> NodeProcess:
        """Hang node ``name`` (SIGSTOP) and start a replacement under its name.

        Only a store whose sessions expire without their owner can do this:
        on etcd the hung node's lease runs out (after its ``session_ttl``;
        this waits until the client sees the name free, at most
        ``timeout`` seconds) and the new node takes the name; the hung one
        fences itself when it wakes (on SIGCONT, or at ``stop``).

        Raises:
            RuntimeError: the store is the embedded SQLite one, where a hung
                node keeps its name by design (its lock is held); nothing
                was stopped.
            TimeoutError: the name was not free after ``timeout`` seconds.
        """
        if self.store.startswith("sqlite://"):
            raise RuntimeError("replace_hung needs a store whose sessions expire (etcd): on "
                               "the embedded store a hung node keeps its name by design")
        old = self.nodes[name]
        self.sigstop(name)
        view = self.client.cluster_view

        def released() -> bool:
            peer = view.peer(name)
            return peer is None or peer.creation != old.creation
        await wait_until(released, timeout=timeout, what=f"node {name}'s session to expire")
        return await self.start_node(name)

    @contextlib.asynccontextmanager
    async def store_outage(self) -> AsyncIterator[None]:
        """The embedded store refuses writes for the block's duration: an
        exclusive transaction is held on the SQLite database (readers still
        read, as with a store that lost its quorum for writes). For etcd,
        stop and start the etcd server your test runs (``etcd_server``).

        Raises:
            RuntimeError: the cluster's store is not SQLite.
        """
        if not self.store.startswith("sqlite://"):
            raise RuntimeError("store_outage works on the embedded SQLite store; stop and "
                               "start your etcd server for an etcd outage")
        path = self.store[len("sqlite://"):]
        blocker = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        try:
            blocker.execute("BEGIN EXCLUSIVE")
            yield
        finally:
            with contextlib.suppress(sqlite3.Error):
                blocker.execute("ROLLBACK")
            blocker.close()

    def kill9(self, name: str) -> None:
        """SIGKILL the node's process."""
        self.nodes[name].signal(signal.SIGKILL)

    def sigstop(self, name: str) -> None:
        self.nodes[name].signal(signal.SIGSTOP)

    def sigcont(self, name: str) -> None:
        self.nodes[name].signal(signal.SIGCONT)

    async def wait_exit(self, name: str, timeout: float = 15.0) -> int:
        """Wait until the node's process ended; return its exit code."""
        return await asyncio.wait_for(self.nodes[name].process.wait(), timeout)

    async def stop(self) -> None:
        """Stop the client and every node process this cluster started."""
        if self._client is not None:
            with contextlib.suppress(TimeoutError, shoal.ShoalError):
                await asyncio.wait_for(self._client.stop(), 20)
            self._client = None
        nodes = [*self.nodes.values(), *self._stopped]
        for node in nodes:
            node.signal(signal.SIGCONT)
            node.signal(signal.SIGTERM)
        for node in nodes:
            try:
                await asyncio.wait_for(node.process.wait(), 15)
            except TimeoutError:
                node.signal(signal.SIGKILL)
                await node.process.wait()
        if self.partitions is not None:
            await self.partitions.close()
        shutil.rmtree(self._tmp, ignore_errors=True)
