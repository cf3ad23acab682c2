"""HTTP/1.1 pieces of the gateway's lean front (``front.py``): the request
it parses (:class:`Incoming`), which routes it serves (:func:`route_of`),
the head of its answers (:func:`answer_head`), and where a request starts
in bytes already parsed (:func:`offset_after`, the front's Rule 6).

Owns no state but the ``Date`` value of the current second, the start of
each answer head by version, status and type (a bounded set), and the
route of the last request targets seen (at most :data:`MAX_TARGETS`,
forgotten all at once when full). No IO.
"""

from __future__ import annotations

import contextlib
import email.policy
import re
import time
from collections.abc import Mapping
from email.message import EmailMessage
from email.parser import HeaderParser
from email.utils import formatdate
from http import HTTPStatus
from typing import Final, NamedTuple

import httptools
from yarl import URL

from shoal.gateway.bodies import JSON
from shoal.gateway.callers import HOT_ROUTES

__all__ = ["HEADERS_READ", "MAX_TARGETS", "Headers", "Incoming", "answer_head", "incoming",
           "offset_after", "route_of"]

_SEGMENT: Final = r"([^/%{}\x00-\x20\x7f-\uffff]+)"
_HOT: Final = re.compile(rf"/v1/(call|cast|send)/{_SEGMENT}/{_SEGMENT}")


class _OctetStream(EmailMessage):
    def __init__(self) -> None:
        super().__init__()
        self.set_default_type("application/octet-stream")


_TYPES: Final = HeaderParser(_OctetStream, policy=email.policy.HTTP)


HEADERS_READ: Final = frozenset({
    "accept", "authorization", "content-length", "content-type", "expect", "transfer-encoding",
    "shoal-timeout", "shoal-strategy", "shoal-key", "shoal-idempotent"})
"""The request headers the front and the hot routes read: the front keeps
only these (decoding the others' values would be work for nothing). A route
that reads another header must name it here
(``test_the_front_keeps_every_header_the_routes_read``)."""


class Headers(dict[str, str]):
    """A request's headers of :data:`HEADERS_READ`: each lower-cased name
    to its first value, as ``CIMultiDict.get`` reads them. Read them by
    lower-case name (the gateway's routes do, which aiohttp's
    case-insensitive headers read alike): a plain dict, so a look-up is one
    C call."""

    __slots__ = ()


class Incoming(NamedTuple):
    """A request parsed here, as the routes read one (``bodies.RequestLike``).
    Built with ``tuple.__new__`` (:func:`incoming`): no Python frame."""

    headers: Headers
    query_string: str
    match_info: Mapping[str, str]
    remote: str | None

    @property
    def query(self) -> Mapping[str, str]:
        """The query parameters, parsed as aiohttp parses them (yarl)."""
        return URL.build(query_string=self.query_string, encoded=True).query

    @property
    def content_type(self) -> str:
        """The media type of ``Content-Type``, as aiohttp reads it."""
        raw = self.headers.get("content-type")
        if raw is None:
            return "application/octet-stream"
        if raw == JSON:
            return raw
        return _TYPES.parsestr(f"Content-Type: {raw}").get_content_type()


def incoming(fields: tuple[Headers, str, Mapping[str, str], str | None]) -> Incoming:
    """An :class:`Incoming` of its four fields, in order."""
    return tuple.__new__(Incoming, fields)


_TEMPLATES: Final = {
    (verb, pid): template
    for verb in ("call", "cast", "send") for pid in (True, False)
    if (template := f"/v1/{verb}/pid/{{pid}}" if pid else f"/v1/{verb}/{{scope}}/{{group}}")
    in HOT_ROUTES}
"""The hot routes' templates by verb and whether the path names a pid."""


MAX_TARGETS: Final = 256
"""Most request targets whose route :func:`route_of` keeps (then it forgets them all)."""
ROUTE_CACHE: dict[bytes, tuple[str, Mapping[str, str], str] | None] = {}
""":func:`route_of`'s answers by request target: at most ``MAX_TARGETS``."""


def route_of(target: bytes) -> tuple[str, Mapping[str, str], str] | None:
    """The hot route a request target names: its template, the path's
    parameters (shared between requests: read only) and the query string;
    None for a path the front does not serve."""
    try:
        return ROUTE_CACHE[target]
    except KeyError:
        pass
    path, _, query = target.partition(b"?")
    match = _HOT.fullmatch(path.decode("latin-1"))
    found: tuple[str, Mapping[str, str], str] | None = None
    if match is not None:
        verb, first, second = match.groups()
        pid = first == "pid"
        template = _TEMPLATES.get((verb, pid))
        if template is not None:
            found = (template, {"pid": second} if pid else {"scope": first, "group": second},
                     query.partition(b"#")[0].decode("utf-8", "surrogateescape"))
    if len(ROUTE_CACHE) >= MAX_TARGETS:
        ROUTE_CACHE.clear()
    ROUTE_CACHE[target] = found
    return found


class _Date:
    """The ``Date`` header's value of the current second (set by :func:`answer_head`)."""

    second = 0
    value = b""


_STARTS: dict[tuple[str, int, str], bytes] = {}
"""Each answer head's start (status line, Content-Type, the name of
Content-Length) by version, status and content type: a bounded set (two
versions, the statuses of ``errors.STATUS_OF_KIND`` plus 100-202, two types)."""


def answer_head(version: str, status: int, kind: str, length: int,
                headers: dict[str, str] | None, keep: bool) -> bytes:
    """An answer's head; ``keep``: the connection stays open after it."""
    start = _STARTS.get((version, status, kind))
    if start is None:
        start = _STARTS[version, status, kind] = (
            f"HTTP/{version} {status} {HTTPStatus(status).phrase}\r\nContent-Type: {kind}\r\n"
            "Content-Length: ").encode()
    extra = b""
    if headers:
        for name, value in headers.items():
            extra += f"{name}: {value}\r\n".encode()
    connection = b"Connection: close\r\n" if not keep else \
        b"Connection: keep-alive\r\n" if version == "1.0" else b""
    second = int(time.time())
    if _Date.second != second:
        _Date.second, _Date.value = second, formatdate(second, usegmt=True).encode()
    return b"%s%d\r\n%s%sDate: %s\r\n\r\n" % (start, length, extra, connection, _Date.value)


class _Counter:
    def __init__(self) -> None:
        self.done = 0

    def on_message_complete(self) -> None:
        self.done += 1


def _completed(data: bytes | bytearray) -> int:
    counter = _Counter()
    with contextlib.suppress(httptools.HttpParserError, httptools.HttpParserUpgrade):
        httptools.HttpRequestParser(counter).feed_data(data)
    return counter.done


def offset_after(raw: bytearray, requests: int) -> int:
    """Rule 6: where the request after the first ``requests`` ones of ``raw`` starts."""
    if requests == 0:
        return 0
    low, high = 0, len(raw)  # invariant: _completed(raw[:low]) < requests <= ...(raw[:high])
    while high - low > 1:
        middle = (low + high) // 2
        if _completed(raw[:middle]) >= requests:
            high = middle
        else:
            low = middle
    return high
