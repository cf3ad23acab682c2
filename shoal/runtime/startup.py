"""What ``Node.start`` opens and ``Node.stop`` closes below the runtime.

A node's own parts (process table, groups, signals, messaging) exist from
construction; ``start`` attaches them to the outside world: the store, the
peer listener and the replication that registers the node and follows the
cluster. :func:`attach` does that in the one safe order and undoes what it
opened if a later step fails; :func:`detach` closes it again after the node
stopped its processes (G4). :class:`StoreProber` runs the store probes the
cluster layer asks for when a peer connection breaks.

Owns: nothing past the calls, except ``StoreProber``'s background tasks
(at most one per broken connection, each ending with its probe).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shoal.errors import ShoalError
from shoal.runtime.config import load_secret, peer_tls
from shoal.runtime.node_info import node_info
from shoal.runtime.replication import Replication
from shoal.store import Store, open_store
from shoal.transport import ConnectionManager, TransportConfig

if TYPE_CHECKING:
    import os

    from shoal.membership.table import GroupTable
    from shoal.runtime.cluster import ClusterView
    from shoal.runtime.feed import MembershipFeed
    from shoal.runtime.global_names import GlobalNames
    from shoal.runtime.processes import ProcessTable
    from shoal.runtime.remote import Remote

__all__ = ["Attachment", "StoreProber", "Wiring", "attach", "detach"]

log = logging.getLogger("shoal")

TLSFiles = tuple["str | os.PathLike[str] | None", "str | os.PathLike[str] | None",
                 "str | os.PathLike[str] | None", "str | None"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Wiring:
    """A node's settings and parts that ``attach`` connects (see ``Node``)."""

    name: str
    cluster: str
    creation: int
    store: str | Store
    listen: tuple[str, int] | None
    advertise: tuple[str, int] | None
    secret: bytes | str | None
    ssl: tuple[ssl.SSLContext | None, ssl.SSLContext | None]
    tls_files: TLSFiles
    heartbeat_timeout: float
    session_ttl: float
    idle_timeout: float | None
    max_unsent: int
    max_handshakes: int
    table: GroupTable
    processes: ProcessTable
    remote: Remote
    cluster_view: ClusterView
    feed: MembershipFeed
    global_names: GlobalNames
    scopes: tuple[str, ...] = ("default",)


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """What ``attach`` opened."""

    store: Store
    owns_store: bool
    manager: ConnectionManager | None
    replication: Replication
    address: tuple[str, int] | None
    global_names: GlobalNames


async def attach(w: Wiring) -> Attachment:
    """Open the store, listen for peers, register and load the membership.

    Raises what ``Node.start`` documents; nothing stays open when it raises.
    """
    owned = isinstance(w.store, str)
    # etcd keeps many clusters apart by key prefix; a SQLite file is one cluster.
    store = open_store(w.store, cluster=w.cluster) if isinstance(w.store, str) else w.store
    manager: ConnectionManager | None = None
    address: tuple[str, int] | None = None
    try:
        host, port = "", 0
        if w.listen is not None:
            url = w.store if isinstance(w.store, str) else "object://"
            cert, key, ca, name = w.tls_files
            server_ssl, client_ssl, server_name = peer_tls(*w.ssl, cert, key, ca, name)
            config = TransportConfig(
                cluster=w.cluster, node=w.name, creation=w.creation,
                secret=load_secret(w.secret, url), host=w.listen[0], port=w.listen[1],
                heartbeat_timeout=w.heartbeat_timeout,
                heartbeat_interval=w.heartbeat_timeout / 4,
                max_unsent=w.max_unsent, max_handshakes=w.max_handshakes,
                server_ssl=server_ssl, client_ssl=client_ssl, tls_server_hostname=server_name)
            manager = ConnectionManager(config, w.remote, admission=w.cluster_view)
            host, port = await manager.start()
            address = (host, port)
            if w.advertise is not None:
                host, port = w.advertise[0], w.advertise[1] or port
        w.remote.manager = manager
        if manager is not None:
            w.remote.idle.start(w.idle_timeout)
        replication = Replication(
            store, table=w.table, processes=w.processes, remote=w.remote,
            cluster=w.cluster_view, feed=w.feed, ttl=w.session_ttl,
            info=node_info(w.name, w.creation, w.session_ttl, host, port,
                           as_given=w.advertise is not None), scopes=w.scopes)
        await replication.start()
        try:
            await w.global_names.start(store, replication)  # follows names/ from now on
        except BaseException:
            await replication.stop()
            raise
        w.feed.start(replication.writer)
    except BaseException:
        if manager is not None:
            await manager.close()
        if owned:
            await store.close()
        raise
    return Attachment(store=store, owns_store=owned, manager=manager,
                      replication=replication, address=address, global_names=w.global_names)


async def detach(a: Attachment, remote: Remote) -> None:
    """Stop following names, end the session, close peer connections and the
    store if owned."""
    try:
        await a.global_names.stop()
        await a.replication.stop()
    finally:
        remote.close()
        try:
            if a.manager is not None:
                await a.manager.close("shutdown")
        finally:
            if a.owns_store:
                await a.store.close()


class StoreProber:
    """Probes the store in the background when asked (a peer connection
    broke: its owner may be dead, and the store can end its session now)."""

    def __init__(self, name: str) -> None:
        self._name = name
        # Set by Node.start, cleared by Node.stop: no probe outside them.
        self.store: Store | None = None
        # Invariant: the probes running now; each removes itself when done.
        self._tasks: set[asyncio.Task[None]] = set()

    def probe(self) -> None:
        store = self.store
        if store is None:
            return

        async def run() -> None:
            try:
                await store.probe()
            except ShoalError as exc:
                log.info("node %s: store probe failed: %s", self._name, exc)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
