"""Codec: messages to frame bytes and frame bodies back to messages.

Owns: the dispatch table from type code to message, the versioning rule for
unknown codes, and the translation of every decoding failure into
``ProtocolError``.

Rules:

1. A body is a msgpack array whose first element is the integer type code.
   Not an array, an unknown code, the wrong arity or a field of the wrong
   type → ``ProtocolError`` with a message saying which.
2. Versioning (rolling deploys). Codes 64-127 are reserved for *ignorable*
   messages: a receiver that does not know such a code skips the message
   (``decode_body`` returns None). Any other unknown code is a protocol
   error. So a new optional message is given a code in 64-127 and *accepted
   one release before it is sent*: release N learns to decode it, release
   N+1 starts sending it, and a mixed cluster of N and N+1 works. A change
   that a peer must understand (a new mandatory message, a new field) needs a
   new protocol version, chosen in the handshake.
3. Decoding never executes anything: msgpack with ``raw=False``,
   ``strict_map_key=True``, containers bounded by the frame size (msgpack's
   default limits for ``unpackb`` are the input length), ext types through
   :func:`~shoal.wire._terms.ext_hook`.
4. Encoding checks term fields, and an unencodable term raises
   ``BadArgument`` naming the field, at the sender, before any byte is
   written. A body larger than the encoder's ``max_frame`` is refused the
   same way rather than sent to be rejected by the peer.

Speed: one reused ``msgpack.Packer`` per encoder (creating a packer costs
about as much as packing a small message), the array built by each class's
``wire_array`` with its code inlined, and one dict lookup to decode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from functools import partial
from types import MethodType
from typing import Any, Final

import msgpack

from shoal.errors import BadArgument, ProtocolError
from shoal.pid import Pid
from shoal.wire._frames import DEFAULT_MAX_FRAME, HEADER_SIZE
from shoal.wire._handshake_messages import Challenge, Hello, Proof, Refuse
from shoal.wire._messages import (
    Bye,
    Call,
    Cast,
    Demonitor,
    Down,
    Exit,
    Fail,
    Link,
    Message,
    Monitor,
    Ping,
    Pong,
    Reply,
    Send,
    Unlink,
)
from shoal.wire._native import speedups
from shoal.wire._terms import (
    SCALAR_TYPES as _SCALARS,
)
from shoal.wire._terms import (
    Unencodable,
    check_term,
    ext_hook,
    pack_default,
    pack_term,
    pid_caches,
)

__all__ = [
    "HANDSHAKE_TYPES",
    "IGNORABLE_CODES",
    "MESSAGE_TYPES",
    "PLAIN_TYPES",
    "Encoder",
    "decode_body",
    "encode_message",
    "new_encoder",
    "py_decode_body",
]

IGNORABLE_CODES: Final = range(64, 128)
"""Type codes an unknowing receiver skips instead of failing (rule 2)."""

HANDSHAKE_TYPES: Final[tuple[type[Message], ...]] = (Hello, Challenge, Proof, Refuse)
"""Message classes of the handshake, codes 1-4."""
MESSAGE_TYPES: Final[tuple[type[Message], ...]] = (
    Call, Reply, Fail, Cast, Send, Monitor, Demonitor, Down,
    Link, Unlink, Exit, Ping, Pong, Bye,
)  # fmt: skip
"""Message classes of protocol version 1 after the handshake, codes 16-29."""
PLAIN_TYPES: Final = frozenset(MESSAGE_TYPES) - {Bye}
"""Messages an open connection hands on as they come (``_chunks.py``);
BYE ends it and a handshake step there is an error, so those two take the
connection's own path."""

_Builder = Callable[[list[Any]], Message]
_new = object.__new__


def _builder(cls: type[Message]) -> _Builder:
    """A decoder for one class: fill its slots from the array, then validate.

    Equivalent to ``cls(**dict(zip(field_names, array[1:])))`` but about three
    times faster: the frozen dataclass ``__init__`` pays for a guarded
    ``object.__setattr__`` per field, the slot descriptors do not. The same
    ``__post_init__`` validation runs, so a bad field still raises.
    """
    setters = tuple(
        (index, getattr(cls, f.name).__set__)
        for index, f in enumerate(fields(cls), start=1)  # type: ignore[arg-type]
    )
    post_init = cls.__post_init__  # type: ignore[attr-defined]

    def build(array: list[Any]) -> Message:
        msg = _new(cls)
        for index, set_slot in setters:
            set_slot(msg, array[index])
        post_init(msg)
        return msg

    return build


# code -> (arity including the code, class name, builder). A BadArgument
# from a builder is the peer's fault and becomes a ProtocolError.
_DECODERS: Final[dict[int, tuple[int, str, _Builder]]] = {
    cls.code: (len(fields(cls)) + 1, cls.__name__, _builder(cls))  # type: ignore[arg-type]
    for cls in HANDSHAKE_TYPES + MESSAGE_TYPES
}

# CALL and REPLY, the hot path: the same checks as their ``__post_init__``,
# inlined; a message that fails one goes through the generic builder, whose
# error names the field.
_U63: Final = 1 << 63
_set_call = tuple(getattr(Call, f.name).__set__ for f in fields(Call))
_set_reply = tuple(getattr(Reply, f.name).__set__ for f in fields(Reply))


def _build_call(array: list[Any], _slow: _Builder = _DECODERS[Call.code][2]) -> Message:
    _, ref, sender, to, request, timeout_ms = array
    if (type(ref) is not int or not 0 <= ref < _U63 or type(to) is not Pid
            or (sender is not None and type(sender) is not Pid)
            or type(timeout_ms) is not int or not 0 <= timeout_ms < _U63):
        return _slow(array)
    msg = _new(Call)
    s_ref, s_sender, s_to, s_request, s_timeout = _set_call
    s_ref(msg, ref)
    s_sender(msg, sender)
    s_to(msg, to)
    s_request(msg, request)
    s_timeout(msg, timeout_ms)
    return msg


def _build_reply(array: list[Any], _slow: _Builder = _DECODERS[Reply.code][2]) -> Message:
    _, ref, value, queue_len = array
    if (type(ref) is not int or not 0 <= ref < _U63
            or type(queue_len) is not int or not 0 <= queue_len < _U63):
        return _slow(array)
    msg = _new(Reply)
    s_ref, s_value, s_queue_len = _set_reply
    s_ref(msg, ref)
    s_value(msg, value)
    s_queue_len(msg, queue_len)
    return msg


_DECODERS[Call.code] = (6, "Call", _build_call)
_DECODERS[Reply.code] = (4, "Reply", _build_reply)

_unpackb = msgpack.unpackb


def py_decode_body(body: bytes) -> Message | None:
    """Decode one frame body into a message.

    Args:
        body: the bytes of one frame, without its length prefix.

    Returns:
        The validated message, or None for a message with an unknown code in
        :data:`IGNORABLE_CODES` (skip it).

    Raises:
        ProtocolError: the body is not valid msgpack, has trailing bytes, is
            not a non-empty array, has an unknown code or arity, a field of
            the wrong type, or a bad ext payload.
    """
    try:
        # msgpack >= 1.0's defaults (raw=False, strict_map_key=True,
        # use_list=True) are the wire's rules; only the ext hook is ours.
        fields = _unpackb(body, ext_hook=ext_hook)
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"malformed message body: {type(exc).__name__}: {exc}") from None
    return _finish(fields)


def _finish(fields: Any) -> Message | None:
    """:func:`decode_body` once the body is unpacked (also the C build's
    way back for every message it does not build itself)."""
    if type(fields) is not list or not fields:
        raise ProtocolError("message body must be a non-empty msgpack array")
    code = fields[0]
    entry = _DECODERS.get(code) if type(code) is int else None
    if entry is None:
        if type(code) is int and code in IGNORABLE_CODES:
            return None
        raise ProtocolError(f"unknown message type {code!r}")
    arity, name, build = entry
    if len(fields) != arity:
        raise ProtocolError(f"{name} (type {code}) needs {arity - 1} fields, got {len(fields) - 1}")
    try:
        return build(fields)
    except BadArgument as exc:
        raise ProtocolError(f"invalid {name} (type {code}): {exc}") from None


def setup_speedups(module: Any) -> None:
    """Hand the C build (``shoal.wire._speedups``) the Python objects it
    uses: the reference functions it falls back on, the pid caches, the
    message classes and their slots. Done at import when the C build is in
    use; the tests comparing the two builds call it on their own."""
    pid_ext, pid_from_ext = pid_caches()
    module.setup(
        _unpackb, ext_hook, pid_from_ext, pid_ext, _finish, py_decode_body, _SCALARS, Pid,
        Call, tuple(getattr(Call, f.name) for f in fields(Call)),
        Reply, tuple(getattr(Reply, f.name) for f in fields(Reply)), PLAIN_TYPES,
    )


decode_body: Callable[[bytes], Message | None] = py_decode_body
if speedups is not None:
    setup_speedups(speedups)
    decode_body = speedups.decode_body


class Encoder:
    """Turns messages into frames, reusing one msgpack packer.

    Not thread-safe: use one per connection (or per thread).

    Args:
        max_frame: largest body this encoder produces; larger messages are
            refused at the sender.
    """

    __slots__ = ("_pack", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        packer = msgpack.Packer(
            default=pack_default, use_bin_type=True, strict_types=True, datetime=False
        )
        self._pack: Callable[[Any], bytes] = packer.pack
        self.max_frame = max_frame

    def encode(self, msg: Message) -> bytes:
        """Encode one message as a complete frame.

        Args:
            msg: the message.

        Returns:
            The frame bytes: u32 length and msgpack body.

        Raises:
            BadArgument: a term field cannot be encoded (the argument named is
                that field), or the body exceeds ``max_frame``.
        """
        for name in msg.term_fields:
            check_term(getattr(msg, name), name)
        try:
            body = self._pack(msg.wire_array())
        except (Unencodable, ValueError, OverflowError, TypeError) as exc:
            raise _blame(msg, exc) from None
        size = len(body)
        if size > self.max_frame:
            raise BadArgument(
                "message", f"<{type(msg).__name__} of {size} bytes>",
                f"a message of at most {self.max_frame} bytes encoded",
            )  # fmt: skip
        return size.to_bytes(HEADER_SIZE, "big") + body


    def encode_call(
        self, ref: int, sender: Pid | None, to: Pid, request: Any, timeout_ms: int
    ) -> bytes:
        """``encode(Call(...))`` without building the message: the fast path
        for the runtime's most frequent message. The runtime passes its own
        values (a counter, pids it checked, a clamped timeout); the user's
        ``request`` is checked exactly as :meth:`encode` checks it, and any
        failure is reported by building the message, which names the field.

        Raises:
            BadArgument: as :meth:`encode`.
        """
        if type(request) not in _SCALARS:
            check_term(request, "request")
        try:
            body = self._pack([16, ref, sender, to, request, timeout_ms])
        except (Unencodable, ValueError, OverflowError, TypeError):
            return self.encode(
                Call(ref=ref, sender=sender, to=to, request=request, timeout_ms=timeout_ms)
            )
        size = len(body)
        if size > self.max_frame:
            self._frame(body, "Call")  # raises
        return size.to_bytes(HEADER_SIZE, "big") + body

    def encode_reply(self, ref: int, value: Any, queue_len: int) -> bytes:
        """``encode(Reply(...))`` without building the message (see
        :meth:`encode_call`).

        Raises:
            BadArgument: as :meth:`encode`.
        """
        if type(value) not in _SCALARS:
            check_term(value, "value")
        try:
            body = self._pack([17, ref, value, queue_len])
        except (Unencodable, ValueError, OverflowError, TypeError):
            return self.encode(Reply(ref=ref, value=value, queue_len=queue_len))
        size = len(body)
        if size > self.max_frame:
            self._frame(body, "Reply")  # raises
        return size.to_bytes(HEADER_SIZE, "big") + body

    def framers(self) -> tuple[Callable[[int, Pid | None, Pid, Any, int], bytes],
                               Callable[[int, Any, int], bytes]]:
        """:meth:`encode_call` and :meth:`encode_reply` as callables to bind
        once on a hot path (the transport's): the C build's call C directly,
        without a Python frame between. They keep the :attr:`max_frame` of
        the moment they were made."""
        return self.encode_call, self.encode_reply

    def _frame(self, body: bytes, kind: str) -> bytes:
        size = len(body)
        if size > self.max_frame:
            raise BadArgument(
                "message", f"<{kind} of {size} bytes>",
                f"a message of at most {self.max_frame} bytes encoded",
            )  # fmt: skip
        return size.to_bytes(HEADER_SIZE, "big") + body


def c_encoder(module: Any) -> type[Encoder]:
    """:class:`Encoder` with the frames of scalar CALLs and REPLYs made by
    the C build ``module``; anything else, and every error, by the reference.
    The class a connection uses when the C build is in use (the tests
    comparing the builds make it from the extension themselves)."""
    encode_call, encode_reply = module.encode_call, module.encode_reply

    class CEncoder(Encoder):
        __slots__ = ()

        def encode_call(
            self, ref: int, sender: Pid | None, to: Pid, request: Any, timeout_ms: int
        ) -> bytes:
            return (encode_call(self._pack, self.max_frame, None, ref, sender, to, request,
                                timeout_ms)
                    or Encoder.encode_call(self, ref, sender, to, request, timeout_ms))

        def encode_reply(self, ref: int, value: Any, queue_len: int) -> bytes:
            return (encode_reply(self._pack, self.max_frame, None, ref, value, queue_len)
                    or Encoder.encode_reply(self, ref, value, queue_len))

        def framers(self) -> tuple[Callable[[int, Pid | None, Pid, Any, int], bytes],
                                   Callable[[int, Any, int], bytes]]:
            # The C functions call the reference themselves where they give up.
            call = MethodType(Encoder.encode_call, self)
            reply = MethodType(Encoder.encode_reply, self)
            return (partial(encode_call, self._pack, self.max_frame, call),
                    partial(encode_reply, self._pack, self.max_frame, reply))

    return CEncoder


new_encoder: Callable[[int], Encoder] = c_encoder(speedups) if speedups is not None else Encoder
"""The encoder a connection uses: the C build's when it is in use."""


def _blame(msg: Message, exc: Exception) -> BadArgument:
    """Find which term field made packing fail, to name it in the error."""
    for name in msg.term_fields:
        try:
            pack_term(getattr(msg, name), argument=name)
        except BadArgument as bad:
            return bad
    return BadArgument("message", msg, f"an encodable message ({exc})")


_default_encoder = Encoder()


def encode_message(msg: Message) -> bytes:
    """Encode one message as a frame with a shared encoder (convenience).

    The transport gives each connection its own :class:`Encoder`; this
    helper serves tests and tools on one thread.

    Args:
        msg: the message.

    Returns:
        The frame bytes.

    Raises:
        BadArgument: as :meth:`Encoder.encode`.
    """
    return _default_encoder.encode(msg)
