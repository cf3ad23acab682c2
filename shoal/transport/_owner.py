"""What a connection needs from the manager that owns it.

Owns :class:`PeerOwner`: the calls a :class:`~shoal.transport.PeerConnection`
makes up to its :class:`~shoal.transport.ConnectionManager` (a socket was
made, the handshake succeeded or failed, the peer went silent or came
alive, the socket was lost) and the handler it hands messages to.

Rules:

1. A connection is handed its owner and never imports the manager, so the
   transport's modules import one way: ``_config`` and ``_owner`` below
   ``_peer``, below ``_dialling`` and ``_handler``, below ``_manager``.
2. The owner's answers decide, the connection obeys: a refusal returned by
   ``connection_made`` or ``connection_established`` closes the connection with it.

Generic in the connection type, so that this module, below ``_peer``, need
not name :class:`PeerConnection`; ``_peer`` uses ``PeerOwner[PeerConnection]``.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from shoal.transport._config import TransportConfig
from shoal.wire import Message

__all__ = ["MessageSink", "PeerOwner"]

_Conn = TypeVar("_Conn", contravariant=True)


class MessageSink(Protocol[_Conn]):
    """Where a connection delivers the messages it reads (the runtime's handler).

    A sink may also have ``message_handlers``: a mapping from message types
    to functions of ``(peer, msg)``. A message of one of those types goes
    to its function as soon as it is decoded, instead of ``on_message``
    (the hot path: no list of events, no dispatch frame); every other one
    to ``on_message``. The mapping (copied; PING and PONG are the
    transport's and never passed on) and ``on_message`` are read once per
    connection.
    """

    def on_message(self, peer: _Conn, msg: Message) -> None:
        """A message arrived on ``peer`` (never PING or PONG)."""


class PeerOwner(Protocol[_Conn]):
    """The manager, as the connections it built see it (see the module header)."""

    @property
    def config(self) -> TransportConfig:
        """The transport's configuration."""

    @property
    def handler(self) -> MessageSink[_Conn]:
        """Where the connection delivers messages (called directly: the hot path)."""

    def connection_made(self, conn: _Conn) -> str | None:
        """A socket is up; returns a refusal to close it with, or None."""

    def connection_established(self, conn: _Conn) -> str | None:
        """The handshake succeeded; returns a refusal to close it with, or None."""

    def admission_pending(self, conn: _Conn, node: str, creation: int) -> None:
        """The peer proved the secret and its admission waits (``decide_admission``)."""

    def handshake_failed(self, conn: _Conn, error: object) -> None:
        """The handshake failed or timed out."""

    def peer_silent(self, conn: _Conn) -> None:
        """Nothing was read for ``heartbeat_timeout``."""

    def peer_alive(self, conn: _Conn) -> None:
        """Bytes were read again after silence."""

    def connection_lost(self, conn: _Conn) -> None:
        """The socket is gone; ``conn.close_reason`` says why."""
