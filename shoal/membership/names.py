"""Cluster-wide registered names in the store, and a node's view of them: no IO.

One key per name, owned by the store session of the node whose process
holds it (so the name goes when that session ends)::

    names/<name>      msgpack array [node, creation, serial]: the holder's pid

A name is a non-empty str of at most 255 characters without ``/`` (checked
by ``shoal.pid.check_registered_name``), so it is the key's last part as is.

Rules:

- Rule 1: the store decides who holds a name: a registration is a
  ``Create`` of the key, which fails if it exists (first create wins).
- Rule 2: anything malformed read from the store (a bad key, a value that is
  not exactly ``[str, int, int]`` forming a valid pid) is skipped, never
  executed (G7); ``decode_holder`` returns None for it.
- Rule 3: :class:`NameView` applies the store's changes in revision order
  per name: a change older than what the view holds for that name (a
  watch event about a registration this node already replaced locally)
  is ignored. A re-sync replaces the whole view.
- Bounds: the view holds one entry per name the store holds; a name leaves
  it when its key is deleted (released, or its owner's session ended),
  including the tombstone a local release leaves until that delete arrives.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgpack

from shoal.errors import BadArgument
from shoal.pid import Pid

__all__ = ["PREFIX", "NameView", "decode_holder", "encode_holder", "name_key",
           "parse_name_key"]

PREFIX = "names/"


def name_key(name: str) -> str:
    """The store key of the global name ``name`` (checked by the caller)."""
    return PREFIX + name


def parse_name_key(key: str) -> str | None:
    """The name a ``names/`` key stands for, or None if it is not one (Rule 2)."""
    if not key.startswith(PREFIX):
        return None
    name = key[len(PREFIX):]
    return name if name and "/" not in name else None


def encode_holder(pid: Pid) -> bytes:
    """The value stored under a name's key: its holder's pid."""
    return msgpack.packb([pid.node, pid.creation, pid.serial])  # type: ignore[no-any-return]


def decode_holder(value: bytes | None) -> Pid | None:
    """The holder pid stored in ``value``, or None if malformed (Rule 2)."""
    if value is None:
        return None
    try:
        raw = msgpack.unpackb(value, use_list=True, strict_map_key=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError):
        return None
    if not isinstance(raw, list) or len(raw) != 3:
        return None
    try:
        return Pid.of(raw[0], raw[1], raw[2])
    except BadArgument:
        return None


class NameView:
    """Every global name the store holds, as one node last saw it (Rule 3)."""

    def __init__(self) -> None:
        # Invariant: name -> (holder, revision of the change that set it); a
        # holder of None is a tombstone: the name was released here at once
        # and the store's delete has not arrived yet, so the older put still
        # on its way is ignored. The delete removes the tombstone.
        self._names: dict[str, tuple[Pid | None, int]] = {}

    def get(self, name: str) -> Pid | None:
        """The holder of ``name`` as last seen, or None."""
        held = self._names.get(name)
        return held[0] if held is not None else None

    def names(self) -> list[str]:
        """Every name in the view with a holder, sorted."""
        return sorted(name for name, (pid, _) in self._names.items() if pid is not None)

    def put(self, name: str, holder: Pid, revision: int) -> None:
        """``name`` is held by ``holder`` since ``revision`` (ignored if older,
        or not newer than a release seen here)."""
        held = self._names.get(name)
        if held is None or held[1] < revision or (held[1] == revision and held[0] is not None):
            self._names[name] = (holder, revision)

    def delete(self, name: str, revision: int) -> Pid | None:
        """``name`` was released at ``revision``; return who held it, or
        None if the view held it since a later revision (ignored)."""
        held = self._names.get(name)
        if held is None or held[1] > revision:
            return None
        del self._names[name]
        return held[0]

    def forget(self, name: str, holder: Pid) -> None:
        """Drop ``name`` now if ``holder`` holds it (released here: its
        process exited, or it was unregistered), leaving a tombstone."""
        held = self._names.get(name)
        if held is not None and held[0] == holder:
            self._names[name] = (None, held[1])

    def replace(self, entries: Iterable[tuple[str, bytes, int]]) -> None:
        """Replace the whole view with ``(key, value, revision)`` entries of a
        snapshot; malformed ones are skipped (Rule 2)."""
        self._names.clear()
        for key, value, revision in entries:
            name, holder = parse_name_key(key), decode_holder(value)
            if name is not None and holder is not None:
                self._names[name] = (holder, revision)
