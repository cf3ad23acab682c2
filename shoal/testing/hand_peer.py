"""A hand-driven peer for tests: a node's side of one connection, typed by hand.

It completes the handshake as the initiator, then sends only what the test
gives :meth:`HandPeer.send`, and records every message it reads. Tests use
it to be the peer a real node would never be: one that floods, forges,
stays silent, or stops reading (pause its transport's reading). A node admits it only as an
incarnation its store shows, so register it first
(:func:`shoal.testing.registration.register_peer`).
"""

from __future__ import annotations

import asyncio

from shoal.wire import Connection, Established, HandshakeConfig, Message, Ping, Pong

__all__ = ["HandPeer"]


class HandPeer(asyncio.Protocol):
    """One hand-driven connection (see the module header).

    Args:
        config: the identity and secret it claims in the handshake.
    """

    def __init__(self, config: HandshakeConfig) -> None:
        self.wire = Connection(config, initiator=True)
        self.established = asyncio.Event()
        self.lost = asyncio.Event()
        # Invariant: every message read but heartbeats, in order (a test's
        # peer is short-lived). It answers no PING: an idle node's peer
        # that stays silent is suspected, as a hung one would be.
        self.received: list[Message] = []
        self.arrived = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.wire.data_to_send())

    def data_received(self, data: bytes) -> None:
        events = self.wire.receive_data(data)
        if out := self.wire.data_to_send():
            self.send_bytes(out)
        for event in events:
            if isinstance(event, Established):
                self.established.set()
            elif isinstance(event, Message) and not isinstance(event, (Ping, Pong)):
                self.received.append(event)
                self.arrived.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()

    def send(self, msg: Message) -> None:
        """Encode ``msg`` and write it."""
        self.send_bytes(self.wire.send(msg))

    def send_bytes(self, data: bytes) -> None:
        """Write raw bytes (a frame built by hand, or garbage)."""
        assert self.transport is not None, "not connected"
        self.transport.write(data)
