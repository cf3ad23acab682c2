"""Request and reply bodies: JSON (the mapping of ``jsonmap.py``) or msgpack
(exact types, one value as on the wire) (``docs/gateway.md`` section 2).

Owns no state. Rules:

- Rule 1: a request's format is its ``Content-Type``: ``application/json``
  (also when absent) or ``application/msgpack``; anything else is ``415``.
  An empty body is ``null``.
- Rule 2: a reply uses the request's format unless ``Accept`` names the
  other one and not the request's; a reply JSON cannot hold (NaN, an
  infinity) goes as msgpack when ``Accept`` lists msgpack, else fails
  ``502 unencodable``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from json.scanner import c_make_scanner  # type: ignore[attr-defined]
from typing import Any, Final, NamedTuple, Protocol

from aiohttp import web

from shoal.errors import BadArgument, ProtocolError
from shoal.gateway.errors import GatewayError
from shoal.gateway.jsonmap import from_json, to_json
from shoal.wire import pack_term, unpack_term

__all__ = ["JSON", "MSGPACK", "Answer", "RequestLike", "answer", "body_term", "decode",
           "encode", "reply_format", "request_format", "respond"]

JSON: Final = "application/json"
MSGPACK: Final = "application/msgpack"
_MSGPACK_ALIASES: Final = frozenset({MSGPACK, "application/x-msgpack", "application/vnd.msgpack"})
_JSON_ENCODER: Final = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
"""One encoder for every reply (``json.dumps`` with options builds one per call)."""
_C_ENCODE: Final = None if c_make_encoder is None else c_make_encoder(
    None, _JSON_ENCODER.default, encode_basestring_ascii, None, ":", ",", False, False, False)
"""``_JSON_ENCODER``'s C encoder, built once (``JSONEncoder.encode`` builds one per
value). It keeps no record of the containers it is in (``markers``): what
``to_json`` returns is a tree of new containers, so it holds no cycle."""
_C_SCAN: Final = None if c_make_scanner is None else c_make_scanner(json.JSONDecoder())
"""``json.loads``'s C scanner, called directly for a body that is one JSON
value from its first byte to its last (``json.loads`` reads any other)."""


class RequestLike(Protocol):
    """A request as the gateway's routes read it: an aiohttp request, or one
    parsed by the lean front (``front.py``)."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def query_string(self) -> str: ...

    @property
    def query(self) -> Mapping[str, str]: ...

    @property
    def match_info(self) -> Mapping[str, str]: ...

    @property
    def remote(self) -> str | None: ...

    @property
    def content_type(self) -> str: ...


class Answer(NamedTuple):
    """An answer, ready to write: its status, body, content type and other headers."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] | None = None


def _answer(fields: tuple[int, bytes, str, dict[str, str] | None]) -> Answer:
    """An :class:`Answer` of its four fields, without ``__new__``'s Python frame."""
    return tuple.__new__(Answer, fields)


_SCALARS: Final = frozenset({type(None), bool, int, str})
"""The types ``to_json`` and ``from_json`` return as they are."""
_NO_VALUE: Final = object()


def request_format(request: RequestLike) -> str:
    """Rule 1: the request body's format.

    Raises:
        GatewayError: ``415`` for a type that is neither.
    """
    kind = request.content_type  # aiohttp: application/octet-stream when absent
    if kind == JSON or ("content-type" not in request.headers):
        return JSON
    if kind in _MSGPACK_ALIASES:
        return MSGPACK
    if kind.endswith("+json"):
        return JSON
    raise GatewayError(415, "unsupported_media_type", f"Content-Type {kind!r}: send "
                       f"{JSON} or {MSGPACK}", True)


def reply_format(request: RequestLike, given: str) -> str:
    """Rule 2: the format to answer in, ``given`` the request's."""
    return _reply_format(request.headers.get("accept"), given)


def _reply_format(accept: str | None, given: str) -> str:
    if not accept:
        return given
    other = MSGPACK if given == JSON else JSON
    names_given = given in accept or (given == MSGPACK and "msgpack" in accept)
    names_other = other in accept or (other == MSGPACK and "msgpack" in accept)
    return other if names_other and not names_given else given


def body_term(request: RequestLike, data: bytes) -> tuple[Any, str]:
    """A request's body as a term, and its format (Rule 1).

    Raises:
        GatewayError: ``415`` for a type that is neither.
        BadArgument: as :func:`decode`.
    """
    fmt = JSON if request.headers.get("content-type") == JSON else request_format(request)
    return decode(data, fmt), fmt


def decode(data: bytes, fmt: str) -> Any:
    """A body as a term.

    Raises:
        BadArgument: malformed JSON or msgpack, or a bad typed value.
    """
    if not data:
        return None
    if fmt == MSGPACK:
        try:
            return unpack_term(data, max_size=len(data))
        except ProtocolError as exc:
            raise BadArgument("body", "...", f"one msgpack value ({exc})") from None
    try:
        text = data.decode()
        value: Any = _NO_VALUE
        if _C_SCAN is not None:
            try:
                value, end = _C_SCAN(text, 0)
            except StopIteration:  # not a value at 0 (whitespace first, or none): loads says
                pass
            else:
                if end != len(text):  # trailing whitespace or more: loads says
                    value = _NO_VALUE
        if value is _NO_VALUE:
            value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadArgument("body", "...", f"JSON ({exc})") from None
    return value if type(value) in _SCALARS else from_json(value)


def encode(term: Any, fmt: str, *, msgpack_ok: bool = False) -> tuple[bytes, str]:
    """A term as a body: the bytes and their content type (Rule 2).

    Raises:
        GatewayError: ``502 unencodable``.
        BadArgument: the term is not one msgpack can hold (for msgpack).
    """
    if fmt == JSON:
        try:
            value = to_json(term)
            text = _JSON_ENCODER.encode(value) if _C_ENCODE is None \
                else "".join(_C_ENCODE(value, 0))
            return text.encode(), JSON
        except (GatewayError, ValueError):
            if not msgpack_ok:
                raise
    try:
        return pack_term(term, argument="reply"), MSGPACK
    except BadArgument as exc:
        raise GatewayError(502, "unencodable", str(exc), False) from None


def answer(request: RequestLike, term: Any, fmt: str, *, status: int = 200,
           headers: dict[str, str] | None = None) -> Answer:
    """The answer carrying ``term`` in the format the client asked for."""
    accept = request.headers.get("accept")
    if (accept is None or accept == "*/*") and fmt == JSON and type(term) in _SCALARS \
            and _C_ENCODE is not None:
        # The common case of encode, inline: a JSON scalar to a client that
        # accepts anything (to_json returns it unchanged).
        return _answer((status, "".join(_C_ENCODE(term, 0)).encode(), JSON, headers))
    out = _reply_format(accept, fmt)
    msgpack_ok = out == MSGPACK or (accept is not None and "msgpack" in accept)
    body, kind = encode(term, out, msgpack_ok=msgpack_ok)
    return _answer((status, body, kind, headers))


def respond(request: RequestLike, term: Any, fmt: str, *, status: int = 200,
            headers: dict[str, str] | None = None) -> web.Response:
    """:func:`answer` as an aiohttp response."""
    return to_response(answer(request, term, fmt, status=status, headers=headers))


def to_response(out: Answer) -> web.Response:
    """An :class:`Answer` as an aiohttp response."""
    return web.Response(status=out.status, body=out.body, headers=out.headers,
                        content_type=out.content_type)
