"""HTTP/1.1 pieces of the gateway's lean front (``front.py``): the request
it parses (:class:`Incoming`), which routes it serves (:func:`route_of`),
the head of its answers (:func:`answer_head`), and where a request starts
in bytes already parsed (:func:`offset_after`, the front's Rule 6).

Owns no state but the ``Date`` value of the current second and the start of
each answer head by version, status and type (a bounded set). No IO.
"""

from __future__ import annotations

import contextlib
import email.policy
import re
import time
from collections.abc import Iterator, Mapping
from email.message import EmailMessage
from email.parser import HeaderParser
from email.utils import formatdate
from http import HTTPStatus
from typing import Final, TypeVar, overload

import httptools
from yarl import URL

from shoal.gateway.bodies import JSON
from shoal.gateway.callers import HOT_ROUTES

__all__ = ["Headers", "Incoming", "answer_head", "offset_after", "route_of"]

_T = TypeVar("_T")
_SEGMENT: Final = r"([^/%{}\x00-\x20\x7f-\uffff]+)"
_HOT: Final = re.compile(rf"/v1/(call|cast|send)/{_SEGMENT}/{_SEGMENT}")


class _OctetStream(EmailMessage):
    def __init__(self) -> None:
        super().__init__()
        self.set_default_type("application/octet-stream")


_TYPES: Final = HeaderParser(_OctetStream, policy=email.policy.HTTP)


class Headers(Mapping[str, str]):
    """A request's headers, read case-insensitively: ``by_name`` maps each
    lower-cased name to its first value, as ``CIMultiDict.get`` reads them
    (a multidict costs more to build than the whole of this one)."""

    __slots__ = ("by_name",)

    def __init__(self, by_name: dict[str, str]) -> None:
        self.by_name = by_name

    def __getitem__(self, name: str) -> str:
        return self.by_name[name.lower()]

    @overload
    def get(self, name: str, /) -> str | None: ...

    @overload
    def get(self, name: str, default: str | _T, /) -> str | _T: ...

    def get(self, name: str, default: object = None, /) -> object:
        return self.by_name.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self.by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self.by_name)

    def __len__(self) -> int:
        return len(self.by_name)


class Incoming:
    """A request parsed here, as the routes read one (``bodies.RequestLike``)."""

    __slots__ = ("headers", "match_info", "query_string", "remote")

    def __init__(self, headers: Headers, query_string: str,
                 match_info: dict[str, str], remote: str | None) -> None:
        self.headers = headers
        self.query_string = query_string
        self.match_info = match_info
        self.remote = remote

    @property
    def query(self) -> Mapping[str, str]:
        """The query parameters, parsed as aiohttp parses them (yarl)."""
        return URL.build(query_string=self.query_string, encoded=True).query

    @property
    def content_type(self) -> str:
        """The media type of ``Content-Type``, as aiohttp reads it."""
        raw = self.headers.get("Content-Type")
        if raw is None:
            return "application/octet-stream"
        if raw == JSON:
            return raw
        return _TYPES.parsestr(f"Content-Type: {raw}").get_content_type()


_TEMPLATES: Final = {
    (verb, pid): template
    for verb in ("call", "cast", "send") for pid in (True, False)
    if (template := f"/v1/{verb}/pid/{{pid}}" if pid else f"/v1/{verb}/{{scope}}/{{group}}")
    in HOT_ROUTES}
"""The hot routes' templates by verb and whether the path names a pid."""


def route_of(path: str) -> tuple[str, dict[str, str]] | None:
    match = _HOT.fullmatch(path)
    if match is None:
        return None
    verb, first, second = match.groups()
    pid = first == "pid"
    template = _TEMPLATES.get((verb, pid))
    if template is None:
        return None
    return template, {"pid": second} if pid else {"scope": first, "group": second}


class _Date:
    """The ``Date`` header's value, formatted once a second."""

    second = 0
    value = b""

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if cls.second != second:
            cls.second, cls.value = second, formatdate(second, usegmt=True).encode()
        return cls.value


_STARTS: dict[tuple[str, int, str], bytes] = {}
"""Each answer head's start (status line, Content-Type, the name of
Content-Length) by version, status and content type: a bounded set (two
versions, the statuses of ``errors.STATUS_OF_KIND`` plus 100-202, two types)."""
_CONNECTION: Final = {None: b"", "close": b"Connection: close\r\n",
                      "keep-alive": b"Connection: keep-alive\r\n"}


def answer_head(version: str, status: int, kind: str, length: int,
                headers: dict[str, str] | None, connection: str | None) -> bytes:
    start = _STARTS.get((version, status, kind))
    if start is None:
        start = _STARTS[version, status, kind] = (
            f"HTTP/{version} {status} {HTTPStatus(status).phrase}\r\nContent-Type: {kind}\r\n"
            "Content-Length: ").encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode() \
        if headers else b""
    return b"%s%d\r\n%s%sDate: %s\r\n\r\n" % (start, length, extra, _CONNECTION[connection],
                                                 _Date.now())


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
