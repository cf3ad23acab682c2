"""Property tests: arbitrary bytes in arbitrary chunks never crash the decoders.

Whatever a peer sends, the frame decoder yields bodies or raises
``ProtocolError``; the message decoder yields messages, None (ignorable) or
raises ``ProtocolError``; a Connection yields events and ends with ``Closed``.
Never another exception (G7).
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shoal.errors import ProtocolError
from shoal.pid import Crash, Pid
from shoal.wire import (
    Call,
    Closed,
    Connection,
    ConnectionPair,
    FrameDecoder,
    HandshakeConfig,
    Message,
    Ping,
    Pong,
    Reply,
    Send,
    decode_body,
    pack_term,
    unpack_term,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, last = [], 0
    for point in points:
        chunks.append(data[last:point])
        last = point
    chunks.append(data[last:])
    return chunks


def framed(bodies: list[bytes]) -> bytes:
    return b"".join(struct.pack(">I", len(b)) + b for b in bodies)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=20,
)  # fmt: skip

# Bodies that are msgpack arrays starting with a plausible code: they reach
# the per-message validation instead of failing at the first byte.
plausible_bodies = st.builds(
    lambda code, rest: msgpack.packb([code, *rest], use_bin_type=True),
    st.sampled_from([1, 2, 3, 4, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 64, 200]),
    st.lists(msgpack_values | st.just(msgpack.ExtType(1, msgpack.packb(["n", 1, 2]))), max_size=7),
)


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8),
       st.integers(1, 64))  # fmt: skip
@example(b"\x00\x00\x00\x00", [], 8)
@example(b"\xff\xff\xff\xff", [2], 8)
def test_frame_decoder_on_arbitrary_chunks_yields_bodies_or_protocol_error(
    data: bytes, cuts: list[int], max_frame: int
) -> None:
    decoder = FrameDecoder(max_frame=max_frame)
    try:
        for chunk in split(data, cuts):
            for body in decoder.feed(chunk):
                assert 0 < len(body) <= max_frame
        decoder.feed_eof()
    except ProtocolError:
        pass


@FUZZ
@given(st.lists(st.binary(min_size=1, max_size=50), max_size=6),
       st.lists(st.integers(0, 400), max_size=8))  # fmt: skip
def test_frame_decoder_returns_exactly_the_framed_bodies_whatever_the_chunking(
    bodies: list[bytes], cuts: list[int]
) -> None:
    decoder = FrameDecoder()
    out: list[bytes] = []
    for chunk in split(framed(bodies), cuts):
        out += decoder.feed(chunk)
    decoder.feed_eof()
    assert out == bodies


@FUZZ
@given(st.binary(max_size=200) | plausible_bodies)
@example(b"\x92\x1b\xc1")
def test_message_decoder_on_arbitrary_bytes_yields_message_or_protocol_error(body: bytes) -> None:
    try:
        msg = decode_body(body)
    except ProtocolError:
        return
    assert msg is None or isinstance(msg, Message)


def _open_acceptor() -> Connection:
    secret = b"s"
    ini = Connection(HandshakeConfig(cluster="c", node="a", creation=1, secret=secret),
                     initiator=True)  # fmt: skip
    acc = Connection(HandshakeConfig(cluster="c", node="b", creation=1, secret=secret),
                     initiator=False)  # fmt: skip
    ConnectionPair(ini, acc).pump()
    assert acc.state == "open"
    return acc


@FUZZ
@given(st.lists(st.binary(max_size=40) | plausible_bodies, max_size=5),
       st.lists(st.integers(0, 400), max_size=6), st.booleans(), st.booleans())  # fmt: skip
def test_connection_fed_arbitrary_frames_only_yields_events_then_closed(
    bodies: list[bytes], cuts: list[int], open_first: bool, raw: bool
) -> None:
    conn = (
        _open_acceptor()
        if open_first
        else Connection(HandshakeConfig(cluster="c", node="b", creation=1, secret=b"s"),
                        initiator=False)
    )  # fmt: skip
    data = b"".join(bodies) if raw else framed([b for b in bodies if b])
    events: list[Any] = []
    for chunk in split(data, cuts):
        events += conn.receive_data(chunk)
    events += conn.receive_eof()
    assert isinstance(events[-1], Closed)
    assert all(not isinstance(e, Closed) for e in events[:-1])
    end = events[-1]
    assert end.error is None or isinstance(end.error, ProtocolError)
    assert conn.receive_data(b"more") == []


pids = st.builds(Pid.of, st.text(min_size=1, max_size=10), st.integers(0, 2**63 - 1),
                 st.integers(0, 2**63 - 1))  # fmt: skip
crashes = st.builds(Crash, type=st.text(max_size=10), message=st.text(max_size=10),
                    traceback=st.text(max_size=10))  # fmt: skip
terms = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False) | st.text(max_size=10) | st.binary(max_size=10) | pids | crashes,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=15,
)  # fmt: skip


@FUZZ
@given(terms)
def test_every_term_round_trips(term: Any) -> None:
    assert unpack_term(pack_term(term)) == term
    frame = Send(to=Pid.of("n", 1, 1), message=term)
    from shoal.wire import encode_message

    assert decode_body(encode_message(frame)[4:]) == frame


def _seen(event: Any) -> Any:
    """An event as a test compares it (an error compares by its words)."""
    if isinstance(event, Closed):
        return ("Closed", event.reason, event.by_peer, event.refusal, repr(event.error))
    return event


_pid = msgpack.ExtType(1, msgpack.packb(["n", 1, 2]))
# Valid bodies of the kinds an open connection meets most, BYE among them.
valid_bodies = st.sampled_from([
    msgpack.packb(fields, use_bin_type=True)
    for fields in ([16, 1, None, _pid, "hi", 1000], [17, 1, "hi", 0], [27, 3], [28, 3],
                   [29, "shutdown"], [99, "ignorable"], [3, b"0" * 32])
])


@FUZZ
@given(st.lists(valid_bodies | plausible_bodies | st.binary(max_size=12), max_size=8),
       st.lists(st.integers(0, 400), max_size=6), st.booleans())  # fmt: skip
def test_an_open_connection_yields_the_same_events_with_or_without_its_common_case(
    bodies: list[bytes], cuts: list[int], end: bool
) -> None:
    """Rule 7 of the connection: the frames the one-call split-and-decode
    takes, and whatever it leaves to the frame decoder (partial frames, BYE,
    bad bodies, zero lengths), give the events the decoder's path alone gives."""
    import shoal.wire._connection as connection

    data = framed(bodies)
    seen = []
    for take in (connection.messages, lambda data, limit: ([], 0)):
        saved, connection.messages = connection.messages, take
        try:
            conn = _open_acceptor()
            events: list[Any] = []
            for chunk in split(data, cuts):
                events += conn.receive_data(chunk)
            if end:
                events += conn.receive_eof()
        finally:
            connection.messages = saved
        seen.append([_seen(e) for e in events])
    assert seen[0] == seen[1]


@FUZZ
@given(st.lists(valid_bodies | plausible_bodies | st.binary(max_size=12), max_size=8),
       st.lists(st.integers(0, 400), max_size=6), st.booleans(),
       st.sets(st.sampled_from([Call, Reply, Ping, Pong])))  # fmt: skip
def test_dispatch_hands_on_the_events_receive_data_yields(
    bodies: list[bytes], cuts: list[int], end: bool, handled: set[type[Message]]
) -> None:
    """Rule 8 of the connection: the messages passed to handlers as they
    are decoded, followed by the events dispatch returns, are, chunk by
    chunk, the events receive_data yields for the same chunks."""
    data = framed(bodies)
    expected: list[Any] = []
    conn = _open_acceptor()
    for chunk in split(data, cuts):
        expected += conn.receive_data(chunk)
    if end:
        expected += conn.receive_eof()

    got: list[Any] = []
    conn = _open_acceptor()
    handlers = {kind: lambda target, msg: got.append(msg) for kind in handled}
    for chunk in split(data, cuts):
        _, events = conn.dispatch(chunk, handlers, None, lambda exc: None)
        got += events
    if end:
        got += conn.receive_eof()
    assert [_seen(e) for e in got] == [_seen(e) for e in expected]


def test_dispatch_takes_a_chunk_read_while_open_whole_even_if_a_handler_closes() -> None:
    """A handler that closes the connection does not lose what the same
    read holds after its message: receive_data would have returned it all."""
    conn = _open_acceptor()
    call = msgpack.packb([16, 1, None, _pid, "hi", 1000], use_bin_type=True)
    ping = msgpack.packb([27, 3], use_bin_type=True)
    closed: list[Any] = []

    def close(target: Any, msg: Any) -> None:
        closed.append(msg)
        conn.close("handler closed it")

    taken, events = conn.dispatch(framed([call, ping, call]), {Call: close}, None, print)
    assert taken == 1 and len(closed) == 1
    assert [type(e) for e in events] == [Ping, Call]
    assert conn.state == "closed"
    assert conn.dispatch(framed([call]), {Call: close}, None, print) == (0, [])
