"""One TCP (or TLS) connection to a peer: an asyncio Protocol driving wire.Connection.

Owns: moving bytes between the socket and the sans-IO
:class:`~shoal.wire.Connection`, write coalescing, backpressure, the
handshake deadline, heartbeats and the close reason. Everything about
*which* connection to keep belongs to the manager (``_manager.py``).

Rules:

1. ``send`` never blocks. The first frame of an event-loop turn is written
   at once (a lone reply leaves without waiting a turn); later ones are
   written together every ``FLUSH_FRAMES`` frames (or ``FLUSH_BYTES``) and
   at the end of the turn: few syscalls, and the peer starts on a part
   while this side makes the rest (``docs/decisions.md``).
2. Backpressure is visible, not hidden: when the socket buffer passes its
   high-water mark ``write_paused`` is True and ``wait_writable`` waits;
   senders that can wait should.
3. Heartbeats: a timer every ``heartbeat_interval`` sends PING if nothing
   was written for that long, and reports the peer silent if nothing was
   read for ``heartbeat_timeout`` (what each tick does is decided in
   ``_heartbeat.py``). Any bytes read make it alive again.
   PING is answered with PONG here; neither reaches the runtime, and the
   statistics count them apart, so the runtime can tell an idle connection.
4. Every ending records one ``close_reason`` and resolves ``wait_closed``;
   a protocol error or failed handshake is logged with the peer's address
   and closes only this connection (a stranger's, per interval: the manager's rule 7).
5. Unsent bytes are bounded (``max_unsent``, default 64 MiB): bytes accepted
   by ``send`` that the socket has not taken yet (``unsent``). At or past the
   bound the connection is ``congested``: the runtime refuses new calls,
   casts and sends (``Overloaded``); answers owed are still queued. A peer
   congested for ``heartbeat_timeout`` is aborted (its calls to this node
   fail there with ``NodeDown``), and so is one for which a ``send`` finds
   twice the bound unsent (it raises ``NodeDown``): a peer that never reads
   costs at most twice the bound plus one frame (``docs/decisions.md``).
6. Messages read before the connection ended (a BYE or a bad frame later
   in the same read) are still delivered, in order, after the connection
   is closed: answers to them are dropped quietly by whoever answers
   (``is_open`` is False), never logged per message.

Built on ``asyncio.Protocol`` rather than streams: no reader task, no
StreamReader buffering, callbacks straight from the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

from shoal.errors import BadArgument, NodeDown, ProtocolError
from shoal.pid import Pid
from shoal.transport._config import PeerStatistics
from shoal.transport._heartbeat import decide
from shoal.transport._owner import PeerOwner
from shoal.wire import Closed, Connection, Established, Message, Ping, Pong

__all__ = ["PeerConnection"]

logger = logging.getLogger("shoal.transport")
FLUSH_FRAMES, FLUSH_BYTES = 16, 64 * 1024  # Rule 1: the parts of a turn's frames


class PeerConnection(asyncio.Protocol):
    """One connection to a peer node. Built by the manager, not by users.

    Attributes:
        initiator: True when this node dialled.
        peer_node, peer_creation: the authenticated peer (None before the
            handshake completes).
        peer_address: the remote socket address, for logs.
        close_reason: why it closed, once closed.
        refusal: the word from the peer's REFUSE, if it refused us.

    Args:
        manager: the owning manager, which decides which connection to keep
            (``_owner.py``: what this connection calls on it).
        wire: the sans-IO protocol state for this connection.
        initiator: True when this node dialled.
    """

    # Slots: 30+ attributes overflow 3.11's shared keys (its method calls go unspecialized).
    __slots__ = ("__weakref__", "_by_type", "_closed", "_config", "_congested_since", "_counts",
                 "_encode_call", "_encode_reply", "_established", "_flush_scheduled",
                 "_high_water", "_last_recv", "_last_send", "_loop", "_manager", "_max_unsent",
                 "_on_message", "_out", "_out_bytes", "_paused", "_ping_seq", "_refusal_logged",
                 "_timer", "_transport", "_wire", "_writable", "calls_until", "close_reason",
                 "initiator", "peer_address", "peer_creation", "peer_node", "refusal",
                 "registered", "serving", "silent")

    def __init__(self, manager: PeerOwner[PeerConnection], wire: Connection, *,
                 initiator: bool) -> None:
        self._manager = manager
        self._wire = wire
        self._config = manager.config
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        # Invariant: frames accepted by send() but not yet written; non-empty
        # only while a flush is scheduled. _out_bytes == sum(map(len, _out)).
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._max_unsent = self._config.max_unsent  # the config is frozen
        sink = manager.handler  # read once per connection, as MessageSink says
        self._on_message = sink.on_message
        self._by_type = {kind: handler for kind, handler in
                         (getattr(sink, "message_handlers", None) or {}).items()
                         if kind is not Ping and kind is not Pong}  # answered here (rule 3)
        # Bound once (the hot path); send_call and send_reply check the state.
        self._encode_call, self._encode_reply = wire.encoder.framers()
        # Invariant: unpaused, the transport buffers at most _high_water bytes
        # (asyncio pauses us the moment it holds more), so an unpaused
        # connection with _out_bytes + _high_water below a bound is below it.
        self._high_water = self._config.write_buffer_high or 64 * 1024
        # Invariant: loop time since when unsent >= max_unsent, as seen by
        # the heartbeat timer; None while below.
        self._congested_since: float | None = None
        # Invariant: _paused is not _writable.is_set() (a plain bool for the hot path).
        self._flush_scheduled = self._paused = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._established: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[str] = self._loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._last_recv = self._last_send = self._loop.time()
        self._ping_seq = 0
        self._counts = [0, 0, 0, 0, 0]  # bytes out/in, messages out/in, heartbeats
        # CALLs read and not answered yet, and the latest deadline of one: noted by the runtime.
        self.serving, self.calls_until = 0, 0.0
        # Invariant: silent only while registered and reported silent.
        self.silent = self.registered = False
        self.initiator = initiator
        self.peer_node: str | None = None
        self.peer_creation: int | None = None
        self.peer_address: Any = None
        self.close_reason: str | None = None
        self.refusal: str | None = None
        self._refusal_logged = False

    def __repr__(self) -> str:
        who = f"{self.peer_node}/{self.peer_creation}" if self.peer_node else "unauthenticated"
        return f"<PeerConnection {who} at {self.peer_address} {self._wire.state}>"

    # --- public API ---------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True while messages can be sent."""
        return self._wire.state == "open" and self.close_reason is None

    @property
    def write_paused(self) -> bool:
        """True while the socket buffer is above its high-water mark."""
        return self._paused

    @property
    def unsent(self) -> int:
        """Bytes accepted by ``send`` that the socket has not taken yet."""
        return self._out_bytes + (self._transport.get_write_buffer_size() if self._transport else 0)

    @property
    def congested(self) -> bool:
        """True while ``unsent`` is at or past ``max_unsent`` (Rule 5): the peer
        does not read what this node sends; new requests to it are refused."""
        limit = self._max_unsent
        if not self._paused and self._out_bytes + self._high_water < limit:
            return False  # the cheap answer, exact by the invariant on _high_water
        return self.unsent >= limit

    def send(self, msg: Message) -> None:
        """Send any post-handshake message (Rule 1 says when it is written).

        Raises:
            NodeDown: not open (closed, or in the handshake): nothing sent (``not_started``).
            BadArgument: the message holds an unencodable term or is too large.
        """
        if not self.is_open:
            raise NodeDown(self.peer_node or "?", f"connection {self.close_reason or 'not open'}")
        self._queue(self._wire.send(msg))

    def send_call(self, ref: int, sender: Pid | None, to: Pid, request: Any,
                  timeout_ms: int) -> None:
        """``send(Call(...))`` without building the message; raises as :meth:`send`."""
        if self.close_reason is not None or self._wire.state != "open":  # not is_open
            raise NodeDown(self.peer_node or "?", f"connection {self.close_reason or 'not open'}")
        encode = self._encode_call  # a local: 3.11 specializes the call
        self._queue(encode(ref, sender, to, request, timeout_ms))

    def send_reply(self, ref: int, value: Any, queue_len: int) -> None:
        """``send(Reply(...))`` without building the message; raises as :meth:`send`."""
        if self.close_reason is not None or self._wire.state != "open":  # not is_open
            raise NodeDown(self.peer_node or "?", f"connection {self.close_reason or 'not open'}")
        encode = self._encode_reply
        self._queue(encode(ref, value, queue_len))

    def _queue(self, data: bytes) -> None:
        if self._paused or self._out_bytes >= self._max_unsent:
            self._check_room()
        if self._flush_scheduled:
            self._out.append(data)
            self._out_bytes += len(data)
            if len(self._out) >= FLUSH_FRAMES or self._out_bytes >= FLUSH_BYTES:
                self._flush(scheduled=True)  # a part now (Rule 1)
        else:
            # The first frame of a loop turn goes out at once, before any
            # bookkeeping (latency); later ones of the turn are joined (Rule 1).
            transport = self._transport  # _write_now, inlined (the hot path)
            if transport is not None and not transport.is_closing():
                transport.write(data)
                self._counts[0] += len(data)
                self._last_send = self._loop.time()
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        self._counts[2] += 1

    async def wait_writable(self) -> None:
        """Wait until the socket buffer drains below its low-water mark;
        raises ``NodeDown`` if the connection closed meanwhile."""
        if self._writable.is_set():
            return
        waiter = asyncio.ensure_future(self._writable.wait())
        closed = asyncio.ensure_future(self.wait_closed())
        try:
            await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            closed.cancel()
        if not self._writable.is_set():
            raise NodeDown(self.peer_node or "?", f"connection {self.close_reason}")

    async def wait_established(self) -> None:
        """Wait until the handshake completed and the manager kept this connection.

        Raises:
            ProtocolError: the handshake failed (``AuthenticationFailed`` when
                refused or unauthenticated).
            NodeDown: the connection closed before that for another reason.
        """
        await asyncio.shield(self._established)

    async def wait_closed(self) -> str:
        """Wait until the connection has closed; return the close reason."""
        return await asyncio.shield(self._closed)

    def close(self, reason: str = "shutdown", *, linger: float = 0.0) -> None:
        """Close in order: flush queued frames, send BYE, close the socket.

        Args:
            reason: told to the peer in BYE and recorded as the close reason.
            linger: seconds to let the peer close first, dropping what arrives
                meanwhile: a frame crossing the BYE meets no reset hiding the BYE.
        """
        if self.close_reason is not None or self._transport is None:
            self._set_reason(reason)
            return
        self._set_reason(reason)
        self._flush()
        bye = self._wire.close(reason)
        if bye:
            self._transport.write(bye)
        if bye and linger > 0:  # the peer closes on reading BYE; else this bound does
            self._timer = self._loop.call_later(linger, self._transport.close)
        else:
            self._transport.close()

    def abort(self, reason: str) -> None:
        """Drop the connection at once, without BYE or flushing; ``reason``
        is recorded as the close reason."""
        self._set_reason(reason)
        self._wire.close(reason)
        self._out.clear()
        self._out_bytes = 0
        if self._transport is not None:
            self._transport.abort()

    def statistics(self) -> PeerStatistics:
        """Return a frozen snapshot of this connection's counters."""
        return PeerStatistics.of(self._counts, self.unsent, self._config.max_unsent,
                                 write_paused=self.write_paused, silent=self.silent,
                                 calls_until=self.calls_until)

    # --- asyncio.Protocol -----------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """asyncio callback: the socket (or TLS) ``transport`` is up; start
        the handshake and its deadline."""
        # uvloop's TCP transport is not an asyncio.Transport subclass, but
        # has the same methods: no isinstance check here.
        self._transport = cast(asyncio.Transport, transport)
        self.peer_address = transport.get_extra_info("peername")
        refusal = self._manager.connection_made(self)
        if refusal is not None:
            self._set_reason(refusal)
            self._transport.abort()
            return
        if self._config.write_buffer_high is not None:
            self._transport.set_write_buffer_limits(high=self._config.write_buffer_high)
        self._timer = self._loop.call_later(self._config.handshake_timeout, self._handshake_late)
        self._write_now(self._wire.data_to_send())

    def data_received(self, data: bytes) -> None:
        """asyncio callback: feed the bytes read to the protocol and act on
        its events."""
        self._counts[1] += len(data)
        self._last_recv = self._loop.time()
        if self.silent:
            self.silent = False
            self._manager.peer_alive(self)
        if self.registered:  # open: the frequent kinds go to their handlers as decoded
            taken, events = self._wire.dispatch(data, self._by_type, self, self._failed)
            self._counts[3] += taken
            if events:
                self._handle(events)
            return
        events = self._wire.receive_data(data)
        self._write_now(self._wire.data_to_send())  # handshake steps
        self._handle(events)
        if not self.registered and (pending := self._wire.pending_admission) is not None:
            self._manager.admission_pending(self, *pending)  # it calls decide_admission

    def decide_admission(self, word: str | None) -> None:
        """Admit (``word`` None) or refuse with ``word`` the peer whose
        admission the manager deferred (and logged, if refused)."""
        self._refusal_logged = word is not None
        events = self._wire.decide_admission(word)
        self._write_now(self._wire.data_to_send())
        self._handle(events)

    def eof_received(self) -> bool:
        """asyncio callback: the peer closed its side (False: asyncio closes the transport)."""
        self._handle(self._wire.receive_eof())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """asyncio callback: the socket is gone (``exc``: the OS error, or
        None for a clean close); record why and tell the manager."""
        if self._timer is not None:
            self._timer.cancel()
        self._set_reason(f"connection lost: {exc}" if exc else "connection closed by peer")
        self._writable.set()
        self._paused = False
        self._out.clear()
        self._out_bytes = 0
        reason = self.close_reason or "closed"
        self._not_established(NodeDown(self.peer_node or str(self.peer_address), reason))
        self._manager.connection_lost(self)
        if not self._closed.done():
            self._closed.set_result(reason)

    def pause_writing(self) -> None:
        """asyncio callback: the write buffer passed its high-water mark."""
        self._writable.clear()
        self._paused = True

    def resume_writing(self) -> None:
        """asyncio callback: the write buffer drained below its low-water mark."""
        self._writable.set()
        self._paused = False

    # --- internals ----------------------------------------------------

    def _not_established(self, error: Exception) -> None:
        if not self._established.done():
            self._established.set_exception(error)
            self._established.exception()  # consumed here: callers may not wait

    @staticmethod
    def _failed(exc: Exception) -> None:
        logger.error("transport callback on_message failed", exc_info=exc)

    def _set_reason(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason

    def _write_now(self, data: bytes) -> None:
        if data and self._transport is not None and not self._transport.is_closing():
            self._counts[0] += len(data)
            self._transport.write(data)
            self._last_send = self._loop.time()

    def _flush(self, scheduled: bool = False) -> None:
        self._flush_scheduled = scheduled
        if not self._out:
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        self._out_bytes = 0
        self._write_now(data)

    def _check_room(self) -> None:
        """Disconnect a peer for which twice ``max_unsent`` waits (rule 5)."""
        unsent = self.unsent
        if unsent >= 2 * self._config.max_unsent:
            self._disconnect_congested(
                f"peer not reading: {unsent} bytes unsent, twice the bound of "
                f"{self._config.max_unsent}")
            raise NodeDown(self.peer_node or "?", f"connection {self.close_reason}")

    def _disconnect_congested(self, reason: str) -> None:
        logger.warning("disconnecting node %s at %s: %s",
                       self.peer_node, self.peer_address, reason)
        self.abort(reason)

    def _handle(self, events: list[Any]) -> None:
        by_type, on_message = self._by_type, self._on_message
        for event in events:
            kind = type(event)
            handler = by_type.get(kind)
            if handler is not None and self.registered:  # the hot path, first
                self._counts[3] += 1
                try:
                    handler(self, event)
                except Exception:
                    logger.exception("transport callback on_message failed")
            elif kind is not Established and kind is not Closed:
                if not self.registered:
                    continue  # a connection the manager refused; it is closing
                self._counts[3] += 1
                if kind is Ping:
                    # A BYE or a bad frame later in the same read closed the
                    # connection, or it is congested: nobody would read a PONG.
                    self._counts[4] += 1
                    if self.is_open:
                        with contextlib.suppress(NodeDown):
                            self.send(Pong(seq=event.seq))
                            self._counts[4] += 1
                elif kind is Pong:
                    self._counts[4] += 1
                else:  # exceptions are logged, as every callback's are
                    try:
                        on_message(self, event)
                    except Exception:
                        logger.exception("transport callback on_message failed")
            elif kind is Established:
                self.peer_node, self.peer_creation = event.node, event.creation
                if self._timer is not None:
                    self._timer.cancel()
                refusal = self._manager.connection_established(self)
                if refusal is not None:
                    self._not_established(NodeDown(event.node, refusal))
                    self.close(refusal)
                    return
                self.registered = True
                self._established.set_result(None)
                self._last_recv = self._last_send = self._loop.time()
                self._timer = self._loop.call_later(self._config.heartbeat_interval, self._tick)
            else:
                self._closed_by_protocol(event)
                return

    def _closed_by_protocol(self, event: Closed) -> None:
        self.refusal = event.refusal
        if event.error is not None:
            # A duplicate is the normal end of a simultaneous connect (rule 3 of the
            # manager); our own dial's failure is the dialler's to report (once per refusal).
            routine = "duplicate" in (event.refusal, self._wire.refusal_sent) or (
                self.initiator and not self._established.done())
            if self._refusal_logged or routine or self._established.done():
                level = logging.INFO if routine else logging.WARNING
                logger.log(logging.DEBUG if self._refusal_logged else level,
                           "closing connection with %s (node %s): %s", self.peer_address,
                           self.peer_node or "unauthenticated", event.error)
            else:
                self._manager.handshake_failed(self, event.error)  # a stranger's: rule 4
            self._set_reason(f"protocol error: {event.error}")
            self._not_established(event.error)
        else:
            self._set_reason(f"peer closed: {event.reason}")
        self._write_now(self._wire.data_to_send())  # a REFUSE, if we refused
        if self._transport is not None:
            self._transport.close()

    def _handshake_late(self) -> None:
        error = ProtocolError(f"handshake not completed in {self._config.handshake_timeout}s")
        self._manager.handshake_failed(self, f"handshake timed out ({error})")
        self._not_established(error)
        self.abort("handshake timed out")

    def _tick(self) -> None:
        if not self.is_open:
            return
        now = self._loop.time()
        tick = decide(self._config, now, last_read=self._last_recv, last_write=self._last_send,
                      unsent=self.unsent,
                      congested_since=self._congested_since, silent=self.silent)
        if tick.disconnect is not None:
            self._disconnect_congested(tick.disconnect)
            return
        self._congested_since = tick.congested_since
        if tick.ping:
            self._ping_seq += 1
            try:
                self.send(Ping(seq=self._ping_seq))
            except (NodeDown, BadArgument):  # closing under us; the loss reports it
                return
            self._counts[4] += 1
        if tick.silent:
            self.silent = True
            self._manager.peer_silent(self)
        self._timer = self._loop.call_later(tick.delay, self._tick)
