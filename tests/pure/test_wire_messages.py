"""Messages and terms: round trips, validation, and every malformed-body class."""

from __future__ import annotations

import enum
from collections import OrderedDict
from typing import Any

import msgpack
import pytest

from shoal.errors import BadArgument, ProtocolError
from shoal.pid import Crash, Pid
from shoal.wire import (
    FAIL_KINDS,
    IGNORABLE_CODES,
    MAX_DEPTH,
    MESSAGE_TYPES,
    Bye,
    Call,
    Cast,
    Demonitor,
    Down,
    Encoder,
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
    decode_body,
    encode_message,
    pack_term,
    unpack_term,
)

A = Pid.of("api-1", 7, 42)
B = Pid.of("db-2", 3, 1)
CRASH = Crash(type="builtins.KeyError", message="'k'", traceback="Traceback ...")

EVERY_MESSAGE: list[Message] = [
    Call(ref=1, sender=A, to=B, request=["incr", 1], timeout_ms=5000),
    Call(ref=2, sender=None, to=B, request=None, timeout_ms=0),
    Reply(ref=1, value={"n": 6, "who": A}, queue_len=3),
    Fail(ref=1, kind="noproc", pid=B, detail=None, queue_len=0),
    Fail(ref=1, kind="crash", pid=B, detail=["builtins.KeyError", "'k'", "tb"], queue_len=1),
    Fail(ref=1, kind="exited", pid=B, detail=CRASH, queue_len=0),
    Fail(ref=1, kind="overloaded", pid=B, detail=1000, queue_len=1000),
    Fail(ref=1, kind="badrequest", pid=B, detail="no such key", queue_len=0),
    Cast(to=B, request=b"\x00\x01"),
    Send(to=A, message=[1.5, -3, True, False, None, "s", b"b", [], {}]),
    Monitor(ref=7, watcher=A, target=B),
    Demonitor(ref=7, watcher=A, target=B),
    Down(ref=7, target=B, watcher=A, reason="noconnection"),
    Down(ref=8, target=B, watcher=A, reason=CRASH),
    Link(a=A, b=B),
    Unlink(a=A, b=B),
    Exit(sender=B, to=A, reason="killed"),
    Ping(seq=0),
    Pong(seq=2**63 - 1),
    Bye(reason="shutdown"),
]


@pytest.mark.parametrize("msg", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_a_frame(msg: Message) -> None:
    frame = encode_message(msg)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert decode_body(frame[4:]) == msg


def test_every_message_type_is_covered_and_codes_are_unique() -> None:
    assert {type(m) for m in EVERY_MESSAGE} == set(MESSAGE_TYPES)
    codes = [cls.code for cls in MESSAGE_TYPES]
    assert len(set(codes)) == len(codes)
    assert not set(codes) & set(IGNORABLE_CODES)
    assert {"noproc", "crash", "exited", "overloaded", "badrequest"} == FAIL_KINDS


def test_body_is_an_array_whose_first_element_is_the_type_code() -> None:
    body = encode_message(Ping(seq=5))[4:]
    assert msgpack.unpackb(body) == [27, 5]


def test_messages_are_frozen_slotted_and_keyword_only() -> None:
    ping = Ping(seq=1)
    with pytest.raises(AttributeError):
        ping.seq = 2  # type: ignore[misc]
    assert not hasattr(ping, "__dict__")
    with pytest.raises(TypeError):
        Ping(1)  # type: ignore[misc]


def test_monitor_and_demonitor_with_same_fields_differ() -> None:
    assert Monitor(ref=1, watcher=A, target=B) != Demonitor(ref=1, watcher=A, target=B)


# --- validation when built ---------------------------------------------------


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: Call(ref=-1, sender=A, to=B, request=1, timeout_ms=1), "ref"),
        (lambda: Call(ref=True, sender=A, to=B, request=1, timeout_ms=1), "ref"),
        (lambda: Call(ref=1, sender=("a", 1, 2), to=B, request=1, timeout_ms=1), "sender"),
        (lambda: Call(ref=1, sender=A, to="db-2", request=1, timeout_ms=1), "to"),
        (lambda: Call(ref=1, sender=A, to=B, request=1, timeout_ms=1.5), "timeout_ms"),
        (lambda: Reply(ref=1, value=1, queue_len=-1), "queue_len"),
        (lambda: Fail(ref=1, kind="oops", pid=B, detail=None, queue_len=0), "kind"),
        (lambda: Fail(ref=1, kind="crash", pid=B, detail="boom", queue_len=0), "detail"),
        (lambda: Fail(ref=1, kind="noproc", pid=B, detail="x", queue_len=0), "detail"),
        (lambda: Fail(ref=1, kind="overloaded", pid=B, detail="x", queue_len=0), "detail"),
        (lambda: Fail(ref=1, kind="badrequest", pid=B, detail=1, queue_len=0), "detail"),
        (lambda: Link(a=A, b=None), "b"),
        (lambda: Ping(seq=2**63), "seq"),
        (lambda: Bye(reason=None), "reason"),
    ],
)
def test_invalid_field_is_a_bad_argument_naming_it(build: Any, argument: str) -> None:
    with pytest.raises(BadArgument) as caught:
        build()
    assert caught.value.argument == argument


def test_crash_detail_given_as_tuple_is_stored_as_list() -> None:
    fail = Fail(ref=1, kind="crash", pid=B, detail=("t", "m", "tb"), queue_len=0)
    assert fail.detail == ["t", "m", "tb"]


# --- terms --------------------------------------------------------------


class Colour(enum.IntEnum):
    RED = 1


class Shape(str, enum.Enum):  # noqa: UP042 (the old-style mixin is the case under test)
    SQUARE = "square"


def test_pid_and_crash_round_trip_as_ext_types() -> None:
    assert unpack_term(pack_term(A)) == A
    crash = unpack_term(pack_term(CRASH))
    assert crash == CRASH and crash.exception is None


def test_pid_is_ext_1_with_array_payload() -> None:
    ext = msgpack.unpackb(pack_term(A))
    assert ext.code == 1 and msgpack.unpackb(ext.data) == ["api-1", 7, 42]


def test_crash_with_local_exception_travels_without_it() -> None:
    crash = Crash.from_exception(KeyError("k"))
    back = unpack_term(pack_term(crash))
    assert back.type == "builtins.KeyError" and back.exception is None


def test_tuples_become_lists_and_builtin_subclasses_become_their_base() -> None:
    term = (1, (2, 3), OrderedDict(a=Colour.RED), Shape.SQUARE)
    assert unpack_term(pack_term(term)) == [1, [2, 3], {"a": 1}, "square"]


@pytest.mark.parametrize(
    "term",
    [object(), {1, 2}, 2**64, -(2**63) - 1, [object()], {"k": lambda: 0}, complex(1, 2)],
    ids=["object", "set", "too-big", "too-small", "nested-object", "function", "complex"],
)
def test_unencodable_term_is_a_bad_argument_at_the_sender(term: Any) -> None:
    with pytest.raises(BadArgument):
        pack_term(term)


def test_unencodable_request_names_the_request_argument() -> None:
    with pytest.raises(BadArgument) as caught:
        encode_message(Call(ref=1, sender=A, to=B, request=object(), timeout_ms=1))
    assert caught.value.argument == "request"
    with pytest.raises(BadArgument) as caught:
        encode_message(Reply(ref=1, value={"k": {1, 2}}, queue_len=0))
    assert caught.value.argument == "value"


def test_non_str_map_key_is_refused_at_the_sender_not_the_receiver() -> None:
    with pytest.raises(BadArgument) as caught:
        encode_message(Send(to=A, message=[{"ok": {3: "no"}}]))
    assert caught.value.argument == "message"


def test_pid_built_without_validation_is_refused_when_encoded() -> None:
    with pytest.raises(BadArgument):
        encode_message(Send(to=Pid("", -1, 0), message=1))


def test_too_deep_term_is_a_bad_argument() -> None:
    term: list[Any] = []
    for _ in range(400):
        term = [term]
    with pytest.raises(BadArgument, match="nested"):
        pack_term(term)


def _nested(depth: int) -> Any:
    term: Any = "bottom"
    for _ in range(depth):
        term = [term]
    return term


REASON_CARRIERS = {
    "down": lambda reason: [23, 1, B, A, reason],
    "exit": lambda reason: [26, B, A, reason],
    "fail-exited": lambda reason: [18, 1, "exited", B, reason, 0],
}


@pytest.mark.parametrize("kind", sorted(REASON_CARRIERS))
def test_an_exit_reason_nested_too_deep_is_refused_when_it_arrives(kind: str) -> None:
    # Such a reason used to decode, then break the exit path of the process
    # that took it on: it could not be sent on to that process's links.
    fields = REASON_CARRIERS[kind]
    at_limit = decode_body(_packed(fields(_nested(MAX_DEPTH))))
    assert at_limit is not None and decode_body(encode_message(at_limit)[4:]) == at_limit
    with pytest.raises(ProtocolError, match="nested at most 256"):
        decode_body(_packed(fields(_nested(300))))


def _packed(items: list[Any]) -> bytes:
    def pid_ext(obj: Any) -> Any:
        return msgpack.ExtType(1, msgpack.packb(list(obj)))

    data: bytes = msgpack.packb(items, default=pid_ext, strict_types=True, use_bin_type=True)
    return data


def test_encoder_refuses_a_message_larger_than_its_max_frame() -> None:
    with pytest.raises(BadArgument, match="at most 4096"):
        Encoder(max_frame=4096).encode(Send(to=A, message=b"x" * 5000))


# --- malformed bodies ---------------------------------------------------------


def body(*items: Any) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


PID_EXT = msgpack.ExtType(1, msgpack.packb(["n", 1, 2]))

MALFORMED: list[tuple[str, bytes, str]] = [
    ("garbage", b"\xc1\xc1", "malformed"),
    ("truncated", body(20, PID_EXT, "abc")[:-2], "malformed"),
    ("trailing", body(27, 1) + b"\x00", "malformed"),
    ("not-array", msgpack.packb({"t": 27}), "array"),
    ("empty-array", body(), "array"),
    ("str-code", body("27", 1), "unknown message type"),
    ("bool-code", body(True, 1), "unknown message type"),
    ("unknown-code", body(30), "unknown message type 30"),
    ("negative-code", body(-1), "unknown message type"),
    ("too-few-fields", body(16, 1, None, PID_EXT, "r"), "needs 5 fields"),
    ("too-many-fields", body(27, 1, 2), "needs 1 fields"),
    ("ref-as-str", body(17, "1", "v", 0), "ref"),
    ("to-as-list", body(20, ["n", 1, 2], "m"), "to"),
    ("float-seq", body(27, 1.0), "seq"),
    ("bad-fail-kind", body(18, 1, "weird", PID_EXT, None, 0), "kind"),
    ("unknown-ext", body(20, msgpack.ExtType(9, b"x"), 1), "unknown ext type 9"),
    ("pid-ext-not-msgpack", body(20, msgpack.ExtType(1, b"\xc1"), 1), "pid"),
    ("pid-ext-wrong-arity", body(20, msgpack.ExtType(1, msgpack.packb(["n", 1])), 1), "pid"),
    ("pid-ext-bad-node", body(20, msgpack.ExtType(1, msgpack.packb(["", 1, 2])), 1), "pid"),
    ("pid-ext-negative", body(20, msgpack.ExtType(1, msgpack.packb(["n", -1, 2])), 1), "pid"),
    ("crash-ext-non-str", body(20, PID_EXT, msgpack.ExtType(2, msgpack.packb([1, 2, 3]))), "crash"),
    ("int-map-key", body(20, PID_EXT, {1: 2}), "map key"),
    ("bytes-then-list-key", msgpack.packb([20, PID_EXT, {(1,): 2}]), "map key"),
    ("invalid-utf8", b"\x92\x1d\xa2\xff\xfe", "malformed"),
]


@pytest.mark.parametrize(("data", "error"), [(d, e) for _, d, e in MALFORMED],
                         ids=[n for n, _, _ in MALFORMED])  # fmt: skip
def test_malformed_body_is_a_protocol_error_with_a_clear_message(data: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        decode_body(data)


def test_unknown_code_in_the_ignorable_range_is_skipped() -> None:
    for code in (64, 100, 127):
        assert decode_body(body(code, "a field from the future", {"x": 1})) is None


def test_codes_just_outside_the_ignorable_range_are_errors() -> None:
    for code in (63, 128):
        with pytest.raises(ProtocolError):
            decode_body(body(code))


def test_msgpack_timestamp_ext_decodes_to_an_inert_value() -> None:
    stamp = msgpack.Timestamp(seconds=1)
    msg = decode_body(body(20, PID_EXT, stamp))
    assert isinstance(msg, Send) and msg.message == stamp


def test_unpack_term_rejects_input_above_its_limit() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        unpack_term(pack_term("x" * 100), max_size=10)
