"""Transport configuration, connection statistics, and backoff.

Owns: every tunable of the transport (one frozen value, checked when
built), the frozen :class:`PeerStatistics` snapshot of a connection, and
the reconnect backoff schedule (shoal's one schedule, ``shoal._backoff``,
with this configuration's parameters). The callback interface to the
runtime, :class:`~shoal.transport.PeerHandler`, is ``_handler.py``.

Rule: TLS is a pass-through seam: ``server_ssl`` goes to
``loop.create_server`` and ``client_ssl`` to ``loop.create_connection``
(``server_hostname`` is ``tls_server_hostname`` or the dialled host). The
shoal handshake runs inside TLS unchanged; TLS adds confidentiality and
integrity, which the handshake alone does not give.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from shoal._backoff import backoff_delays as jittered_backoff
from shoal.errors import BadArgument
from shoal.wire import DEFAULT_MAX_FRAME, HANDSHAKE_MAX_FRAME, HandshakeConfig

__all__ = [
    "DEFAULT_MAX_HANDSHAKES",
    "DEFAULT_MAX_UNSENT",
    "MIN_MAX_UNSENT",
    "PeerStatistics",
    "TransportConfig",
    "backoff_delays",
]

DEFAULT_MAX_UNSENT = 64 * 1024 * 1024
"""Bytes this node holds at most for one peer that does not read (see
``TransportConfig.max_unsent``)."""
MIN_MAX_UNSENT = 64 * 1024
"""The smallest ``max_unsent``: asyncio's default write-buffer high-water mark."""
DEFAULT_MAX_HANDSHAKES = 64
"""Accepted connections that may be in the handshake at once (see
``TransportConfig.max_handshakes``)."""


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise BadArgument(name, value, "a number > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportConfig:
    """Everything the transport needs to know, fixed for a node's life.

    Attributes:
        cluster: the cluster name (peers of other clusters are refused).
        node: this node's name.
        creation: this node's incarnation number.
        secret: the cluster secret; never sent, only proven.
        host, port: where to listen; port 0 picks a free one (see
            ``ConnectionManager.address``).
        server_ssl: TLS context for accepted connections, or None.
        client_ssl: TLS context for outbound connections, or None.
        tls_server_hostname: name to verify the peer's certificate against
            (default: the host dialled).
        handshake_timeout: seconds a connection may take to authenticate.
        heartbeat_interval: an idle connection sends PING this often.
        heartbeat_timeout: a peer that sent nothing for this long is
            reported silent (DESIGN.md G2: at most 2 s by default).
        max_frame: largest frame body accepted and sent.
        connect_timeout: default total budget of one ``connect`` call,
            retries included.
        max_connect_attempts: most dials one ``connect`` call makes.
        backoff_initial, backoff_max, backoff_multiplier: the retry delay
            starts at ``initial``, is multiplied each failure, capped at ``max``.
        backoff_jitter: each delay is scaled by a random factor in
            ``[1 - jitter, 1]``, so peers that failed together do not retry
            together.
        write_buffer_high: bytes buffered in the socket transport before
            writing pauses (``PeerConnection.write_paused``); None keeps
            asyncio's default (64 KiB). Below ``max_unsent``.
        max_unsent: the bound on bytes this node holds for one peer, sent
            but not yet taken by the peer's socket (default 64 MiB, at least
            64 KiB). At or past it the connection is *congested*
            (``PeerConnection.congested``: the runtime then refuses new
            calls, casts and sends to that node with ``Overloaded``); a peer
            congested for ``heartbeat_timeout`` is disconnected, and a send
            that finds twice this bound unsent disconnects at once (rule 5
            of ``_peer.py``).
        max_handshakes: accepted connections that may be in the handshake
            (not yet authenticated) at once, default 64. One more is closed
            as soon as it is accepted, and the refusals are logged at most
            every 10 s: half-open sockets from strangers cannot exhaust the
            node's file descriptors. Each slot is held at most
            ``handshake_timeout``. With ``server_ssl``, a connection counts
            from the end of its TLS handshake (asyncio bounds that phase by
            ``handshake_timeout`` too).
        admission_timeout: seconds an accepted peer that proved the secret
            may wait for this node's view of the store to show the
            incarnation it claims (``PeerAdmission``; the manager's rule 2);
            default 2, and never more than half of ``handshake_timeout``.
    """

    cluster: str
    node: str
    creation: int
    secret: bytes = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 0
    server_ssl: ssl.SSLContext | None = None
    client_ssl: ssl.SSLContext | None = None
    tls_server_hostname: str | None = None
    handshake_timeout: float = 5.0
    heartbeat_interval: float = 0.5
    heartbeat_timeout: float = 2.0
    max_frame: int = DEFAULT_MAX_FRAME
    connect_timeout: float = 10.0
    max_connect_attempts: int = 20
    backoff_initial: float = 0.05
    backoff_max: float = 2.0
    backoff_multiplier: float = 2.0
    backoff_jitter: float = 0.5
    write_buffer_high: int | None = None
    max_unsent: int = DEFAULT_MAX_UNSENT
    max_handshakes: int = DEFAULT_MAX_HANDSHAKES
    admission_timeout: float = 2.0

    def __post_init__(self) -> None:
        self.handshake_config()  # validates cluster, node, creation, secret
        if type(self.port) is not int or not 0 <= self.port < 65536:
            raise BadArgument("port", self.port, "an int in [0, 65536)")
        for name in (
            "handshake_timeout",
            "heartbeat_interval",
            "heartbeat_timeout",
            "connect_timeout",
            "backoff_initial",
            "backoff_max",
            "admission_timeout",
        ):
            _positive(name, getattr(self, name))
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise BadArgument(
                "heartbeat_timeout", self.heartbeat_timeout, "greater than heartbeat_interval"
            )
        if not self.backoff_multiplier >= 1:
            raise BadArgument("backoff_multiplier", self.backoff_multiplier, "a number >= 1")
        if not 0 <= self.backoff_jitter < 1:
            raise BadArgument("backoff_jitter", self.backoff_jitter, "a number in [0, 1)")
        if type(self.max_connect_attempts) is not int or self.max_connect_attempts < 1:
            raise BadArgument("max_connect_attempts", self.max_connect_attempts, "an int >= 1")
        if type(self.max_frame) is not int or self.max_frame < HANDSHAKE_MAX_FRAME:
            raise BadArgument("max_frame", self.max_frame, f"an int >= {HANDSHAKE_MAX_FRAME}")
        if type(self.max_handshakes) is not int or self.max_handshakes < 1:
            raise BadArgument("max_handshakes", self.max_handshakes, "an int >= 1")
        if type(self.max_unsent) is not int or self.max_unsent < MIN_MAX_UNSENT:
            raise BadArgument("max_unsent", self.max_unsent, f"an int >= {MIN_MAX_UNSENT}")
        if self.write_buffer_high is not None and (
            type(self.write_buffer_high) is not int
            or not 1 <= self.write_buffer_high < self.max_unsent
        ):
            raise BadArgument("write_buffer_high", self.write_buffer_high,
                              "None or an int >= 1 and below max_unsent")

    def handshake_config(self) -> HandshakeConfig:
        """The wire-level identity derived from this configuration.

        Returns:
            A :class:`~shoal.wire.HandshakeConfig` for this node.

        Raises:
            BadArgument: cluster, node, creation or secret is invalid.
        """
        return HandshakeConfig(
            cluster=self.cluster, node=self.node, creation=self.creation, secret=self.secret
        )


def backoff_delays(config: TransportConfig, rng: random.Random) -> Iterator[float]:
    """The delays between successive connection attempts.

    The schedule is shoal's one backoff (:func:`shoal._backoff.backoff_delays`)
    with this configuration's parameters.

    Args:
        config: supplies initial, max, multiplier and jitter.
        rng: the random source for jitter (injected so tests are repeatable).

    Returns:
        An endless iterator of delays in seconds: exponential, capped, jittered.
    """
    return jittered_backoff(
        initial=config.backoff_initial, maximum=max(config.backoff_max, config.backoff_initial),
        multiplier=config.backoff_multiplier, jitter=config.backoff_jitter, rng=rng,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerStatistics:
    """A snapshot of one connection's counters.

    Attributes:
        bytes_sent, bytes_received: totals on the socket.
        messages_sent, messages_received: frames after the handshake.
        write_paused: the socket buffer is above its high-water mark.
        buffered: bytes accepted for sending that the socket has not taken
            yet (``PeerConnection.unsent``; bounded, rule 5).
        congested: ``buffered`` is at or past ``max_unsent``.
        silent: the peer is currently reported silent.
        heartbeats: PING and PONG frames among the messages, both ways:
            ``messages_sent + messages_received - heartbeats`` rises with
            every other message, so a connection is idle while it stays.
        calls_until: loop time until which a call read on it may still be
            answered: the latest deadline of a CALL it brought.
    """

    bytes_sent: int
    bytes_received: int
    messages_sent: int
    messages_received: int
    write_paused: bool
    buffered: int
    congested: bool
    silent: bool
    heartbeats: int = 0
    calls_until: float = 0.0

    @classmethod
    def of(cls, counts: list[int], unsent: int, max_unsent: int, *, write_paused: bool,
           silent: bool, calls_until: float) -> PeerStatistics:
        """From a connection's counters: bytes out, bytes in, messages out,
        messages in, heartbeats."""
        out, into, sent, received, heartbeats = counts
        return cls(bytes_sent=out, bytes_received=into, messages_sent=sent,
                   messages_received=received, write_paused=write_paused, buffered=unsent,
                   congested=unsent >= max_unsent, silent=silent, heartbeats=heartbeats,
                   calls_until=calls_until)
