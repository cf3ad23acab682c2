"""The gateway's JSON mapping of shoal terms, both ways (``docs/gateway.md`` section 2).

Pure: no IO. JSON cannot say "bytes", "pid" or "crash", so those travel as
one-key objects whose key starts with ``$`` (the typed forms of the wire
protocol's test vectors):

- ``{"$pid": [node, creation, serial]}`` is a :class:`~shoal.pid.Pid`;
- ``{"$bin": "<hex>"}`` is bytes;
- ``{"$crash": [type, message, traceback]}`` is a :class:`~shoal.pid.Crash`;
- ``{"$map": {...}}`` is a map with str keys, any of which may start with ``$``;
- ``{"$kv": [[key, value], ...]}`` is a map whose keys are not all str;
  each key is a str or ``{"$bin": ...}``.

Rules:

- Rule 1: :func:`to_json` writes a plain object for a map with str keys none
  of which starts with ``$``; ``$map`` when one does; ``$kv`` otherwise.
  Tuples become arrays. ``from_json(to_json(t)) == t`` for every term ``t``
  without tuples.
- Rule 2: :func:`from_json` refuses (``BadArgument``, a 400 at the gateway)
  an unknown ``$`` tag, an object of two or more keys one of which starts
  with ``$``, a malformed typed value, a map key that is not str or bytes
  (the wire's rule), and nesting deeper than :data:`MAX_DEPTH`.
- Rule 3: :func:`to_json` refuses (``GatewayError`` ``unencodable``) a value
  JSON cannot hold: NaN or an infinity, or anything that is not a term.
  It never writes NaN: ``json.dumps(..., allow_nan=False)`` is the caller's
  second guard.
"""

from __future__ import annotations

import math
from typing import Any, Final

from shoal.errors import BadArgument
from shoal.gateway.errors import GatewayError
from shoal.pid import Crash, Pid

__all__ = ["MAX_DEPTH", "TAGS", "from_json", "to_json"]

MAX_DEPTH: Final = 256
"""Deepest nesting of arrays and objects accepted (the wire's own bound)."""

TAGS: Final = frozenset({"$pid", "$bin", "$crash", "$map", "$kv"})
"""The typed forms' keys."""


def to_json(term: Any, _depth: int = 0) -> Any:
    """A term as a JSON-ready value (Rule 1).

    Raises:
        GatewayError: ``unencodable`` (502): NaN, an infinity, or not a term.
    """
    if _depth > MAX_DEPTH:
        raise GatewayError(502, "unencodable", f"the value nests deeper than {MAX_DEPTH}",
                           retry_safe=False)
    if term is None or type(term) in (bool, int, str):
        return term
    if isinstance(term, str):  # a str subclass (StrEnum) goes as its base type
        return str(term)
    if isinstance(term, int):  # likewise an IntEnum
        return bool(term) if isinstance(term, bool) else int(term)
    if isinstance(term, float):
        if not math.isfinite(term):
            raise GatewayError(502, "unencodable",
                               f"{term!r} has no JSON form (ask for application/msgpack)",
                               retry_safe=False)
        return float(term)
    if type(term) is Pid:
        return {"$pid": [term.node, term.creation, term.serial]}
    if type(term) is Crash:
        return {"$crash": [term.type, term.message, term.traceback]}
    if isinstance(term, (bytes, bytearray)):
        return {"$bin": bytes(term).hex()}
    if isinstance(term, (list, tuple)):
        return [to_json(item, _depth + 1) for item in term]
    if isinstance(term, dict):
        if all(type(key) is str for key in term):
            inner = {key: to_json(value, _depth + 1) for key, value in term.items()}
            return {"$map": inner} if any(key.startswith("$") for key in term) else inner
        if not all(isinstance(key, (str, bytes)) for key in term):
            # As on the wire (wire/_terms.py): a peer could not take it either.
            raise GatewayError(502, "unencodable", "a map whose keys are not all str or "
                               "bytes is not a shoal term", retry_safe=False)
        return {"$kv": [[to_json(key, _depth + 1), to_json(value, _depth + 1)]
                        for key, value in term.items()]}
    raise GatewayError(502, "unencodable", f"a {type(term).__name__} is not a shoal term",
                       retry_safe=False)


def from_json(value: Any, _depth: int = 0) -> Any:
    """A parsed JSON value as a term (Rule 2).

    Raises:
        BadArgument: a bad typed value, named (see Rule 2).
    """
    if _depth > MAX_DEPTH:
        raise BadArgument("body", "...", f"a value nested at most {MAX_DEPTH} deep")
    if isinstance(value, list):
        return [from_json(item, _depth + 1) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag.startswith("$"):
            return _typed(tag, inner, _depth)
    elif any(key.startswith("$") for key in value):
        raise BadArgument("body", value, "an object whose keys do not start with '$' "
                                         "(use {\"$map\": {...}} for such keys)")
    return {key: from_json(item, _depth + 1) for key, item in value.items()}


def _typed(tag: str, inner: Any, depth: int) -> Any:
    if tag == "$pid":
        if not isinstance(inner, list) or len(inner) != 3:
            raise BadArgument("$pid", inner, "[node, creation, serial]")
        return Pid.of(inner[0], inner[1], inner[2])
    if tag == "$bin":
        if not isinstance(inner, str):
            raise BadArgument("$bin", inner, "a string of hex digits")
        try:
            return bytes.fromhex(inner)
        except ValueError:
            raise BadArgument("$bin", inner, "a string of hex digits") from None
    if tag == "$crash":
        if not isinstance(inner, list) or len(inner) != 3 \
                or not all(isinstance(part, str) for part in inner):
            raise BadArgument("$crash", inner, "[type, message, traceback], three strings")
        return Crash(type=inner[0], message=inner[1], traceback=inner[2])
    if tag == "$map":
        if not isinstance(inner, dict):
            raise BadArgument("$map", inner, "an object")
        return {key: from_json(item, depth + 1) for key, item in inner.items()}
    if tag == "$kv":
        if not isinstance(inner, list) or not all(
                isinstance(pair, list) and len(pair) == 2 for pair in inner):
            raise BadArgument("$kv", inner, "an array of [key, value] pairs")
        out: dict[Any, Any] = {}
        for key, item in inner:
            decoded = from_json(key, depth + 1)
            if not isinstance(decoded, (str, bytes)):
                raise BadArgument("$kv", key, "a key that is a string or {\"$bin\": ...}")
            out[decoded] = from_json(item, depth + 1)
        return out
    raise BadArgument("body", {tag: inner}, f"a known typed form ({', '.join(sorted(TAGS))}); "
                                            f"use {{\"$map\": {{...}}}} for a key like {tag!r}")
