"""Terms: the user values that travel inside messages, and their msgpack form.

Owns: how requests, replies, messages and exit reasons become bytes and come
back, including the two ext types shoal defines.

Rules:

1. A term is a msgpack value (nil, bool, int in [-2**63, 2**64), float,
   str, bytes, array, map with str or bytes keys) or one of two ext types:

   - ext 1: a :class:`~shoal.pid.Pid`, payload ``msgpack([node, creation, serial])``;
   - ext 2: a :class:`~shoal.pid.Crash`, payload ``msgpack([type, message, traceback])``.
     A decoded Crash has ``exception=None``: exceptions are never rebuilt.

2. Tuples (other than Pid) are sent as arrays and come back as lists.
   Subclasses of builtin types (``IntEnum``, ``StrEnum``, ``OrderedDict``)
   are sent as their base type. Anything else raises ``BadArgument`` at the
   sender, naming the argument: a bad term is the caller's bug, and must never
   reach the peer, where it would cost a connection (and so a node).

3. Map keys must be str or bytes on both sides: the receiver decodes with
   ``strict_map_key=True``, so the sender checks keys before sending rather
   than let the receiver close the connection over a caller's mistake.

4. Nothing received is executed: ext payloads are decoded as plain msgpack
   and validated; an unknown ext code is a ``ProtocolError``. Ext -1 (the
   msgpack timestamp) is left to msgpack, which decodes it to an inert
   ``msgpack.Timestamp``; shoal never sends it.

Pid encodings are cached because a pid appears in nearly every message and
the same few pids recur; the cache is bounded and cleared when full.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from shoal.errors import BadArgument, ProtocolError
from shoal.pid import MAX_NAME_LENGTH, Crash, Pid

__all__ = [
    "EXT_CRASH",
    "EXT_PID",
    "MAX_DEPTH",
    "SCALAR_TYPES",
    "check_name",
    "check_term",
    "ext_hook",
    "pack_default",
    "pack_term",
    "pid_caches",
    "unpack_term",
]

EXT_PID: Final = 1
"""msgpack ext code of a :class:`~shoal.pid.Pid`."""
EXT_CRASH: Final = 2
"""msgpack ext code of a :class:`~shoal.pid.Crash`."""
MAX_DEPTH: Final = 256
"""Deepest nesting of arrays and maps a term may have (msgpack's own limit is 512)."""

_CACHE_LIMIT: Final = 4096
_pid_ext: dict[Pid, msgpack.ExtType] = {}
_pid_from_ext: dict[bytes, Pid] = {}

SCALAR_TYPES: Final = frozenset({str, int, float, bool, bytes, type(None), Pid, Crash})
"""Types whose values :func:`check_term` passes without a look (no keys, no depth)."""
_SCALARS = SCALAR_TYPES
_BASES: Final = (bool, int, float, str, bytes, bytearray, list, dict)


def pid_caches() -> tuple[dict[Pid, msgpack.ExtType], dict[bytes, Pid]]:
    """The two bounded pid caches (pid to ext, ext payload to pid), for the
    C build of the codec, which looks pids up in them itself. Cleared in
    place when full, never replaced."""
    return _pid_ext, _pid_from_ext


class Unencodable(Exception):
    """Internal: raised from the msgpack ``default`` hook, turned into
    ``BadArgument`` by the caller, who knows the argument's name."""


def pack_default(obj: Any) -> Any:
    """The msgpack ``default`` hook: encode shoal's ext types, coerce the rest.

    Used with ``strict_types=True`` so that Pid (a tuple subclass) reaches it.

    Args:
        obj: a value the packer cannot encode natively.

    Returns:
        An ``ExtType`` for a Pid or Crash, a list for a tuple, or the base
        builtin value for a subclass of a builtin type.

    Raises:
        Unencodable: the value is not a term.
    """
    if type(obj) is Pid:
        ext = _pid_ext.get(obj)
        if ext is None:
            try:
                Pid.of(*obj)
            except BadArgument as exc:
                raise Unencodable(f"invalid pid {obj!r}: {exc}") from None
            ext = msgpack.ExtType(EXT_PID, msgpack.packb(list(obj), use_bin_type=True))
            if len(_pid_ext) >= _CACHE_LIMIT:
                _pid_ext.clear()
            _pid_ext[obj] = ext
        return ext
    if type(obj) is Crash:
        fields = [obj.type, obj.message, obj.traceback]
        if not all(type(f) is str for f in fields):
            raise Unencodable(f"Crash fields must be str: {obj!r}")
        return msgpack.ExtType(EXT_CRASH, msgpack.packb(fields, use_bin_type=True))
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, str):  # str() of a str-mixin Enum is its name, not its value
        return str.__str__(obj)
    for base in _BASES:
        if isinstance(obj, base):
            return base(obj)  # type: ignore[arg-type]
    raise Unencodable(f"cannot encode {type(obj).__qualname__} object")


def _unpack_ext_payload(data: bytes, what: str) -> list[Any]:
    try:
        fields = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:
        raise ProtocolError(f"malformed {what} ext payload: {exc}") from None
    if type(fields) is not list or len(fields) != 3:
        raise ProtocolError(f"malformed {what} ext payload: expected an array of 3")
    return fields


def ext_hook(code: int, data: bytes) -> Any:
    """The msgpack ``ext_hook``: decode shoal's ext types, reject any other.

    Args:
        code: the ext type code.
        data: the ext payload.

    Returns:
        A validated :class:`Pid` (ext 1) or :class:`Crash` (ext 2).

    Raises:
        ProtocolError: unknown ext code, or a payload of the wrong shape.
    """
    if code == EXT_PID:
        pid = _pid_from_ext.get(data)
        if pid is not None:
            return pid
        node, creation, serial = _unpack_ext_payload(data, "pid")
        try:
            pid = Pid.of(node, creation, serial)
        except BadArgument as exc:
            raise ProtocolError(f"invalid pid in ext payload: {exc}") from None
        if len(_pid_from_ext) >= _CACHE_LIMIT:
            _pid_from_ext.clear()
        _pid_from_ext[bytes(data)] = pid
        return pid
    if code == EXT_CRASH:
        fields = _unpack_ext_payload(data, "crash")
        if not all(type(f) is str for f in fields):
            raise ProtocolError("invalid crash ext payload: fields must be str")
        return Crash(type=fields[0], message=fields[1], traceback=fields[2])
    raise ProtocolError(f"unknown ext type {code}")


def _bad_key(argument: str, key: Any) -> BadArgument:
    return BadArgument(argument, key, "map keys that are str or bytes")


def check_term(term: Any, argument: str = "term") -> None:
    """Check what the packer cannot: map keys and nesting depth.

    Cheap for scalars (one set lookup); walks containers only.

    Args:
        term: the value to check.
        argument: the name to report in the error.

    Raises:
        BadArgument: a map key is not str/bytes, or the term nests deeper
            than :data:`MAX_DEPTH`.
    """
    if type(term) in _SCALARS:
        return
    stack: list[tuple[Any, int]] = [(term, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadArgument(argument, term, f"a term nested at most {MAX_DEPTH} deep")
        if isinstance(value, (list, tuple)) and type(value) is not Pid:
            stack.extend((item, depth + 1) for item in value if type(item) not in _SCALARS)
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, (str, bytes)):
                    raise _bad_key(argument, key)
                if type(item) not in _SCALARS:
                    stack.append((item, depth + 1))


def pack_term(term: Any, *, argument: str = "term") -> bytes:
    """Encode one term on its own (outside a message).

    Args:
        term: the value to encode.
        argument: the name to report if it cannot be encoded.

    Returns:
        The msgpack bytes.

    Raises:
        BadArgument: the value is not a term (see the module rules).
    """
    check_term(term, argument)
    try:
        data: bytes = msgpack.packb(
            term, default=pack_default, use_bin_type=True, strict_types=True, datetime=False
        )
    except (Unencodable, ValueError, OverflowError, TypeError) as exc:
        raise BadArgument(argument, term, f"a msgpack term ({exc})") from None
    return data


def unpack_term(data: bytes, *, max_size: int = 8 * 1024 * 1024) -> Any:
    """Decode one term produced by :func:`pack_term` (or another implementation).

    Args:
        data: exactly one msgpack value.
        max_size: refuse input longer than this many bytes.

    Returns:
        The term; arrays come back as lists.

    Raises:
        ProtocolError: the bytes are not exactly one valid term.
    """
    if len(data) > max_size:
        raise ProtocolError(f"term of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        return msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True, ext_hook=ext_hook
        )
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"malformed term: {exc}") from None


def check_name(value: Any, argument: str) -> None:
    """Check a node or cluster name (shared by messages and the handshake).

    Args:
        value: the name.
        argument: the name to report in the error.

    Raises:
        BadArgument: not a non-empty str of at most 255 chars.
    """
    if type(value) is not str or not value or len(value) > MAX_NAME_LENGTH:
        raise BadArgument(argument, value, f"a non-empty str of at most {MAX_NAME_LENGTH} chars")
