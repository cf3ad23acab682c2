"""Property tests: valid frames of every message kind, mutated, never crash a decoder.

``test_wire_fuzz`` feeds random bytes; most of them fail at the first byte.
Here every example starts as a valid frame of one message kind (handshake
steps included) and is then changed the way a buggy or hostile peer would:
one field replaced by any msgpack value (a list or a map where a str was
expected, a huge int, an ext of the wrong shape, a deeply nested term), a
field added or removed, the code swapped, or bytes flipped, cut or inserted.
The only exception that may come out of ``decode_body`` is ``ProtocolError``,
and a ``Connection`` delivers the valid frames that came before the bad one,
then one ``Closed`` carrying a ``ProtocolError`` (G7).
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shoal.errors import ProtocolError
from shoal.pid import Crash, Pid
from shoal.wire import (
    FAIL_KINDS,
    MAX_DEPTH,
    Bye,
    Call,
    Cast,
    Challenge,
    Closed,
    Connection,
    ConnectionPair,
    Demonitor,
    Down,
    Exit,
    Fail,
    HandshakeConfig,
    Hello,
    Link,
    Message,
    Monitor,
    Ping,
    Pong,
    Proof,
    Refuse,
    Reply,
    Send,
    Unlink,
    decode_body,
    encode_message,
)

MUTATE = settings(max_examples=600, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])  # fmt: skip

u63 = st.integers(0, 2**63 - 1)
names = st.text(min_size=1, max_size=8)
pids = st.builds(Pid.of, names, u63, u63)
crashes = st.builds(Crash, type=st.text(max_size=8), message=st.text(max_size=8),
                    traceback=st.text(max_size=8))  # fmt: skip
terms = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=8) | st.binary(max_size=8) | pids | crashes,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)  # fmt: skip
nonces = st.binary(min_size=32, max_size=32)


def _fail(kind: str, draw_detail: Any) -> st.SearchStrategy[Fail]:
    return st.builds(Fail, ref=u63, kind=st.just(kind), pid=pids, detail=draw_detail,
                     queue_len=u63)  # fmt: skip


def _nested(depth: int) -> Any:
    term: Any = "bottom"
    for _ in range(depth):
        term = [term]
    return term


# One strategy per message kind: every class on the wire, FAIL once per kind.
VALID: dict[str, st.SearchStrategy[Message]] = {
    "hello": st.builds(Hello, min_version=st.just(1), max_version=st.integers(1, 5),
                       cluster=names, node=names, creation=u63, nonce=nonces),
    "challenge": st.builds(Challenge, version=st.integers(1, 5), cluster=names, node=names,
                           creation=u63, nonce=nonces),
    "proof": st.builds(Proof, digest=nonces),
    "refuse": st.builds(Refuse, reason=st.text(max_size=64)),
    "call": st.builds(Call, ref=u63, sender=st.none() | pids, to=pids, request=terms,
                      timeout_ms=u63),
    "reply": st.builds(Reply, ref=u63, value=terms, queue_len=u63),
    "fail-noproc": _fail("noproc", st.none()),
    "fail-crash": _fail("crash", st.lists(st.text(max_size=8), min_size=3, max_size=3)),
    "fail-exited": _fail("exited", st.text(max_size=8) | crashes),
    "fail-overloaded": _fail("overloaded", u63),
    "fail-badrequest": _fail("badrequest", st.text(max_size=8)),
    "cast": st.builds(Cast, to=pids, request=terms),
    "send": st.builds(Send, to=pids, message=terms),
    "monitor": st.builds(Monitor, ref=u63, watcher=pids, target=pids),
    "demonitor": st.builds(Demonitor, ref=u63, watcher=pids, target=pids),
    "down": st.builds(Down, ref=u63, target=pids, watcher=pids,
                      reason=st.text(max_size=8) | crashes),
    "link": st.builds(Link, a=pids, b=pids),
    "unlink": st.builds(Unlink, a=pids, b=pids),
    "exit": st.builds(Exit, sender=pids, to=pids, reason=st.text(max_size=8) | crashes),
    "ping": st.builds(Ping, seq=u63),
    "pong": st.builds(Pong, seq=u63),
    "bye": st.builds(Bye, reason=st.text(max_size=8)),
}  # fmt: skip
valid_messages = st.one_of(*VALID.values())

# What a field may be replaced with: anything msgpack can carry, including
# the shapes that once escaped as TypeError (a list or map where a str was
# expected), out-of-range ints, bad ext payloads and over-deep nesting.
replacements = st.one_of(
    terms,
    st.lists(st.text(max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(-(2**63), 2**64 - 1), max_size=3),
    st.sampled_from([-1, 2**63, 2**64 - 1, -(2**63), 0.0, True, "", b"", "x" * 300,
                     sorted(FAIL_KINDS), {k: 1 for k in FAIL_KINDS}]),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=12)),
    st.builds(lambda fields: msgpack.ExtType(1, _pack(fields)),
              st.lists(terms | st.lists(st.integers(-(2**63), 2**64 - 1)), max_size=4)),
    st.builds(lambda fields: msgpack.ExtType(2, _pack(fields)), st.lists(terms, max_size=4)),
    st.just(_nested(MAX_DEPTH + 10)),
)  # fmt: skip


def _pack(value: Any) -> bytes:
    def default(obj: Any) -> Any:
        if isinstance(obj, Pid):
            return msgpack.ExtType(1, msgpack.packb(list(obj)))
        if isinstance(obj, Crash):
            return msgpack.ExtType(2, msgpack.packb([obj.type, obj.message, obj.traceback]))
        raise TypeError(obj)

    data: bytes = msgpack.packb(value, default=default, use_bin_type=True, strict_types=True)
    return data


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    """A valid message's body, changed in one of the ways a peer could."""
    msg = draw(valid_messages)
    body = encode_message(msg)[4:]
    array = msgpack.unpackb(body, raw=False, strict_map_key=False)
    how = draw(st.sampled_from(["field", "field", "field", "extra", "drop", "code", "bytes"]))
    if how == "field" and len(array) > 1:
        array[draw(st.integers(1, len(array) - 1))] = draw(replacements)
    elif how == "extra":
        array.append(draw(replacements))
    elif how == "drop":
        del array[draw(st.integers(0, len(array) - 1))]
    elif how == "code":
        array[0] = draw(st.sampled_from([*range(0, 32), 63, 64, 127, 128, -1, "16", None]))
    if how != "bytes":
        return _pack(array)
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if edit == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif edit == "cut":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize("kind", sorted(VALID))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_valid_message_kind_round_trips(kind: str, data: st.DataObject) -> None:
    msg = data.draw(VALID[kind])
    assert decode_body(encode_message(msg)[4:]) == msg


@MUTATE
@given(mutated_bodies())
@example(_pack([18, 1, ["noproc"], Pid.of("n", 1, 2), None, 0]))  # FAIL kind a list
@example(_pack([18, 1, {"noproc": 1}, Pid.of("n", 1, 2), None, 0]))  # FAIL kind a map
@example(_pack([23, 1, Pid.of("n", 1, 2), Pid.of("m", 1, 2), _nested(MAX_DEPTH + 1)]))
def test_mutated_frame_of_any_kind_decodes_or_raises_protocol_error(body: bytes) -> None:
    try:
        msg = decode_body(body)
    except ProtocolError:
        return
    assert msg is None or isinstance(msg, Message)


def _open_pair() -> tuple[Connection, Connection]:
    secret = b"s"
    ini = Connection(HandshakeConfig(cluster="c", node="a", creation=1, secret=secret),
                     initiator=True)  # fmt: skip
    acc = Connection(HandshakeConfig(cluster="c", node="b", creation=1, secret=secret),
                     initiator=False)  # fmt: skip
    ConnectionPair(ini, acc).pump()
    assert ini.state == acc.state == "open"
    return ini, acc


_AFTER_HANDSHAKE = [kind for kind in VALID
                    if kind not in {"hello", "challenge", "proof", "refuse", "bye"}]


@MUTATE
@given(st.lists(st.one_of(*(VALID[k] for k in _AFTER_HANDSHAKE)), min_size=1, max_size=4),
       mutated_bodies(), st.booleans())  # fmt: skip
@example([Ping(seq=1), Call(ref=1, sender=None, to=Pid.of("b", 1, 1), request=1,
                            timeout_ms=0)],
         _pack([18, 1, ["noproc"], Pid.of("n", 1, 2), None, 0]), True)  # fmt: skip
def test_valid_frames_before_a_mutated_one_are_delivered_then_closed(
    before: list[Message], bad: bytes, one_read: bool
) -> None:
    sender, conn = _open_pair()
    good = b"".join(sender.send(m) for m in before)
    chunks = [good + _frame(bad)] if one_read else [good, _frame(bad)]
    events: list[Any] = []
    for chunk in chunks:
        events += conn.receive_data(chunk)
    messages = [e for e in events if isinstance(e, Message)]
    assert messages[: len(before)] == before
    closed = [e for e in events if isinstance(e, Closed)]
    if closed:  # the mutation may have left a valid (or ignorable) frame
        assert events[-1] is closed[0] and len(closed) == 1
        assert closed[0].error is None or isinstance(closed[0].error, ProtocolError)
        assert conn.receive_data(_frame(bad)) == []
