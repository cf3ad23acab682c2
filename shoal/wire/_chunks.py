"""Chunks read on an open connection: whole frames of plain messages at once.

Owns: the common case of a connection's reads once open (rules 7 and 8 of
``_connection.py``): a chunk's complete frames, from its start, split and
decoded in one call (:func:`messages`), or passed to handlers as they are
decoded (:func:`deliver`); and the choice of the C build of both
(``_speedups.c``) or the Python reference here.

Rules:

1. Both take frames up to the first that is incomplete, has a length zero
   or above the limit, fails to decode, or holds a message not in
   :data:`~shoal.wire._codec.PLAIN_TYPES` (BYE, a handshake step);
   :func:`deliver` also stops at a message whose type has no handler. What
   they leave is the connection's, through its frame decoder and checks:
   errors and their words come from there, never from here.
2. An ignorable message (a newer release's) is skipped, as the decoder does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shoal.errors import ProtocolError
from shoal.wire._codec import PLAIN_TYPES, py_decode_body
from shoal.wire._frames import HEADER_SIZE, unpack_header
from shoal.wire._messages import Message
from shoal.wire._native import speedups

__all__ = ["Chunk", "Handlers", "deliver", "messages", "py_deliver", "py_messages"]

Chunk = bytes | bytearray | memoryview
"""Bytes read from a peer, as :func:`messages` and :func:`deliver` take them."""


Handlers = dict[type[Message], Callable[[Any, Any], object]]
"""Message type → ``handler(target, msg)``, for :func:`deliver`."""


def py_deliver(data: Chunk, limit: int, handlers: Handlers,
               target: Any, failed: Callable[[Exception], object]) -> tuple[int, int]:
    """Pass the messages of ``data``'s complete frames from its start, each
    decoded by :func:`py_decode_body` (an ignorable one skipped), to
    ``handlers[type(msg)](target, msg)`` as it is decoded, up to the first
    frame that is incomplete, has a length zero or above ``limit``, fails to
    decode, or holds a message not in :data:`PLAIN_TYPES` or without a
    handler. An ``Exception`` a handler raises is passed to
    ``failed(exc)`` and the next message follows (anything else propagates).
    Returns the position where the frame not taken starts (``len(data)``
    when every frame was taken) and how many messages were passed. The
    common case of ``Connection.dispatch``; the reference of
    ``_speedups.deliver``."""
    pos, end, count = 0, len(data), 0
    while end - pos >= HEADER_SIZE:
        (size,) = unpack_header(data, pos)
        stop = pos + HEADER_SIZE + size
        if size == 0 or size > limit or stop > end:
            break
        try:
            msg = py_decode_body(bytes(data[pos + HEADER_SIZE : stop]))
        except ProtocolError:
            break
        if msg is not None:
            handler = handlers.get(type(msg))
            if handler is None or type(msg) not in PLAIN_TYPES:
                break
            count += 1
            try:
                handler(target, msg)
            except Exception as exc:
                failed(exc)
        pos = stop
    return pos, count


_EVERY_PLAIN: Handlers = dict.fromkeys(PLAIN_TYPES, list.append)


def _reraise(exc: Exception) -> None:
    raise exc


def py_messages(data: Chunk, limit: int) -> tuple[list[Message], int]:
    """The messages of ``data``'s complete frames from its start, each
    decoded by :func:`py_decode_body` (an ignorable one skipped), up to the
    first frame that is incomplete, has a length zero or above ``limit``,
    fails to decode, or holds a message not in :data:`PLAIN_TYPES`; and
    the position where that frame starts (``len(data)`` when every frame was
    taken). The common case of ``Connection.receive_data`` once open, which
    hands whatever is left to the frame decoder and its own checks. The
    reference of ``_speedups.messages``: :func:`py_deliver` with a handler
    for every plain kind, appending to the list."""
    msgs: list[Message] = []
    pos, _ = py_deliver(data, limit, _EVERY_PLAIN, msgs, _reraise)
    return msgs, pos


messages: Callable[[Chunk, int], tuple[list[Message], int]] = py_messages
deliver: Callable[[Chunk, int, Handlers, Any, Callable[[Exception], object]],
                  tuple[int, int]] = py_deliver
if speedups is not None:  # set up by _codec at its import
    messages = speedups.messages
    deliver = speedups.deliver
