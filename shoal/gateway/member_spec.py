"""A member registration's fields, checked (``docs/gateway.md`` section 5).

Pure: no IO. :func:`parse_spec` turns the decoded body of
``POST /v1/members`` into a :class:`MemberSpec` or refuses it with
``400 bad_request`` naming the first bad field; unknown fields are refused
too (a misspelt ``"ttl"`` would otherwise register a stream member that
lives only as long as a request the client does not keep open).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from shoal.errors import BadArgument
from shoal.gateway.errors import GatewayError
from shoal.runtime.checks import check_group, check_name

__all__ = ["DEFAULT_CONCURRENCY", "FIELDS", "MAX_CONCURRENCY", "MAX_TTL", "MIN_TTL",
           "MemberSpec", "parse_spec"]

DEFAULT_CONCURRENCY: Final = 8
MAX_CONCURRENCY: Final = 1000
MIN_TTL: Final = 1.0
MAX_TTL: Final = 300.0
MAX_URL: Final = 2048
MAX_TOKEN: Final = 4096
FORMATS: Final = ("json", "msgpack")
FIELDS: Final = frozenset({"scope", "group", "callback_url", "concurrency", "name", "ttl",
                           "format", "callback_token"})


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberSpec:
    """One registration, as checked."""

    scope: str
    group: str
    callback_url: str
    concurrency: int = DEFAULT_CONCURRENCY
    name: str | None = None
    ttl: float | None = None
    format: str = "json"
    callback_token: str | None = None


def _bad(field: str, value: Any, expected: str) -> GatewayError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return GatewayError(400, "bad_request", f"{field}: expected {expected}, got {shown}", True)


def _number(value: Any) -> bool:
    return type(value) in (int, float)


def parse_spec(body: Any) -> MemberSpec:
    """The registration ``body`` (a decoded JSON object) as a :class:`MemberSpec`.

    Raises:
        GatewayError: ``400 bad_request`` naming the first bad field.
    """
    if not isinstance(body, dict):
        raise _bad("body", body, 'an object such as {"group": "g", "callback_url": '
                                 '"http://127.0.0.1:9000/shoal"}')
    unknown = sorted(str(key) for key in body if key not in FIELDS)
    if unknown:
        raise GatewayError(400, "bad_request", f"{unknown[0]}: not a registration field "
                           f"(fields: {', '.join(sorted(FIELDS))})", True)
    scope = body.get("scope", "default")
    if scope is None:
        scope = "default"
    try:
        check_name("scope", scope)
    except BadArgument:
        raise _bad("scope", scope, "a non-empty str of at most 255 chars, without '/'") from None
    try:
        group = check_group(body.get("group"))
    except BadArgument:
        raise _bad("group", body.get("group"), "a non-empty str of at most 1024 chars") from None
    url = _callback_url(body.get("callback_url"))
    concurrency = body.get("concurrency", DEFAULT_CONCURRENCY)
    if concurrency is None:
        concurrency = DEFAULT_CONCURRENCY
    if type(concurrency) is not int or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise _bad("concurrency", concurrency, f"an integer from 1 to {MAX_CONCURRENCY}")
    name = body.get("name")
    if name is not None:
        try:
            check_name("name", name)
        except BadArgument:
            raise _bad("name", name, "null or a non-empty str of at most 255 chars, "
                                     "without '/'") from None
    ttl = body.get("ttl")
    if ttl is not None and (not _number(ttl) or not MIN_TTL <= ttl <= MAX_TTL):
        raise _bad("ttl", ttl, f"null (a stream registration) or seconds from {MIN_TTL:g} "
                               f"to {MAX_TTL:g}")
    fmt = body.get("format", "json")
    if fmt is None:
        fmt = "json"
    if fmt not in FORMATS:
        raise _bad("format", fmt, '"json" or "msgpack"')
    token = body.get("callback_token")
    if token is not None and (
            type(token) is not str or not 0 < len(token) <= MAX_TOKEN
            or not all(33 <= ord(c) <= 126 for c in token)):
        raise _bad("callback_token", "<hidden>", f"null or 1 to {MAX_TOKEN} printable ASCII "
                                                 "chars without spaces")
    return MemberSpec(scope=scope, group=group, callback_url=url, concurrency=concurrency,
                      name=name, ttl=None if ttl is None else float(ttl), format=fmt,
                      callback_token=token)


def _callback_url(url: Any) -> str:
    expected = "an http:// or https:// URL with a host, e.g. 'http://127.0.0.1:9000/shoal'"
    if type(url) is not str or not url or len(url) > MAX_URL \
            or any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise _bad("callback_url", url, expected)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port out of range
    except ValueError:
        raise _bad("callback_url", url, expected) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise _bad("callback_url", url, expected)
    del port
    return url
