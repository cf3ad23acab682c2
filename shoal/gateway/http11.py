"""HTTP/1.1 pieces of the gateway's lean front (``front.py``): the request
it parses (:class:`Incoming`), which routes it serves (:func:`route_of`),
the head of its answers (:func:`answer_head`), and where a request starts
in bytes already parsed (:func:`offset_after`, the front's Rule 6).

Owns no state but the ``Date`` value of the current second. No IO.
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
from typing import Final

import httptools
from multidict import CIMultiDict
from yarl import URL

from shoal.gateway.bodies import JSON
from shoal.gateway.callers import HOT_ROUTES

__all__ = ["Incoming", "answer_head", "offset_after", "route_of"]

_SEGMENT: Final = r"([^/%{}\x00-\x20\x7f-\uffff]+)"
_HOT: Final = re.compile(rf"/v1/(call|cast|send)/{_SEGMENT}/{_SEGMENT}")


class _OctetStream(EmailMessage):
    def __init__(self) -> None:
        super().__init__()
        self.set_default_type("application/octet-stream")


_TYPES: Final = HeaderParser(_OctetStream, policy=email.policy.HTTP)


class Incoming:
    """A request parsed here, as the routes read one (``bodies.RequestLike``)."""

    __slots__ = ("headers", "match_info", "query_string", "remote")

    def __init__(self, headers: CIMultiDict[str], query_string: str,
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


def route_of(path: str) -> tuple[str, dict[str, str]] | None:
    match = _HOT.fullmatch(path)
    if match is None:
        return None
    verb, first, second = match.groups()
    if first == "pid":
        template, info = f"/v1/{verb}/pid/{{pid}}", {"pid": second}
    else:
        template, info = f"/v1/{verb}/{{scope}}/{{group}}", {"scope": first, "group": second}
    return (template, info) if template in HOT_ROUTES else None


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


def answer_head(version: str, status: int, kind: str, length: int,
          headers: dict[str, str] | None, connection: str | None) -> bytes:
    lines = [f"HTTP/{version} {status} {HTTPStatus(status).phrase}\r\nContent-Type: {kind}\r\n"
             f"Content-Length: {length}\r\n"]
    if headers:
        lines.extend(f"{name}: {value}\r\n" for name, value in headers.items())
    if connection is not None:
        lines.append(f"Connection: {connection}\r\n")
    return "".join(lines).encode() + b"Date: " + _Date.now() + b"\r\n\r\n"


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
