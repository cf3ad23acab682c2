"""Argument checks shared by every store adapter.

This module owns the caller-facing validation of the Store/Session API, so
that every adapter rejects the same inputs with the same
:class:`~shoal.errors.BadArgument` (same ``argument`` name) before it does
any IO. The contract suite checks these names; an adapter that validates by
hand drifts.

Rules:

- Rule 1: a session name is a non-empty ``str`` of at most 255 characters
  without ``/`` (it becomes the last part of the key ``nodes/<name>``).
- Rule 2: a TTL is a finite, positive ``int`` or ``float`` (not ``bool``).
- Rule 3: keys are non-empty ``str`` encodable as UTF-8 (etcd keys are
  bytes, SQLite text is UTF-8); values and session info are ``bytes``.
- Rule 4: one batch names each key at most once (etcd refuses duplicate keys
  in one transaction, so no adapter may give them a meaning).
- Rule 5: prefixes are ``str`` (possibly empty); revisions are ``int >= 0``.
- Rule 6: a record kind is a non-empty printable ``str`` without ``/`` of
  at most 64 characters; a record value is ``bytes`` of at most
  ``RECORD_MAX_BYTES``; ``keep`` and ``limit`` are ``int >= 1``.

Everything here is pure: no IO, no asyncio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from shoal.errors import BadArgument
from shoal.pid import MAX_NAME_LENGTH
from shoal.store.base import RECORD_MAX_BYTES, Create, Delete, Op, Put

__all__ = [
    "NODES_PREFIX",
    "check_count",
    "check_info",
    "check_name",
    "check_ops",
    "check_prefix",
    "check_record",
    "check_revision",
    "check_ttl",
    "node_key",
]

NODES_PREFIX = "nodes/"
"""Prefix of the key under which every session stores its ``info``."""


def node_key(name: str) -> str:
    """The key a session named ``name`` owns from the moment it opens.

    Args:
        name: a session name already checked by :func:`check_name`.

    Returns:
        ``"nodes/<name>"``.
    """
    return NODES_PREFIX + name


def check_name(name: Any) -> str:
    """Check a session name (Rule 1).

    Args:
        name: the candidate name.

    Returns:
        The name, unchanged.

    Raises:
        BadArgument: (argument ``name``) it is not a non-empty str without
            ``/`` of at most 255 characters.
    """
    if (
        not isinstance(name, str)
        or not name
        or "/" in name
        or len(name) > MAX_NAME_LENGTH
        or not name.isprintable()
    ):
        raise BadArgument(
            "name",
            name,
            f"a non-empty printable str without '/' of at most {MAX_NAME_LENGTH} chars",
        )
    return name


def check_ttl(ttl: Any) -> float:
    """Check a session TTL (Rule 2).

    Args:
        ttl: the candidate TTL in seconds.

    Returns:
        The TTL as a float.

    Raises:
        BadArgument: (argument ``ttl``) it is not a finite number above 0.
    """
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise BadArgument("ttl", ttl, "a finite number of seconds > 0")
    value = float(ttl)
    if not math.isfinite(value) or value <= 0:
        raise BadArgument("ttl", ttl, "a finite number of seconds > 0")
    return value


def check_info(info: Any) -> bytes:
    """Check a session's info payload (Rule 3).

    Args:
        info: the candidate payload.

    Returns:
        The payload, unchanged.

    Raises:
        BadArgument: (argument ``info``) it is not ``bytes``.
    """
    if not isinstance(info, bytes):
        raise BadArgument("info", info, "bytes")
    return info


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: no store can hold them
        return False
    return True


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key or not _encodable(key):
        raise BadArgument("key", key, "a non-empty str encodable as UTF-8")
    return key


def check_ops(ops: Any) -> tuple[Op, ...]:
    """Check a batch for :meth:`Session.apply` (Rules 3 and 4).

    Args:
        ops: the candidate batch.

    Returns:
        The batch as a tuple of :class:`Put` / :class:`Create` / :class:`Delete`.

    Raises:
        BadArgument: (argument ``ops``) it is not a sequence of Put, Create
            and Delete, or names a key twice; (``key``) a key is not a
            non-empty str; (``value``) a Put's or Create's value is not ``bytes``.
    """
    if isinstance(ops, str | bytes) or not isinstance(ops, Sequence):
        raise BadArgument("ops", ops, "a sequence of Put, Create and Delete")
    seen: set[str] = set()
    for op in ops:
        if not isinstance(op, Put | Create | Delete):
            raise BadArgument("ops", op, "a sequence of Put, Create and Delete")
        key = _check_key(op.key)
        if isinstance(op, Put | Create) and not isinstance(op.value, bytes):
            raise BadArgument("value", op.value, "bytes")
        if key in seen:
            raise BadArgument("ops", key, "each key at most once per batch")
        seen.add(key)
    return tuple(ops)


def check_prefix(prefix: Any) -> str:
    """Check a key prefix (Rule 5).

    Args:
        prefix: the candidate prefix.

    Returns:
        The prefix, unchanged.

    Raises:
        BadArgument: (argument ``prefix``) it is not a str.
    """
    if not isinstance(prefix, str) or not _encodable(prefix):
        raise BadArgument("prefix", prefix, "a str encodable as UTF-8")
    return prefix


def check_revision(revision: Any) -> int:
    """Check a watch start revision (Rule 5).

    Args:
        revision: the candidate revision.

    Returns:
        The revision, unchanged.

    Raises:
        BadArgument: (argument ``revision``) it is not an int >= 0.
    """
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise BadArgument("revision", revision, "an int >= 0")
    return revision


_MAX_KIND = 64


def check_record(kind: Any, value: Any) -> tuple[str, bytes]:
    """Check a durable record's kind and value (Rule 6).

    Returns:
        ``(kind, value)``, unchanged.

    Raises:
        BadArgument: (argument ``kind``) not a non-empty printable str
            without ``/`` of at most 64 characters; (argument ``value``) not
            bytes, or larger than ``RECORD_MAX_BYTES``.
    """
    if (not isinstance(kind, str) or not kind or "/" in kind or len(kind) > _MAX_KIND
            or not kind.isprintable() or not _encodable(kind)):
        raise BadArgument("kind", kind, f"a non-empty printable str without '/' of at "
                          f"most {_MAX_KIND} chars")
    if not isinstance(value, bytes) or len(value) > RECORD_MAX_BYTES:
        raise BadArgument("value", value, f"bytes of at most {RECORD_MAX_BYTES}")
    return kind, value


def check_count(argument: str, count: Any) -> int:
    """Check a record count (``keep``, ``limit``; Rule 6).

    Raises:
        BadArgument: (argument ``argument``) it is not an int >= 1.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise BadArgument(argument, count, "an int >= 1")
    return count
