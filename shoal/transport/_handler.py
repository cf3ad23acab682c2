"""The callback interface through which the runtime hears from the transport.

Owns :class:`PeerHandler`, which the runtime implements and hands to the
:class:`~shoal.transport.ConnectionManager`.

Rules:

1. Callbacks are plain synchronous functions called on the event loop, from
   inside the protocol's ``data_received`` / ``connection_lost``. They must
   not block; they may call ``PeerConnection.send``. An exception a callback
   raises is logged (``shoal.transport``) and does not close the connection:
   one bad message must not turn into a node marked down.
2. Order per peer: ``on_peer_up`` comes before any ``on_message`` of that
   connection, ``on_peer_down`` after the last one. ``on_peer_silent`` and
   ``on_peer_alive`` alternate, and only between up and down.
3. A peer is *up* per incarnation: ``(peer_name, creation)``. A new creation
   replaces the old connection: the old incarnation is reported down first.
4. :class:`PeerAdmission`, optional, is the authority on incarnations (the
   runtime answers from its view of the store): a proven peer is admitted
   only if it confirms the ``(peer_name, creation)`` claimed. Without one,
   every proven peer is (the transport alone, in tests).
"""

from __future__ import annotations

from typing import Protocol

from shoal.transport._peer import PeerConnection
from shoal.wire import Message

__all__ = ["PeerAdmission", "PeerHandler"]


class PeerHandler(Protocol):
    """What the runtime implements to hear from the transport.

    All methods are called on the event loop and must not block (rule 1 of
    this module). Subclass it to inherit no-op defaults, or implement the
    methods on any object. An optional ``message_handlers`` attribute, a
    mapping from message types to functions of ``(peer, msg)``, takes the
    messages of those types, as soon as each is decoded, instead of
    ``on_message`` (both are read once per connection, the mapping copied;
    PING and PONG never reach either; the runtime's hot path).
    """

    def on_message(self, peer: PeerConnection, msg: Message) -> None:
        """A message arrived from an authenticated peer (never PING/PONG).

        Args:
            peer: the connection it came on; answer with ``peer.send(...)``.
            msg: the decoded, validated message.
        """

    def on_peer_up(self, peer_name: str, creation: int, connection: PeerConnection) -> None:
        """A peer incarnation is connected and authenticated.

        Args:
            peer_name: the peer's node name.
            creation: its incarnation.
            connection: the one connection to it, until ``on_peer_down``.
        """

    def on_peer_down(self, peer_name: str, creation: int, reason: str) -> None:
        """The connection to a peer incarnation is gone.

        Args:
            peer_name: the peer's node name.
            creation: the incarnation that went down.
            reason: why, e.g. the peer's BYE reason, ``"connection lost"``,
                ``"replaced by creation 8"``.
        """

    def on_peer_silent(self, peer_name: str, creation: int) -> None:
        """Nothing arrived from the peer for ``heartbeat_timeout`` seconds.

        The connection stays open: silence is suspicion, not death.

        Args:
            peer_name: the peer's node name.
            creation: its incarnation.
        """

    def on_peer_alive(self, peer_name: str, creation: int) -> None:
        """Bytes arrived again from a peer reported silent.

        Args:
            peer_name: the peer's node name.
            creation: its incarnation.
        """


class PeerAdmission(Protocol):
    """Which incarnations exist, asked by the transport before it admits a
    peer that proved the secret (rule 4; the manager's rule 2).

    ``admit_now`` must not block; ``wait_admitted`` is awaited only when
    ``admit_now`` could not tell yet, and returns within its timeout.
    """

    def admit_now(self, peer_name: str, creation: int) -> bool | None:
        """Whether ``creation`` is the current incarnation of ``peer_name``.

        Returns:
            True: it is. False: another, newer one is. None: not known yet
            (the name is not listed, or only an older creation is).
        """

    async def wait_admitted(self, peer_name: str, creation: int, timeout: float) -> bool:
        """Wait, at most ``timeout`` seconds, until ``admit_now`` gives True
        or False for this claim.

        Returns:
            True only when ``creation`` became the current incarnation.
        """
