"""Connection: handshake and framing for one peer, as a sans-IO object.

Owns: the life of one connection as the protocol sees it -- handshake,
then messages, then closed -- with no sockets and no event loop. The
transport (or a test, with :class:`ConnectionPair`) only moves bytes.

Use::

    conn = Connection(config, initiator=True)
    write(conn.data_to_send())                    # HELLO
    for event in conn.receive_data(read()):       # Established, messages, Closed
        ...
    write(conn.data_to_send())                    # handshake answers, if any
    write(conn.send(Call(...)))                   # after Established

Rules:

1. States: ``handshake`` → ``open`` → ``closed``. Only handshake messages
   are accepted in ``handshake``; any other is a ``ProtocolError``. Frames
   are limited to :data:`HANDSHAKE_MAX_FRAME` until the peer has proven it
   knows the secret, then to ``max_frame``.
2. Failures never raise out of :meth:`receive_data` / :meth:`receive_eof`:
   they end with a :class:`Closed` event carrying the ``ProtocolError`` (or
   ``AuthenticationFailed``), so a transport has one path for every ending.
   Messages decoded before the failure are delivered first, in order. After
   ``Closed`` every input is ignored.
3. A refusal (wrong secret, other cluster, no common version, vetoed peer)
   leaves a REFUSE frame in :meth:`data_to_send`; write it, then close.
4. BYE from the peer ends the connection with ``Closed(error=None)``.
   End of stream with no BYE is also a ``Closed`` without error once open
   (the peer went away), but an error mid-frame or mid-handshake.
5. PING and PONG are delivered as events like any message; answering a PING
   is the transport's business, which keeps this object free of policy.
6. An acceptor whose ``vet_peer`` deferred the admission (handshake rule 7)
   stays in ``handshake`` with :attr:`pending_admission` set; any frame the
   peer sends meanwhile is a ``ProtocolError`` (it must wait for our
   PROOF). :meth:`decide_admission` then yields ``Established`` (our PROOF
   in :meth:`data_to_send`) or ``Closed`` (a REFUSE there).
7. Once open, a chunk of whole frames holding plain messages (every kind
   but BYE and a handshake step) is split and decoded in one call
   (``_chunks.messages``, in C when built); whatever it does not take -- a
   partial frame, a bad length or body, BYE -- goes through the frame
   decoder and the checks above, after the messages taken, so the events
   are the same either way.
8. :meth:`dispatch` is :meth:`receive_data` for a reader that handles the
   frequent kinds itself: once open, each message of rule 7's chunk whose
   type has a handler is passed to it as it is decoded (``_chunks.deliver``,
   in C when built), never built into a list; the rest of the chunk from
   the first frame without a handler comes back as events, as
   :meth:`receive_data` gives them. A chunk read while open is taken whole,
   even if a handler closes this side meanwhile, as :meth:`receive_data`
   takes it whole before anyone acts on its events.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from shoal.errors import AuthenticationFailed, BadArgument, ProtocolError
from shoal.wire._chunks import Handlers, deliver, messages
from shoal.wire._codec import Encoder, decode_body, new_encoder
from shoal.wire._frames import DEFAULT_MAX_FRAME, HANDSHAKE_MAX_FRAME, FrameDecoder
from shoal.wire._handshake import (
    Handshake,
    HandshakeConfig,
    HandshakeResult,
    Refuse,
    VetPeer,
)
from shoal.wire._messages import Bye, Message

__all__ = ["Closed", "Connection", "ConnectionPair", "Established", "Event"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Established:
    """The handshake completed; messages may flow.

    Attributes:
        version: the protocol version in use.
        node, creation: the authenticated peer.
        initiator: True when this side opened the connection.
    """

    version: int
    node: str
    creation: int
    initiator: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Closed:
    """The connection ended; nothing more will come from it.

    Attributes:
        reason: human-readable cause (the peer's BYE reason, or the error).
        error: the ``ProtocolError`` / ``AuthenticationFailed`` that ended it,
            or None for an orderly end (BYE, or end of stream once open).
        by_peer: True when the peer ended it (BYE, REFUSE, end of stream).
        refusal: the word from the peer's REFUSE, if it refused us.
    """

    reason: str
    error: ProtocolError | None = None
    by_peer: bool = False
    refusal: str | None = None


Event = Established | Closed | Message
"""What :meth:`Connection.receive_data` yields."""

State = Literal["handshake", "open", "closed"]


class Connection:
    """Handshake, framing and message codec for one peer (sans-IO).

    Args:
        config: this node's identity, cluster and secret.
        initiator: True on the side that opened the connection; its HELLO is
            ready in :meth:`data_to_send` at once.
        max_frame: largest body accepted and sent once open.
        random_bytes: nonce source (tests pass a deterministic one).
        vet_peer: see :class:`~shoal.wire.Handshake`.
        expect_node: on the initiator, the node name it meant to reach.

    Raises:
        BadArgument: ``max_frame`` is invalid or ``random_bytes`` misbehaves.
    """

    def __init__(
        self,
        config: HandshakeConfig,
        *,
        initiator: bool,
        max_frame: int = DEFAULT_MAX_FRAME,
        random_bytes: Callable[[int], bytes] = os.urandom,
        vet_peer: VetPeer | None = None,
        expect_node: str | None = None,
    ) -> None:
        if type(max_frame) is not int or max_frame < HANDSHAKE_MAX_FRAME:
            raise BadArgument("max_frame", max_frame, f"an int >= {HANDSHAKE_MAX_FRAME}")
        self._frames = FrameDecoder(HANDSHAKE_MAX_FRAME)
        self._encoder = new_encoder(max_frame)
        self._max_frame = max_frame
        self._handshake: Handshake | None = Handshake(
            config,
            initiator=initiator,
            random_bytes=random_bytes,
            vet_peer=vet_peer,
            expect_node=expect_node,
        )
        self._outbox = [self._encoder.encode(m) for m in self._handshake.start()]
        # Invariant: "open" iff result is set and no Closed was produced or sent.
        self.state: State = "handshake"
        self._peer_refusal: str | None = None
        self.refusal_sent: str | None = None
        """The word this side sent in REFUSE, if it refused the peer."""
        self.result: HandshakeResult | None = None
        """The peer's identity and version once established."""

    @property
    def encoder(self) -> Encoder:
        """The encoder of this connection's frames. Its ``encode_call`` and
        ``encode_reply`` are :meth:`send` of a CALL or REPLY without building
        the message and without the state check: for a caller that checked
        the state itself (the transport's hot path binds them once, through
        ``framers()``)."""
        return self._encoder

    def data_to_send(self) -> bytes:
        """Bytes the protocol itself wants written (handshake steps, REFUSE).

        Returns:
            The pending bytes, possibly empty; they are removed from the queue.
        """
        if not self._outbox:
            return b""
        data = b"".join(self._outbox)
        self._outbox.clear()
        return data

    def send(self, msg: Message) -> bytes:
        """Encode a message to write to the peer.

        Args:
            msg: any non-handshake message.

        Returns:
            The frame bytes.

        Raises:
            BadArgument: a term in it cannot be encoded, it is too large, it is
                a handshake message, or the connection is not open.
        """
        if self.state != "open":
            raise BadArgument(
                "msg", msg, f"a message sent on an open connection (now {self.state})"
            )
        if msg.code < 16:
            raise BadArgument("msg", msg, "a message other than a handshake step")
        return self._encoder.encode(msg)

    def close(self, reason: str = "shutdown") -> bytes:
        """End the connection from this side.

        Args:
            reason: told to the peer in BYE.

        Returns:
            The BYE frame to write before closing the socket when open;
            empty when the handshake had not completed or already closed.
        """
        was_open = self.state == "open"
        self.state = "closed"
        return self._encoder.encode(Bye(reason=reason)) if was_open else b""

    def _fail(self, events: list[Event], error: ProtocolError, refusal: str | None = None) -> None:
        self.state = "closed"
        events.append(Closed(reason=str(error), error=error, by_peer=True, refusal=refusal))

    def _run_handshake(self, data: bytes, events: list[Event]) -> list[bytes]:
        """Feed handshake frames one at a time: the frame limit rises only
        after the peer has proven itself, even if more frames share a chunk."""
        hs = self._handshake
        assert hs is not None
        bodies = self._frames.feed(data, max_bodies=1)
        while bodies:
            msg = decode_body(bodies[0])
            if msg is None:
                raise ProtocolError("ignorable message received before the handshake completed")
            try:
                answers = hs.receive(msg)
            except ProtocolError:
                self._peer_refusal = hs.peer_refusal
                if hs.refusal is not None:
                    self.refusal_sent = hs.refusal.reason
                    self._outbox.append(self._encoder.encode(hs.refusal))
                raise
            self._outbox.extend(self._encoder.encode(m) for m in answers)
            if hs.result is not None:
                self._opened(hs.result, events)
                return self._frames.feed(b"")
            bodies = self._frames.feed(b"", max_bodies=1)
        return []

    def _opened(self, result: HandshakeResult, events: list[Event]) -> None:
        self.result = result
        self._handshake = None
        self.state = "open"
        self._frames.max_frame = self._max_frame
        events.append(Established(version=result.version, node=result.node,
                                  creation=result.creation, initiator=result.initiator))

    @property
    def pending_admission(self) -> tuple[str, int] | None:
        """The proven peer's ``(node, creation)`` while its admission is
        deferred (rule 6), else None."""
        hs = self._handshake
        return hs.pending if hs is not None and self.state == "handshake" else None

    def decide_admission(self, word: str | None) -> list[Event]:
        """Admit (``word`` None) or refuse the peer whose admission was
        deferred (rule 6).

        Returns:
            ``Established`` (then :meth:`data_to_send` holds our PROOF), or
            ``Closed`` (a REFUSE there); nothing when no admission is
            pending any more (the connection ended meanwhile).
        """
        hs = self._handshake
        if self.pending_admission is None or hs is None:
            return []
        events: list[Event] = []
        try:
            answers = hs.decide(word)
        except AuthenticationFailed as exc:
            assert hs.refusal is not None
            self.refusal_sent = hs.refusal.reason
            self._outbox.append(self._encoder.encode(hs.refusal))
            self._fail(events, exc)
            return events
        self._outbox.extend(self._encoder.encode(m) for m in answers)
        assert hs.result is not None
        self._opened(hs.result, events)
        return events

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Take bytes read from the peer.

        Args:
            data: the next chunk, of any size.

        Returns:
            Events in order: at most one :class:`Established`, decoded
            messages, and a final :class:`Closed` if the connection ended.
        """
        state = self.state
        if state == "open" and not self._frames.tail:
            # Rule 7: the common case, whole frames of plain messages.
            taken, pos = messages(data, self._max_frame)
            if pos == len(data):
                return taken  # type: ignore[return-value]  # list is invariant
            events: list[Event] = taken  # type: ignore[assignment]
            data = memoryview(data)[pos:]
        elif state == "closed":
            return []
        else:
            events = []
        return self._receive(data, events)

    def _receive(self, data: bytes | bytearray | memoryview, events: list[Event]) -> list[Event]:
        """Rules 1-6 for a chunk (or what rule 7 left of it), after ``events``."""
        try:
            if self.state == "handshake":
                bodies = self._run_handshake(bytes(data), events)
            else:
                bodies = self._frames.feed(data)
            for body in bodies:
                msg = decode_body(body)
                if msg is None:
                    continue  # an ignorable message from a newer release
                if msg.code < 16:
                    if type(msg) is Refuse:
                        # The peer's check of our final PROOF failed after it
                        # had already sent its own: it refuses us once open.
                        self._peer_refusal = msg.reason
                        raise AuthenticationFailed(f"peer refused the connection: {msg.reason}")
                    raise ProtocolError(f"handshake message {type(msg).__name__} after handshake")
                if type(msg) is Bye:
                    self.state = "closed"
                    events.append(Closed(reason=msg.reason, by_peer=True))
                    break
                events.append(msg)
            else:
                if self._frames.error is not None:  # a bad header after good frames
                    raise self._frames.error
        except ProtocolError as exc:
            self._fail(events, exc, self._peer_refusal)
        return events

    def dispatch(self, data: bytes | bytearray | memoryview, handlers: Handlers, target: Any,
                 failed: Callable[[Exception], object]) -> tuple[int, list[Event]]:
        """Take bytes read from the peer, passing the messages of the types
        in ``handlers`` to them as they are decoded (rule 8).

        Args:
            data: the next chunk, of any size.
            handlers: a dict, message type → ``handler(target, msg)``; a
                BYE or a handshake step is never passed (rule 7's kinds only).
            target: the first argument of every handler.
            failed: called with an ``Exception`` a handler raised; the next
                message follows.

        Returns:
            How many messages were passed to handlers, and the events of
            the rest of the chunk, in order after them (as
            :meth:`receive_data` returns them).
        """
        if self.state != "open" or self._frames.tail:
            return 0, self.receive_data(data)
        pos, count = deliver(data, self._max_frame, handlers, target, failed)
        if pos == len(data):
            return count, []
        rest = memoryview(data)[pos:]
        if self.state == "open":
            return count, self.receive_data(rest)
        # Read while open: the rest is taken even though a handler closed this
        # side meanwhile, as receive_data takes a chunk whole before anyone acts.
        return count, self._receive(rest, [])

    def receive_eof(self) -> list[Event]:
        """Record that the peer closed its side of the stream.

        Returns:
            A single :class:`Closed` event, or nothing if already closed.
        """
        if self.state == "closed":
            return []
        events: list[Event] = []
        try:
            self._frames.feed_eof()
        except ProtocolError as exc:
            self._fail(events, exc)
            return events
        if self.state == "handshake":
            self._fail(events, ProtocolError("connection closed during the handshake"))
        else:
            self.state = "closed"
            events.append(Closed(reason="connection closed by peer", by_peer=True))
        return events


class ConnectionPair:
    """Two connected :class:`Connection` objects in memory, for tests.

    Bytes are moved only when :meth:`pump` is called, so a test controls
    every interleaving (h11's ``ConnectionPair``).

    Args:
        initiator: the side that "opened" the connection.
        acceptor: the other side.
    """

    def __init__(self, initiator: Connection, acceptor: Connection) -> None:
        self.initiator = initiator
        self.acceptor = acceptor
        self.events: dict[str, list[Event]] = {"initiator": [], "acceptor": []}

    def pump(self, limit: int = 16) -> None:
        """Move pending bytes both ways until neither side has any.

        Args:
            limit: most rounds to run (the handshake needs three).

        Raises:
            BadArgument: bytes were still flowing after ``limit`` rounds.
        """
        for _ in range(limit):
            to_acceptor = self.initiator.data_to_send()
            to_initiator = self.acceptor.data_to_send()
            if not to_acceptor and not to_initiator:
                return
            if to_acceptor:
                self.events["acceptor"] += self.acceptor.receive_data(to_acceptor)
            if to_initiator:
                self.events["initiator"] += self.initiator.receive_data(to_initiator)
        raise BadArgument("limit", limit, "enough rounds for the exchange to settle")
