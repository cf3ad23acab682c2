"""Frames: the length-prefixed envelope every message travels in.

Owns: splitting a byte stream into message bodies, and the size limits.

Layout of one frame::

    +----------------+----------------------------+
    | length: u32 BE | body: `length` bytes        |
    +----------------+----------------------------+

Rules:

1. ``length`` counts the body only, is at least 1 and at most the
   decoder's ``max_frame`` (default :data:`DEFAULT_MAX_FRAME`, 8 MiB).
   A zero length is an error: no message has an empty body.
2. The length is checked as soon as its 4 bytes have arrived, *before* any
   of the body is buffered, so a peer cannot make us hold more than
   ``max_frame + 4`` bytes plus one read's worth.
3. End of stream is an explicit input (:meth:`FrameDecoder.feed_eof`). End
   of stream between frames is a clean end; in the middle of a frame it is a
   ``ProtocolError`` (the peer died or lied about a length).
4. Once a decoder has failed it stays broken: every later call raises the
   same error. A stream that lost its framing cannot be resynchronised.
   Bodies completed earlier in the same chunk as a bad header are still
   returned (they were valid and came first); the error is then held in
   :attr:`FrameDecoder.error` and raised by the next call.

The decoder is pure (sans-IO, like h11): bytes in, bodies out. The hot path
parses headers in place from the caller's chunk and only copies into the
internal buffer the tail of an incomplete frame.
"""

from __future__ import annotations

import struct
from typing import Final

from shoal.errors import BadArgument, ProtocolError
from shoal.wire._native import speedups

__all__ = [
    "DEFAULT_MAX_FRAME",
    "HANDSHAKE_MAX_FRAME",
    "HEADER_SIZE",
    "FrameDecoder",
    "encode_frame",
    "py_split",
    "unpack_header",
]

DEFAULT_MAX_FRAME: Final = 8 * 1024 * 1024
"""Largest body a decoder accepts by default: 8 MiB. Configurable per decoder."""

HANDSHAKE_MAX_FRAME: Final = 4096
"""Largest body accepted before the handshake completes. An unauthenticated
peer must not be able to make us buffer or decode megabytes."""

HEADER_SIZE: Final = 4
"""Bytes in the length prefix."""

_HEADER = struct.Struct(">I")
unpack_header = _HEADER.unpack_from
"""``unpack_header(data, pos)``: the 1-tuple of the length at ``pos``."""
_pack_header = _HEADER.pack
_MAX_U32: Final = (1 << 32) - 1


def py_split(
    view: bytes | bytearray | memoryview, pos: int, limit: int, max_bodies: int
) -> tuple[list[bytes], int, int]:
    """The complete frames of ``view`` from ``pos``: at most ``max_bodies``
    of them (-1: no limit), the position after the last, and the first
    length found zero or above ``limit`` (-1: none). The reference of
    ``_speedups.split``."""
    end = len(view)
    bodies: list[bytes] = []
    while end - pos >= HEADER_SIZE:
        if 0 <= max_bodies <= len(bodies):
            break
        (size,) = unpack_header(view, pos)
        if size == 0 or size > limit:
            return bodies, pos, size
        stop = pos + HEADER_SIZE + size
        if stop > end:
            break
        bodies.append(bytes(view[pos + HEADER_SIZE : stop]))
        pos = stop
    return bodies, pos, -1


_split = speedups.split if speedups is not None else py_split


def encode_frame(body: bytes) -> bytes:
    """Prefix a body with its length.

    Args:
        body: the encoded message, 1 to 2**32-1 bytes.

    Returns:
        The frame: a 4-byte big-endian length followed by the body.

    Raises:
        BadArgument: the body is empty or too long for a u32 length.
    """
    size = len(body)
    if not 0 < size <= _MAX_U32:
        raise BadArgument("body", f"<{size} bytes>", "between 1 and 2**32-1 bytes")
    return _pack_header(size) + body


class FrameDecoder:
    """Split a byte stream into frame bodies (sans-IO).

    Args:
        max_frame: largest body accepted, in bytes; may be lowered or raised
            later through :attr:`max_frame` (the handshake starts small).

    Raises:
        BadArgument: ``max_frame`` is not a positive int below 2**32.
    """

    __slots__ = ("_eof", "error", "max_frame", "tail")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if type(max_frame) is not int or not 0 < max_frame <= _MAX_U32:
            raise BadArgument("max_frame", max_frame, "an int in [1, 2**32)")
        # Invariant: holds the unparsed tail of the stream: less than one complete
        # frame, unless ``feed`` was told to stop early by ``max_bodies``. Read
        # it, never change it (a plain attribute: the connection's common case
        # checks it is empty per chunk).
        self.tail = bytearray()
        self._eof = False
        # The error that broke the stream, if any (rule 4); read it, never set
        # it (a plain attribute: the connection reads it per chunk).
        # Invariant: once set, every feed raises it again.
        self.error: ProtocolError | None = None
        self.max_frame = max_frame

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self.tail)

    def _fail(self, message: str) -> ProtocolError:
        self.error = ProtocolError(message)
        self.tail = bytearray()
        return self.error

    def feed(
        self, data: bytes | bytearray | memoryview, max_bodies: int | None = None
    ) -> list[bytes]:
        """Add bytes from the stream; return every body now complete.

        Args:
            data: the next chunk, of any size (empty is allowed).
            max_bodies: stop after this many bodies and keep the rest
                buffered, unparsed (the caller may change ``max_frame`` before
                the next call). None means no limit.

        Returns:
            The complete bodies, in stream order (possibly none).

        Raises:
            ProtocolError: a length prefix is zero or above ``max_frame`` (and
                no body preceded it in this chunk), data arrived after end of
                stream, or the decoder already failed.
        """
        if self.error is not None:
            raise self.error
        if self._eof:
            raise self._fail("data received after end of stream")
        buf = self.tail
        if buf:
            buf += data
            view: bytes | bytearray | memoryview = buf
        else:
            view = data
        limit = self.max_frame
        # The C build takes an int limit; anything else set on the attribute
        # goes to the reference, which compares it as Python does.
        split = _split if type(limit) is int else py_split
        bodies, pos, bad = split(view, 0, limit, -1 if max_bodies is None else max_bodies)
        if bad >= 0:
            error = self._fail(
                "zero-length frame" if bad == 0
                else f"frame of {bad} bytes exceeds the limit of {limit} bytes"
            )
            if bodies:
                return bodies  # rule 4: the error waits for the next call
            raise error
        if view is buf:
            del buf[:pos]
        elif pos < len(view):
            buf += view[pos:]
        return bodies

    def feed_eof(self) -> None:
        """Record end of stream.

        Raises:
            ProtocolError: the stream ended inside a frame (a partial header
                or body is buffered), or the decoder already failed.
        """
        if self.error is not None:
            raise self.error
        self._eof = True
        if self.tail:
            held = len(self.tail)
            raise self._fail(f"end of stream inside a frame ({held} bytes of it received)")
