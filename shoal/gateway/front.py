"""The lean HTTP/1.1 front of a node's HTTP endpoint: calls, casts and sends
served on ``httptools``, every other request by the aiohttp application.

aiohttp's request machinery costs more CPU than a whole gateway call
besides it (``docs/decisions.md``, "The gateway's lean front"), so the
routes that carry calls are parsed and answered here, by the same route
code, checks, error table and counters as through aiohttp.

Owns: the endpoint's listening sockets and, per connection, its parser, the
answers it owes (in request order), the tasks serving them, and its idle
timer; and the lower-cased text of the header names seen last (at most
:data:`MAX_NAMES`, forgotten all at once when full).

Rules:

- Rule 1 (routes): a ``POST`` whose path is one of ``callers.HOT_ROUTES``
  with plain segments (no ``%``, ``{`` or ``}``), without ``Upgrade`` and
  with no ``Expect`` but ``100-continue``, is served here. At the first
  other request the connection is handed to the aiohttp application
  (its ``web.Server``) with the bytes of that request onward, once every
  answer owed before it was written; it stays with aiohttp from then on.
- Rule 2 (order): answers are written in request order (pipelining); at most
  :data:`MAX_PIPELINED` requests are in progress on a connection: reading
  pauses beyond that, and while the transport's buffer is over its mark.
- Rule 3 (bodies): ``GatewayContext.refusal`` and the body limit are checked
  once the headers are in. A refused request (or one whose Content-Length
  is over ``max_body``) is answered at once, and if a body was announced the
  connection closes after the answer, its body never read. Otherwise
  ``Expect: 100-continue`` is answered ``100 Continue``; chunked bodies are
  decoded by the parser; a body whose bytes pass ``max_body`` is
  ``413 too_large`` and the connection closes.
- Rule 4 (bounds): a request line and headers over :data:`MAX_HEAD` bytes,
  or bytes the parser refuses, are ``400 bad_request`` and the connection
  closes. A connection that owes no answer and read nothing for
  ``keepalive`` seconds (aiohttp's default, :data:`KEEPALIVE`) is closed.
- Rule 5 (life): a connection that closes cancels its requests in progress
  (as aiohttp's ``handler_cancellation`` does); :meth:`Front.close` stops
  listening and closes the connections still here (the aiohttp runner
  closes those handed to it).
- Rule 6 (hand-off offset): the parser does not say where a request starts,
  so a connection keeps the bytes read since it was last between requests
  at the end of a read (``_raw``) and counts the requests completed since
  (``_done``); a request's start is found again by parsing ``_raw`` with a
  fresh parser (:func:`_offset_after`). ``_raw`` is trimmed the same way once
  it passes ``MAX_HEAD + max_body``, so it holds about one request at most;
  a request whose bytes pass four times that (chunk framing, not body: the
  body is bounded by Rule 3) is ``400 bad_request`` and the connection closes.
- Rule 7 (busy poll): the head of a request the front serves (a call, cast
  or send: not one handed to aiohttp, such as ``/metrics``) once its token
  and limits are checked, and an answer written to one, poke the node's
  busy poll (``runtime/spin.py``): the remote call's answer, and the
  client's next request, are then read without the loop going to sleep. A
  refused request (no or a wrong token, too large, a bad request) pokes
  nothing, so a client without the token cannot make the node spin.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from typing import Final, cast

import httptools

from shoal.gateway.bodies import JSON
from shoal.gateway.callers import HOT_ROUTES
from shoal.gateway.context import GatewayContext
from shoal.gateway.errors import GatewayError
from shoal.gateway.http11 import (
    HEADERS_READ,
    Headers,
    Incoming,
    answer_head,
    incoming,
    offset_after,
    route_of,
)

__all__ = ["KEEPALIVE", "MAX_HEAD", "MAX_PIPELINED", "Front"]

MAX_PIPELINED: Final = 32
"""Most requests in progress on one connection before reading pauses."""
MAX_HEAD: Final = 32768
"""Most bytes of a request line and headers (aiohttp's ``max_headers``)."""
KEEPALIVE: Final = 3630.0
"""Seconds a silent connection owing nothing stays open (aiohttp's default)."""

_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


MAX_NAMES: Final = 256
"""Most header names whose lower-cased text the front keeps (then it forgets them all)."""
NAME_CACHE: dict[bytes, str] = {}
"""Header names as sent, lower-cased and decoded, or ``""`` for a name
outside ``HEADERS_READ``: at most ``MAX_NAMES``."""


def _name(raw: bytes) -> str:
    """A header name as a request's headers key it, ``""`` for one the front
    does not keep (and kept in ``NAME_CACHE``)."""
    if len(NAME_CACHE) >= MAX_NAMES:
        NAME_CACHE.clear()
    name = raw.decode("utf-8", "surrogateescape").lower()
    name = NAME_CACHE[raw] = name if name in HEADERS_READ else ""
    return name


class _HandOff(Exception):
    """Raised in a parser callback: this request is aiohttp's (Rule 1)."""


class _Stop(Exception):
    """Raised in a parser callback: the connection reads no more (answered, closing)."""


class _Slot:
    """An answer owed, in request order: its bytes once known, whether the
    connection closes after it, and the task serving it while it runs.
    Made without arguments (no ``__init__`` frame); its fields default here."""

    data: bytes | None = None
    close = False
    task: asyncio.Task[None] | None = None


def _slot(data: bytes | None, close: bool) -> _Slot:
    slot = _Slot()
    slot.data, slot.close = data, close
    return slot


class Connection(asyncio.Protocol):
    """One client connection while it is the front's (see the module header)."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.ctx = front.ctx
        self.loop = asyncio.get_running_loop()
        self.poke = front.poke  # Rule 7
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.parser = httptools.HttpRequestParser(self)
        # Invariant: the answers owed, oldest first; the head is written as
        # soon as its bytes are known (Rule 2). A request being served has
        # its task on its slot until it ends (_serve's finally).
        self.slots: deque[_Slot] = deque()
        self._raw = bytearray()
        self._done = 0
        self._in_request = False
        self._closing = False
        self._handoff: bytearray | None = None
        self._read_paused = self._write_paused = False
        self._last_read = self.loop.time()
        self._timer: asyncio.TimerHandle | None = None
        # The request being parsed.
        self._url = bytearray()
        # The kept headers: name (lower-cased), value (raw).
        self._fields: list[tuple[str, bytes]] = []
        self._head_size = 0
        self._body: list[bytes] = []
        self._size = 0
        self._answered = False
        self._template = ""
        self._request: Incoming | None = None

    # -- asyncio callbacks ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if isinstance(peer, (list, tuple)) and peer else None
        self.front.connections.add(self)
        self._timer = self.loop.call_later(self.front.keepalive, self._idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        for slot in self.slots:
            if slot.task is not None:
                slot.task.cancel()
        self.slots.clear()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._pause()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._resume()

    def data_received(self, data: bytes) -> None:
        self._last_read = self.loop.time()
        if self._handoff is not None:
            self._handoff += data
            return
        if self._closing:
            return
        self._raw += data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HandOff):
                self._begin_handoff()
            elif isinstance(cause, GatewayError):
                self._fail(cause)
            elif not isinstance(cause, _Stop):
                self._fail(GatewayError(400, "bad_request", f"malformed request: {exc}"))
            return
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(GatewayError(400, "bad_request", f"malformed request: {exc}"))
            return
        if not self._in_request:
            self._raw.clear()
            self._done = 0
        elif len(self._raw) > MAX_HEAD + self.ctx.max_body:
            if self._done:
                del self._raw[:offset_after(self._raw, self._done)]
                self._done = 0
            if len(self._raw) > 4 * (MAX_HEAD + self.ctx.max_body):  # framing, not body
                self._fail(GatewayError(400, "bad_request", "the request's chunk framing is "
                                        f"over {len(self._raw)} bytes"))

    # -- parser callbacks -------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._closing:
            raise _Stop
        self._in_request = True
        self._url.clear()
        self._fields = []
        self._head_size = 0
        self._body = []
        self._size = 0
        self._answered = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > MAX_HEAD:
            self._grow(0)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Values are kept raw here, decoded once the head is in (this runs
        # per header); those of headers no route reads, never.
        size = self._head_size = self._head_size + len(name) + len(value) + 4
        if size > MAX_HEAD:
            self._grow(0)
        key = NAME_CACHE.get(name)
        if key is None:
            key = _name(name)
        if key:
            self._fields.append((key, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        found = route_of(bytes(self._url)) if parser.get_method() == b"POST" \
            and not parser.should_upgrade() else None
        if found is None:
            raise _HandOff
        by_name = Headers()
        fields = self._fields
        for name, value in fields:
            if name not in by_name:  # the first value of a name wins
                by_name[name] = value.decode("utf-8", "surrogateescape")
        expect = by_name.get("expect")
        if expect is not None and expect.lower() != "100-continue":
            raise _HandOff  # aiohttp answers 417
        self._template, info, query = found
        request = self._request = incoming((by_name, query, info, self.remote))
        refused = self.ctx.refusal(request)
        length = by_name.get("content-length")
        if refused is None and length is not None and int(length) > self.ctx.max_body:
            refused = GatewayError(413, "too_large", f"the body of {length} bytes is over the "
                                   f"limit of {self.ctx.max_body} (SHOAL_GATEWAY_MAX_BODY)")
        if refused is not None:
            announced = (length is not None and length != "0") \
                or "chunked" in by_name.get("transfer-encoding", "").lower()
            self._answered = True
            self._owe(refused, close=announced or not parser.should_keep_alive())
            if announced:
                raise _Stop
            return
        self.poke()  # Rule 7: an accepted call, cast or send (not /metrics, not a watch)
        if expect is not None:
            self._owe_bytes(_CONTINUE)

    def on_body(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.ctx.max_body:
            raise GatewayError(413, "too_large", f"the body is over the limit of "
                               f"{self.ctx.max_body} bytes (SHOAL_GATEWAY_MAX_BODY)")
        self._body.append(chunk)

    def on_message_complete(self) -> None:
        self._in_request = False
        self._done += 1
        keep = self.parser.should_keep_alive()
        if not self._answered:
            slot = _Slot()
            if not keep:
                slot.close = True
            slots = self.slots
            slots.append(slot)
            request, self._request = self._request, None
            assert request is not None
            body = self._body
            slot.task = self.loop.create_task(self._serve(
                slot, self._template, request, body[0] if len(body) == 1 else b"".join(body),
                "1.0" if self.parser.get_http_version() == "1.0" else "1.1"))
            if len(slots) >= MAX_PIPELINED:
                self._pause()
        if not keep:
            self._closing = True

    # -- answers ----------------------------------------------------------------

    async def _serve(self, slot: _Slot, template: str, request: Incoming, body: bytes,
                     version: str) -> None:
        ctx = self.ctx
        try:
            status, data, kind, headers = await HOT_ROUTES[template](ctx, request, body)
        except Exception as exc:
            status, data = ctx.failure(exc, "POST", template)
            kind, headers = JSON, None
        finally:
            slot.task = None
        requests, key = ctx.metrics.requests, (template, status)  # GatewayMetrics.count, inline
        requests[key] = requests.get(key, 0) + 1
        slot.data = answer_head(version, status, kind, len(data), headers, not slot.close) + data
        slots, transport = self.slots, self.transport
        if len(slots) == 1 and slots[0] is slot and not slot.close and transport is not None \
                and not transport.is_closing():  # _flush's common case, inline
            slots.popleft()
            transport.write(slot.data)
            self.poke()
            if self._handoff is not None:
                self._hand_off()
            elif self._read_paused:
                self._resume()
            return
        self._flush()

    def _version(self) -> str:
        return "1.0" if self.parser.get_http_version() == "1.0" else "1.1"

    def _owe(self, error: GatewayError, *, close: bool) -> None:
        """Answer ``error`` in its turn (Rule 3), counted like any answer."""
        status, data = self.ctx.failure(error, "POST", self._template)
        self.ctx.metrics.count(self._template, status)
        if close:
            self._closing = True
        self.slots.append(_slot(answer_head(self._version(), status, JSON, len(data), None,
                                            not close) + data, close))
        self._flush(poke=False)  # a refusal is not call traffic (Rule 7)

    def _owe_bytes(self, data: bytes) -> None:
        self.slots.append(_slot(data, False))
        self._flush()

    def _fail(self, error: GatewayError) -> None:
        """Rule 4 (and a body over the limit): answer in turn, then close."""
        if self._closing and error.status != 413:
            return
        status, data = self.ctx.failure(error, "", "")
        if status == 413 and self._in_request:
            self.ctx.metrics.count(self._template, status)
        self._in_request = False
        self._closing = True
        self.slots.append(_slot(answer_head("1.1", status, JSON, len(data), None, False) + data,
                                True))
        self._flush(poke=False)

    def _flush(self, *, poke: bool = True) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        slots, close = self.slots, False
        out: list[bytes] = []
        while slots and slots[0].data is not None:
            slot = slots.popleft()
            out.append(slot.data)  # type: ignore[arg-type]  # not None: tested above
            if slot.close:
                close = True
                break
        if out:
            transport.write(b"".join(out) if len(out) > 1 else out[0])
            if poke:
                self.poke()
        if close:
            slots.clear()
            transport.close()
        elif not slots and self._handoff is not None:
            self._hand_off()
        elif len(slots) < MAX_PIPELINED:
            self._resume()

    # -- flow, idleness, hand-off ----------------------------------------------

    def _pause(self) -> None:
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self._read_paused and not self._write_paused and self._handoff is None \
                and len(self.slots) < MAX_PIPELINED and self.transport is not None \
                and not self.transport.is_closing():
            self._read_paused = False
            self.transport.resume_reading()

    def _grow(self, size: int) -> None:
        self._head_size += size
        if self._head_size > MAX_HEAD:
            raise GatewayError(400, "bad_request", f"the request line and headers are over "
                               f"{MAX_HEAD} bytes")

    def _idle(self) -> None:
        quiet = self.loop.time() - self._last_read
        keepalive = self.front.keepalive
        if self.slots or quiet < keepalive:
            self._timer = self.loop.call_later(max(keepalive - quiet, 0.01), self._idle)
        elif self.transport is not None:
            self.transport.close()

    def _begin_handoff(self) -> None:
        self._handoff = self._raw[offset_after(self._raw, self._done):]
        self._raw = bytearray()
        self._pause()
        if not self.slots:
            self._hand_off()

    def _hand_off(self) -> None:
        transport, data = self.transport, bytes(self._handoff or b"")
        assert transport is not None
        self.front.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        protocol = self.front.fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if data:
            protocol.data_received(data)
        if self._read_paused:
            transport.resume_reading()


class Front:
    """Serves a node's HTTP endpoint (see the module header).

    Args:
        ctx: the node's gateway.
        fallback: makes the aiohttp protocol a connection is handed to (the
            runner's ``web.Server``).
        keepalive: Rule 4's bound, in seconds.
    """

    def __init__(self, ctx: GatewayContext, fallback: Callable[[], asyncio.Protocol], *,
                 keepalive: float = KEEPALIVE) -> None:
        self.ctx = ctx
        self.fallback = fallback
        self.keepalive = keepalive
        self.poke = ctx.node.busy_poll.poke  # the node's, for Rule 7
        # Invariant: the connections open and not handed to aiohttp; each
        # leaves when it closes or is handed off.
        self.connections: set[Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> int:
        """Listen; the port bound (the real one for port 0).

        Raises:
            OSError: the address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Connection(self), host, port,
                                                ssl=ssl_context, backlog=128)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and close the connections still here (Rule 5)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        await server.wait_closed()
