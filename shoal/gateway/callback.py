"""The gateway's HTTP client side: POSTs to members' callback URLs
(``docs/gateway.md`` section 5, "The callback").

Owns: one aiohttp ``ClientSession`` per gateway (:class:`CallbackClient`),
shared by every member proxy of that gateway, made on first use and closed
with the gateway.

Rules:

- Rule 1 (answers): ``200`` is the reply (its body decoded in the
  registration's format; an empty body is ``null``); ``422`` is a
  rejection (``BadRequest``, the message from ``{"error": {"message"}}``,
  an error body being JSON whatever the registration's format);
  any other status, a body that does not parse, or a body over the
  gateway's body limit is a crash of the handler (``CallError``, its
  ``remote_type`` from ``{"error": {"type"}}`` when given, else
  :data:`CALLBACK_ERROR`).
- Rule 2 (not started): when no connection to the callback can be made
  (refused, unreachable, no such host, TLS refused), nothing was sent:
  :class:`Unreachable`. The member is gone; the proxy exits on it.
- Rule 3 (delivery unknown): a connection that breaks once the request
  headers were sent may have run the handler: ``ProcessExited`` (a group
  call retries it elsewhere only when it is ``idempotent``). A request
  abandoned (cancelled) before its headers were sent never started
  (:meth:`Exchange.sent` tells which).
- Rule 4 (deadline): the caller bounds each exchange (``asyncio.timeout``);
  this module waits on nothing unbounded itself.
- Bounds: the pool holds at most :data:`MAX_CONNECTIONS` connections
  (requests beyond wait for one, within their deadline) and closes
  connections idle for :data:`KEEPALIVE` seconds, shorter than the usual
  servers' own idle timeouts (Node.js: 5 s), so a pooled connection is
  rarely one the server is closing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

import aiohttp

from shoal.errors import BadArgument, BadRequest, CallError, ShoalError
from shoal.gateway.bodies import JSON, MSGPACK, decode, encode
from shoal.gateway.errors import GatewayError

if TYPE_CHECKING:
    from shoal.pid import Pid

__all__ = ["CALLBACK_ERROR", "KEEPALIVE", "MAX_CONNECTIONS", "CallbackClient", "Exchange",
           "Unreachable", "answer_of", "encode_request"]

CALLBACK_ERROR: Final = "shoal.gateway.CallbackError"
"""The ``remote_type`` of a crash whose callback named no exception type."""
MAX_CONNECTIONS: Final = 1024
"""Connections one gateway holds open to callbacks at most, over all members."""
KEEPALIVE: Final = 4.0
"""Seconds an idle pooled connection to a callback is kept."""
FORMATS: Final = {"json": JSON, "msgpack": MSGPACK}
"""A registration's ``format`` and the content type it sends and expects."""


class Unreachable(ShoalError):
    """No connection to a member's callback could be made: nothing was sent (Rule 2)."""

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        self.detail = detail
        super().__init__(f"callback {url} cannot be reached: {detail}")


class Exchange:
    """One request to a callback; whether its headers went out (Rule 3)."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False


async def _headers_sent(_session: aiohttp.ClientSession, context: Any, _params: Any) -> None:
    exchange = context.trace_request_ctx
    if isinstance(exchange, Exchange):
        exchange.sent = True


class CallbackClient:
    """The HTTP client of one gateway's member proxies (see the module header).

    Args:
        max_body: the largest answer body read, in bytes (the gateway's
            request body limit); a larger one is a crash (Rule 1).
    """

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            trace = aiohttp.TraceConfig()
            trace.on_request_headers_sent.append(_headers_sent)
            connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE)
            # No timeout of its own (Rule 4), and no compressed answers: the
            # body limit counts the bytes as sent (no decompression bomb).
            session = aiohttp.ClientSession(connector=connector, trace_configs=[trace],
                                            timeout=aiohttp.ClientTimeout(total=None),
                                            auto_decompress=False,
                                            headers={"Accept-Encoding": "identity"})
            self._session = session
        return session

    async def close(self) -> None:
        """Close every connection (the gateway stops)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def post(self, url: str, body: bytes, headers: dict[str, str],
                   exchange: Exchange) -> tuple[int, bytes, bool]:
        """POST ``body`` to ``url``: the status, the answer's body and
        whether it was over ``max_body`` bytes (then it is not read further,
        and empty).

        Raises:
            Unreachable: no connection could be made (Rule 2).
            aiohttp.ClientError: the connection broke after that (Rule 3).
        """
        session = self._open()
        try:
            async with session.post(url, data=body, headers=headers,
                                    trace_request_ctx=exchange) as answer:
                limit = self.max_body
                length = answer.content_length
                if length is not None and length > limit:
                    return answer.status, b"", True  # read no further
                chunks: list[bytes] = []
                size = 0
                while chunk := await answer.content.read(65536):
                    size += len(chunk)
                    if size > limit:
                        return answer.status, b"", True
                    chunks.append(chunk)
                return answer.status, b"".join(chunks), False
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(url, str(exc.os_error) or type(exc).__name__) from None


def encode_request(term: Any, fmt: str) -> bytes:
    """A request as the body sent to a callback, ``fmt`` a content type of
    :data:`FORMATS`.

    Raises:
        BadRequest: the request has no form in that format (a NaN in JSON,
            say): nothing was sent, and no member could take it either.
    """
    try:
        return encode(term, fmt)[0]
    except (GatewayError, BadArgument, ValueError) as exc:
        raise BadRequest(term, f"the request cannot be sent to a member's callback as "
                               f"{fmt}: {exc}") from None


def answer_of(member: Pid, status: int, data: bytes, cut: bool, fmt: str) -> Any:
    """Rule 1: what a callback's answer means for the caller (``fmt``: the
    content type of the registration's format).

    Returns:
        The reply, for ``200``.

    Raises:
        BadRequest: ``422``.
        CallError: anything else.
    """
    if status == 200 and not cut:
        try:
            return decode(data, fmt)
        except BadArgument as exc:
            raise CallError(member, CALLBACK_ERROR,
                            f"the callback's answer does not parse: {exc}") from None
    error = _error_object(data)
    message = error.get("message")
    if status == 422:
        raise BadRequest(None, str(message) if message is not None
                         else "rejected by the member's callback")
    if cut:
        raise CallError(member, CALLBACK_ERROR, f"the callback answered {status} with a body "
                        "over the gateway's body limit (SHOAL_GATEWAY_MAX_BODY)")
    kind = error.get("type")
    text = str(message) if message is not None else (
        f"the callback answered HTTP {status}" + (f": {_excerpt(data)}" if data else ""))
    trace = error.get("traceback")
    raise CallError(member, kind if isinstance(kind, str) and kind else CALLBACK_ERROR, text,
                    trace if isinstance(trace, str) else "")


def _error_object(data: bytes) -> dict[str, Any]:
    """The ``{"error": {...}}`` object of an error answer, or ``{}``."""
    try:
        value = json.loads(data) if data else None
    except (ValueError, RecursionError):
        return {}
    error = value.get("error") if isinstance(value, dict) else None
    return error if isinstance(error, dict) else {}


def _excerpt(data: bytes, limit: int = 200) -> str:
    text = data[:limit].decode("utf-8", "replace").strip()
    return text + ("..." if len(data) > limit else "")
