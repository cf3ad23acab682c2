"""A hand-driven peer's registration in the store, for tests.

A real node registers ``nodes/<name>`` with its creation under its store
session before it dials anyone, and a node admits a peer only as the
incarnation its view of the store shows (``docs/protocol.md`` 4.4). A test
that speaks the wire protocol by hand registers its peer the same way
first, with :func:`register_peer`, and waits until the node has seen it
with :func:`wait_seen`.
"""

from __future__ import annotations

import msgpack

from shoal.runtime.node import Node
from shoal.store.base import Session, Store
from shoal.testing.cluster import wait_until

__all__ = ["register_peer", "wait_seen"]


async def register_peer(store: Store, name: str, creation: int, *,
                        address: tuple[str, int] = ("127.0.0.1", 9),
                        ttl: float = 30.0) -> Session:
    """Open the store session of a peer named ``name``, incarnation
    ``creation``, as a node does when it starts.

    Args:
        store: the cluster's store (a node's ``store`` will do).
        name, creation: the identity the peer will claim in its HELLO.
        address: what the record says the peer listens on (a hand-driven
            peer listens nowhere; the default is the discard port).
        ttl: the session's TTL.

    Returns:
        The session; close it to end the registration.

    Raises:
        NameInUse: a live session holds ``name``.
    """
    info: bytes = msgpack.packb({"name": name, "creation": creation,
                                 "host": address[0], "port": address[1], "ttl": ttl})
    return await store.open_session(name, info, ttl)


async def wait_seen(node: Node, name: str, creation: int) -> None:
    """Wait (bounded) until ``node``'s view of the store shows ``creation``
    as ``name``'s incarnation.

    Raises:
        TimeoutError: it did not within ``wait_until``'s timeout.
    """
    def seen() -> bool:
        peer = node.cluster_view.peer(name)
        return peer is not None and peer.creation == creation

    await wait_until(seen, what=f"{node.name} to see {name} (creation {creation}) in the store")
