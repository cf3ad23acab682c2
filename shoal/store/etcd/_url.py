"""Configuration of :class:`shoal.store.etcd.EtcdStore`: endpoints, URL, TLS, auth.

What it owns: turning ``etcd://h1:p1,h2:p2?cluster=...&ca=...`` and the
constructor's arguments into checked endpoints and a
:class:`~shoal.store.etcd._client.ChannelConfig`, before any IO on the network.

Rules:

- Rule 1: an unknown or repeated URL option is an error, never ignored (a
  typo in ``ca=`` must not silently give a plaintext connection).
- Rule 2: TLS and auth are all-or-nothing per pair: ``cert`` needs ``key``,
  ``user`` needs ``password``. Files are read once, here, so a missing file
  fails at start-up rather than at the first reconnect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict
from urllib.parse import parse_qsl, unquote, urlsplit

from shoal.errors import BadArgument, ConfigError
from shoal.store.etcd._client import ChannelConfig

__all__ = ["DEFAULT_PORT", "UrlOptions", "channel_config", "check_endpoints", "parse_etcd_url"]

DEFAULT_PORT = 2379
"""etcd's client port, used when an endpoint names none."""


class UrlOptions(TypedDict, total=False):
    """Keyword arguments of ``EtcdStore`` that a URL can carry."""

    cluster: str
    timeout: float
    attempt_timeout: float
    watch_give_up: float
    ca: str
    cert: str
    key: str
    user: str
    password: str
    compaction_interval: float
    compaction_retention: float


_FLOAT_OPTIONS = ("timeout", "attempt_timeout", "watch_give_up")
_SECONDS_OR_ZERO = ("compaction_interval", "compaction_retention")
_STR_OPTIONS = ("cluster", "ca", "cert", "key", "user", "password")


def _check_endpoint(text: str) -> str:
    endpoint = text.strip()
    if endpoint.startswith("["):  # IPv6 literal: [::1]:2379
        host, _, rest = endpoint[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        host = f"[{host}]"
    else:
        host, _, port_text = endpoint.rpartition(":") if ":" in endpoint else (endpoint, "", "")
    if not host or host == "[]":
        raise BadArgument("endpoints", text, "host:port")
    if not port_text:
        return f"{host}:{DEFAULT_PORT}"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadArgument("endpoints", text, "host:port with a port in 1..65535")
    return f"{host}:{int(port_text)}"


def check_endpoints(endpoints: str | Sequence[str]) -> tuple[str, ...]:
    """Normalise endpoints to ``host:port`` strings.

    Args:
        endpoints: one ``"host[:port]"``, several separated by commas, or a
            sequence of them.

    Returns:
        The endpoints, in order, duplicates removed, port defaulting to 2379.

    Raises:
        BadArgument: (argument ``endpoints``) none given, or one is malformed.
    """
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    if not items or not all(isinstance(item, str) and item.strip() for item in items):
        raise BadArgument("endpoints", endpoints, "one or more 'host:port' strings")
    return tuple(dict.fromkeys(_check_endpoint(item) for item in items))


def _read(option: str, path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"etcd {option} file {path!r} cannot be read: {error}") from error


def channel_config(
    ca: str | None, cert: str | None, key: str | None, user: str | None, password: str | None
) -> ChannelConfig:
    """Check TLS and auth options and read the TLS files.

    Args:
        ca: PEM file of the CA that signed the etcd servers' certificates.
        cert, key: PEM files of a client certificate and its private key.
        user, password: etcd user credentials.

    Returns:
        The configuration every endpoint connection is dialled with.

    Raises:
        ConfigError: only one of ``cert``/``key`` or ``user``/``password`` is
            given, or a file cannot be read.
    """
    if (cert is None) != (key is None):
        raise ConfigError("etcd TLS client authentication needs both cert and key")
    if (user is None) != (password is None):
        raise ConfigError("etcd authentication needs both user and password")
    return ChannelConfig(
        ca=_read("ca", ca),
        cert=_read("cert", cert),
        key=_read("key", key),
        user=user,
        password=password,
    )


def parse_etcd_url(url: str) -> tuple[tuple[str, ...], UrlOptions]:
    """Split an ``etcd://`` URL into endpoints and constructor options.

    Args:
        url: ``etcd://h1:p1[,h2:p2...][/][?option=value&...]`` with options
            ``cluster``, ``timeout``, ``attempt_timeout``, ``watch_give_up``,
            ``ca``, ``cert``, ``key``, ``user``, ``password`` (percent-encoded),
            ``compaction_interval``, ``compaction_retention`` (seconds >= 0).

    Returns:
        The endpoints and the options for ``EtcdStore``.

    Raises:
        ConfigError: the scheme is not ``etcd``, no endpoint is given, an
            option is unknown, repeated or has a bad value.
    """
    if not isinstance(url, str):
        raise ConfigError(f"etcd store URL must be a str, not {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme != "etcd":
        raise ConfigError(f"not an etcd store URL (expected etcd://host:port): {url!r}")
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigError(f"etcd store URL takes no path or fragment: {url!r}")
    try:
        endpoints = check_endpoints(unquote(parts.netloc))
    except BadArgument as error:
        raise ConfigError(f"bad endpoints in etcd store URL {url!r}: {error}") from error
    options: UrlOptions = {}
    seen: set[str] = set()
    for name, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if name in seen:
            raise ConfigError(f"etcd store URL repeats option {name!r}")
        seen.add(name)
        if name in _FLOAT_OPTIONS or name in _SECONDS_OR_ZERO:
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            least, expected = (-1.0, ">= 0") if name in _SECONDS_OR_ZERO else (0.0, "> 0")
            if not math.isfinite(number) or number <= least:
                raise ConfigError(
                    f"etcd store URL option {name}={value!r}: expected seconds {expected}")
            options[name] = number  # type: ignore[literal-required]  # name is one of _FLOAT_OPTIONS
        elif name in _STR_OPTIONS:
            if not value:
                raise ConfigError(f"etcd store URL option {name!r} is empty")
            options[name] = value  # type: ignore[literal-required]  # name is one of _STR_OPTIONS
        else:
            known = ", ".join((*_STR_OPTIONS, *_FLOAT_OPTIONS, *_SECONDS_OR_ZERO))
            raise ConfigError(f"unknown etcd store URL option {name!r} (known: {known})")
    return endpoints, options
