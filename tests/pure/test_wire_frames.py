"""FrameDecoder: length-prefixed framing, limits, end of stream (no sockets)."""

from __future__ import annotations

import struct

import pytest

from shoal.errors import BadArgument, ProtocolError
from shoal.wire import DEFAULT_MAX_FRAME, FrameDecoder, encode_frame


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_default_max_frame_is_eight_mebibytes() -> None:
    assert DEFAULT_MAX_FRAME == 8 * 1024 * 1024
    assert FrameDecoder().max_frame == DEFAULT_MAX_FRAME


def test_encode_frame_prefixes_big_endian_length() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"


def test_encode_frame_rejects_empty_body() -> None:
    with pytest.raises(BadArgument):
        encode_frame(b"")


def test_whole_frames_in_one_chunk_come_out_in_order() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(frame(b"one") + frame(b"two") + frame(b"3")) == [b"one", b"two", b"3"]
    assert decoder.buffered == 0


def test_frame_split_at_every_byte_is_reassembled() -> None:
    data = frame(b"hello") + frame(b"world!")
    decoder = FrameDecoder()
    out: list[bytes] = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    assert out == [b"hello", b"world!"]
    decoder.feed_eof()


def test_empty_feed_is_harmless() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    decoder.feed_eof()


def test_oversized_length_is_rejected_from_the_header_alone() -> None:
    decoder = FrameDecoder(max_frame=1024)
    with pytest.raises(ProtocolError, match="exceeds the limit of 1024"):
        decoder.feed(struct.pack(">I", 1025))  # no body at all: nothing was buffered
    assert decoder.buffered == 0


def test_huge_length_prefix_is_rejected_without_buffering_the_following_bytes() -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match="exceeds"):
        decoder.feed(b"\xff\xff\xff\xff" + b"x" * 1000)
    assert decoder.buffered == 0


def test_frame_exactly_at_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(max_frame=16)
    assert decoder.feed(frame(b"x" * 16)) == [b"x" * 16]


def test_zero_length_frame_is_an_error() -> None:
    with pytest.raises(ProtocolError, match="zero-length"):
        FrameDecoder().feed(b"\x00\x00\x00\x00")


def test_end_of_stream_between_frames_is_clean() -> None:
    decoder = FrameDecoder()
    decoder.feed(frame(b"done"))
    decoder.feed_eof()


@pytest.mark.parametrize("partial", [b"\x00", b"\x00\x00\x00", b"\x00\x00\x00\x05ab"])
def test_end_of_stream_inside_a_frame_is_an_error(partial: bytes) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(partial) == []
    with pytest.raises(ProtocolError, match="end of stream inside a frame"):
        decoder.feed_eof()


def test_data_after_end_of_stream_is_an_error() -> None:
    decoder = FrameDecoder()
    decoder.feed_eof()
    with pytest.raises(ProtocolError, match="after end of stream"):
        decoder.feed(frame(b"late"))


def test_a_failed_decoder_keeps_failing() -> None:
    decoder = FrameDecoder(max_frame=8)
    with pytest.raises(ProtocolError):
        decoder.feed(frame(b"x" * 9))
    with pytest.raises(ProtocolError):
        decoder.feed(frame(b"ok"))
    with pytest.raises(ProtocolError):
        decoder.feed_eof()


def test_max_bodies_stops_early_and_leaves_the_rest_unparsed() -> None:
    decoder = FrameDecoder(max_frame=4)
    data = frame(b"abc") + frame(b"a much longer body")
    assert decoder.feed(data, max_bodies=1) == [b"abc"]
    decoder.max_frame = 100  # raised before the next frame's header is checked
    assert decoder.feed(b"") == [b"a much longer body"]


@pytest.mark.parametrize("bad", [0, -1, 1 << 32, 1.5, True])
def test_invalid_max_frame_is_a_bad_argument(bad: object) -> None:
    with pytest.raises(BadArgument):
        FrameDecoder(max_frame=bad)  # type: ignore[arg-type]


def test_bodies_before_a_bad_header_are_returned_and_the_error_comes_next() -> None:
    decoder = FrameDecoder(max_frame=8)
    assert decoder.feed(frame(b"good") + b"\xff\xff\xff\xff") == [b"good"]
    assert decoder.error is not None
    with pytest.raises(ProtocolError, match="exceeds"):
        decoder.feed(b"")
