"""The C build of the wire's hot loops does exactly what the Python reference does.

``shoal/wire/_speedups.c`` stands in for ``_frames.py_split``,
``_codec.py_decode_body``, ``_chunks.py_messages``, ``_chunks.py_deliver`` and
``Encoder.encode_call``/``encode_reply``
when it is built. These tests feed both the same inputs (the published
vectors, generated streams and messages, garbage) and require the same
results, or the same exception with the same message. They import the
extension directly, so they run in the pure-Python pass of the suite too.

The last test checks that a run is on the build it was asked for
(``SHOAL_EXPECT_WIRE``, set by ``scripts/test`` for each pass), so a CI pass
meant for the C build cannot quietly run the Python code instead.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

import shoal
from shoal.errors import BadArgument, ProtocolError
from shoal.pid import Crash, Pid
from shoal.wire import _chunks, _codec, _frames, _native
from shoal.wire._codec import Encoder, py_decode_body

VECTORS = json.loads((Path(__file__).parent / "vectors" / "wire_vectors.json").read_text())


def _built() -> ModuleType | None:
    try:
        module = importlib.import_module("shoal.wire._speedups")
    except ImportError:
        return None
    _codec.setup_speedups(module)  # what _codec does at import when it uses it
    return module


C = _built()
# Skipped only on a developer's machine without a compiler; under CI (which
# builds the extension in both passes) a missing build fails these instead.
needs_c = pytest.mark.skipif(
    C is None and os.environ.get("SHOAL_EXPECT_WIRE") != "c" and not os.environ.get("CI"),
    reason="the C extension is not built here (no compiler at install time); "
           "CI builds it and fails a pass that expected it",
)

PIDS = st.builds(Pid, st.text(min_size=1, max_size=12), st.integers(0, 2**63 - 1),
                 st.integers(0, 2**63 - 1))
SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
           | st.floats(allow_nan=False) | st.text(max_size=20) | st.binary(max_size=20) | PIDS)
TERMS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12,
)
# Fields a peer may send, right or wrong: the fast paths must take exactly
# the messages the reference builds, and refuse the others with its words.
ANY_FIELD = (st.integers(-(2**63), 2**64 - 1) | st.booleans() | st.none() | PIDS
             | st.text(max_size=5) | st.floats(allow_nan=False)
             | st.lists(st.integers(-5, 5), max_size=2))


def outcome(function: Any, *args: Any) -> tuple[str, Any]:
    """What a call did: its result, or its exception's type and message."""
    try:
        return "ok", function(*args)
    except Exception as exc:
        return type(exc).__name__, str(exc)


def packed(fields: list[Any]) -> bytes:
    return msgpack.packb(fields, use_bin_type=True, default=_codec.pack_default,
                         strict_types=True)


# --- frames ----------------------------------------------------------------

@needs_c
@given(frames=st.lists(st.binary(min_size=0, max_size=40), max_size=12),
       tail=st.binary(max_size=7), limit=st.integers(1, 50),
       max_bodies=st.integers(-1, 14), pos=st.integers(0, 3),
       kind=st.sampled_from([bytes, bytearray, memoryview]))
def test_split_equals_the_reference(frames: list[bytes], tail: bytes, limit: int,
                                    max_bodies: int, pos: int, kind: type) -> None:
    stream = b"\0" * pos + b"".join(len(f).to_bytes(4, "big") + f for f in frames) + tail
    data = kind(stream)
    assert C is not None
    assert C.split(data, pos, limit, max_bodies) == _frames.py_split(data, pos, limit,
                                                                       max_bodies)


@needs_c
@pytest.mark.parametrize("limit", [-1, -(2**70), 0, 2**63, 2**70])
def test_split_compares_any_int_limit_as_the_reference(limit: int) -> None:
    assert C is not None
    stream = b"\0\0\0\x02ab\0\0\0\x01c"
    assert C.split(stream, 0, limit, -1) == _frames.py_split(stream, 0, limit, -1)


def test_a_decoder_whose_limit_was_set_to_a_non_int_compares_it_as_python() -> None:
    decoder = _frames.FrameDecoder(10)
    decoder.max_frame = 2.5  # type: ignore[assignment]  # refused by the constructor only
    assert decoder.feed(b"\0\0\0\x02ab") == [b"ab"]
    with pytest.raises(ProtocolError, match=r"limit of 2\.5 bytes"):
        decoder.feed(b"\0\0\0\x03abc")


@needs_c
def test_split_takes_lengths_up_to_u32_and_refuses_a_bad_position() -> None:
    assert C is not None
    huge = b"\xff\xff\xff\xff" + b"x" * 10
    assert C.split(huge, 0, 2**32 - 1, -1) == ([], 0, -1)  # waits for the rest
    assert C.split(huge, 0, 2**32 - 2, -1) == ([], 0, 2**32 - 1)
    with pytest.raises(ValueError, match="pos outside"):
        C.split(b"abc", 4, 10, -1)
    with pytest.raises(TypeError):
        C.split("not bytes", 0, 10, -1)


@needs_c
@given(chunks=st.lists(st.binary(max_size=30), max_size=10), limit=st.integers(1, 64))
def test_a_decoder_on_either_build_splits_a_stream_alike(chunks: list[bytes], limit: int,
                                                         ) -> None:
    """FrameDecoder.feed with the C split against the same decoder with the
    reference: same bodies, same errors, same bytes held, chunk by chunk."""
    assert C is not None
    results = []
    for split in (C.split, _frames.py_split):
        decoder = _frames.FrameDecoder(limit)
        saved = _frames._split
        _frames._split = split
        try:
            results.append([(outcome(decoder.feed, chunk), decoder.buffered)
                            for chunk in chunks])
        finally:
            _frames._split = saved
    assert results[0] == results[1]


# --- decoding --------------------------------------------------------------

@needs_c
@pytest.mark.parametrize("vector", VECTORS["messages"], ids=lambda v: v["name"])
def test_decode_reads_every_vector_as_the_reference(vector: dict[str, Any]) -> None:
    assert C is not None
    body = bytes.fromhex(vector["frame"])[4:]
    assert outcome(C.decode_body, body) == outcome(py_decode_body, body)
    assert type(C.decode_body(body)) is type(py_decode_body(body))


@needs_c
@given(code=st.sampled_from([16, 17, 18, 20, 64, 99, 3, -1, 2**64 - 1]),
       fields=st.lists(ANY_FIELD, max_size=7))
def test_decode_of_any_array_equals_the_reference(code: int, fields: list[Any]) -> None:
    assert C is not None
    body = packed([code, *fields])
    c, reference = outcome(C.decode_body, body), outcome(py_decode_body, body)
    assert c == reference
    if c[0] == "ok" and c[1] is not None:
        assert type(c[1]) is type(reference[1])


@needs_c
@given(ref=st.integers(0, 2**63 - 1), sender=st.none() | PIDS, to=PIDS, request=TERMS,
       timeout_ms=st.integers(0, 2**63 - 1), value=TERMS, queue_len=st.integers(0, 2**63 - 1))
def test_decode_builds_calls_and_replies_equal_to_the_reference(
        ref: int, sender: Pid | None, to: Pid, request: Any, timeout_ms: int, value: Any,
        queue_len: int) -> None:
    assert C is not None
    for fields in ([16, ref, sender, to, request, timeout_ms], [17, ref, value, queue_len]):
        body = packed(fields)
        built, reference = C.decode_body(body), py_decode_body(body)
        assert built == reference and type(built) is type(reference)


@needs_c
@given(body=st.binary(max_size=60))
def test_decode_of_garbage_fails_as_the_reference(body: bytes) -> None:
    assert C is not None
    assert outcome(C.decode_body, body) == outcome(py_decode_body, body)


@needs_c
def test_decode_refuses_bad_ext_payloads_with_the_references_words() -> None:
    assert C is not None
    for ext in (msgpack.ExtType(1, b"\x93\xa1n\x01"), msgpack.ExtType(1, b"garbage"),
                msgpack.ExtType(9, b""), msgpack.ExtType(2, msgpack.packb([1, 2, 3])),
                msgpack.ExtType(1, msgpack.packb(["n", -1, 2]))):
        body = msgpack.packb([17, 1, ext, 0], use_bin_type=True)
        c = outcome(C.decode_body, body)
        assert c[0] == "ProtocolError" and c == outcome(py_decode_body, body)


@needs_c
def test_pids_decoded_from_the_cache_are_the_cached_objects() -> None:
    assert C is not None
    pid = Pid("n1", 7, 9)
    body = packed([17, 1, pid, 0])
    first, second = C.decode_body(body), C.decode_body(body)
    assert first.value == pid and second.value is first.value


# --- messages: split and decode in one call -----------------------------------

def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


PID = Pid("n1", 1, 2)
# One body of each kind messages() meets: taken (CALL, REPLY, FAIL, PING, an
# ignorable code, skipped), and left to the connection's own path (BYE, a
# handshake step, garbage, a field of the wrong type).
KINDS = {
    "call": packed([16, 1, None, PID, "hi", 1000]),
    "reply": packed([17, 1, [1, 2], 0]),
    "fail": packed([18, 2, "noproc", PID, None, 0]),
    "ping": packed([27, 5]),
    "ignorable": packed([99, "from", "a newer release"]),
    "bye": packed([29, "shutdown"]),
    "hello": packed([1, "c", "n", 1, 1, [1], b"0" * 32]),
    "garbage": b"\xc1\xc1",
    "bad-field": packed([17, -1, None, 0]),
}
STREAM = st.lists(st.sampled_from(sorted(KINDS)) | st.binary(min_size=0, max_size=12),
                  max_size=8)


def _stream(parts: list[str | bytes], tail: bytes = b"") -> bytes:
    """Frames of the named kinds (bytes: a raw frame body, maybe empty) and a tail."""
    return b"".join(_frame(KINDS[p] if isinstance(p, str) else p) for p in parts) + tail


@needs_c
@given(parts=STREAM, tail=st.binary(max_size=7), limit=st.integers(1, 64) | st.just(2**20),
       kind=st.sampled_from([bytes, bytearray, memoryview]))
def test_messages_equals_the_reference(parts: list[str | bytes], tail: bytes, limit: int,
                                       kind: type) -> None:
    assert C is not None
    data = kind(_stream(parts, tail))
    c, reference = outcome(C.messages, data, limit), outcome(_chunks.py_messages, data, limit)
    assert c == reference
    assert c[0] == "ok" and [type(m) for m in c[1][0]] == [type(m) for m in reference[1][0]]


def _builds() -> list[Any]:
    return [pytest.param(_chunks.py_messages, id="python"),
            pytest.param(C.messages if C is not None else None, id="c", marks=needs_c)]


@pytest.mark.parametrize("messages", _builds())
def test_messages_take_frames_up_to_the_first_they_cannot_hand_on(messages: Any) -> None:
    def run(parts: list[str | bytes], tail: bytes = b"", limit: int = 2**20) -> tuple[
            list[str], int]:
        taken, pos = messages(_stream(parts, tail), limit)
        return [type(m).__name__ for m in taken], pos

    every = ["call", "ignorable", "reply", "fail", "ping"]
    assert run(every) == (["Call", "Reply", "Fail", "Ping"], len(_stream(every)))
    before = len(_stream(["call"]))
    for stop in ("bye", "hello", "garbage", "bad-field", b""):  # b"": a zero length
        assert run(["call", stop, "reply"]) == (["Call"], before)
    assert run(["call"], tail=b"\0\0\0\x09abc") == (["Call"], before)  # a partial frame
    limit = len(KINDS["reply"])
    assert len(KINDS["call"]) > limit
    assert run(["reply", "call"], limit=limit) == (["Reply"], len(_stream(["reply"])))
    assert run([]) == ([], 0)
    assert messages(b"\0\0", 10) == ([], 0)


@needs_c
def test_messages_refuses_what_is_not_a_buffer_or_a_limit() -> None:
    assert C is not None
    with pytest.raises(TypeError):
        C.messages("not bytes", 10)
    with pytest.raises(TypeError):
        C.messages(b"", 2.5)
    with pytest.raises(TypeError):
        C.messages(b"")


# --- deliver: messages passed to handlers as they are decoded ------------------

class Recorder:
    """Handlers that record what they are passed, one raising for FAIL, and
    the ``failed`` callback recording what it is given."""

    def __init__(self, types: tuple[type, ...]) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.handlers = {t: self.handle for t in types}

    def handle(self, target: Any, msg: Any) -> None:
        self.seen.append((target, msg))
        if type(msg).__name__ == "Fail":
            raise ValueError(f"handler refused {msg.ref}")

    def failed(self, exc: Exception) -> None:
        assert exc.__traceback__ is not None  # logged with where it was raised
        self.seen.append(("failed", repr(exc)))


HANDLED = st.sets(st.sampled_from(["Call", "Reply", "Fail", "Ping"]))


def _deliver_outcome(deliver: Any, data: Any, limit: int, names: set[str]) -> tuple[Any, Any]:
    from shoal import wire
    recorder = Recorder(tuple(getattr(wire, n) for n in sorted(names)))
    return outcome(deliver, data, limit, recorder.handlers, "target", recorder.failed), \
        recorder.seen


@needs_c
@given(parts=STREAM, tail=st.binary(max_size=7), limit=st.integers(1, 64) | st.just(2**20),
       kind=st.sampled_from([bytes, bytearray, memoryview]), names=HANDLED)
def test_deliver_equals_the_reference(parts: list[str | bytes], tail: bytes, limit: int,
                                      kind: type, names: set[str]) -> None:
    assert C is not None
    data = kind(_stream(parts, tail))
    assert _deliver_outcome(C.deliver, data, limit, names) == \
        _deliver_outcome(_chunks.py_deliver, data, limit, names)


def _deliverers() -> list[Any]:
    return [pytest.param(_chunks.py_deliver, id="python"),
            pytest.param(C.deliver if C is not None else None, id="c", marks=needs_c)]


@pytest.mark.parametrize("deliver", _deliverers())
def test_deliver_passes_messages_in_order_up_to_the_first_frame_without_a_handler(
        deliver: Any) -> None:
    from shoal.wire import Call, Fail, Reply

    recorder = Recorder((Call, Reply, Fail))
    every = ["call", "ignorable", "fail", "reply", "ping", "call"]
    pos, count = deliver(_stream(every), 2**20, recorder.handlers, "t", recorder.failed)
    # A PING has no handler here: it and what follows are the connection's.
    assert (pos, count) == (len(_stream(every[:4])), 3)
    assert [type(m).__name__ if t == "t" else t for t, m in recorder.seen] == [
        "Call", "Fail", "failed", "Reply"]  # the handler's error did not stop the rest
    assert recorder.seen[2][1] == "ValueError('handler refused 2')"
    for stop in ("bye", "hello", "garbage", "bad-field", b""):
        recorder.seen.clear()
        assert deliver(_stream(["call", stop, "call"]), 2**20, recorder.handlers, "t",
                       recorder.failed) == (len(_stream(["call"])), 1)
    # Even with a handler for every kind, BYE and a handshake step are not plain.
    from shoal.wire import Bye, Hello
    greedy = Recorder((Call, Bye, Hello))
    assert deliver(_stream(["bye", "hello"]), 2**20, greedy.handlers, "t", greedy.failed) == (0, 0)
    assert deliver(b"\0\0", 10, recorder.handlers, "t", recorder.failed) == (0, 0)


@pytest.mark.parametrize("deliver", _deliverers())
def test_deliver_lets_what_is_not_an_exception_through(deliver: Any) -> None:
    from shoal.wire import Call, Fail

    class Stop(BaseException):
        pass

    def handler(target: Any, msg: Any) -> None:
        raise Stop

    with pytest.raises(Stop):
        deliver(_stream(["call", "call"]), 2**20, {Call: handler}, None, lambda exc: None)

    def failing(exc: Exception) -> None:
        raise RuntimeError("the failure callback failed")

    with pytest.raises(RuntimeError, match="the failure callback failed"):
        deliver(_stream(["fail"]), 2**20, Recorder((Fail,)).handlers, None, failing)


@needs_c
def test_deliver_refuses_what_is_not_a_buffer_a_limit_or_a_dict() -> None:
    assert C is not None
    with pytest.raises(TypeError):
        C.deliver("not bytes", 10, {}, None, print)
    with pytest.raises(TypeError):
        C.deliver(b"", 2.5, {}, None, print)
    with pytest.raises(TypeError, match="handlers must be a dict"):
        C.deliver(b"", 10, [], None, print)
    with pytest.raises(TypeError):
        C.deliver(b"", 10, {})


# --- encoding --------------------------------------------------------------

def encoders() -> tuple[Encoder, Encoder]:
    """The C build's encoder and the reference, with the same limit."""
    assert C is not None
    return _codec.c_encoder(C)(1000), Encoder(1000)


def test_connections_use_the_encoder_of_the_build_in_use() -> None:
    encoder = _codec.new_encoder(1000)
    assert isinstance(encoder, Encoder)
    assert (type(encoder) is Encoder) == (_native.speedups is None)


@needs_c
@given(ref=st.integers(-1, 2**64) | st.booleans(), sender=st.none() | PIDS | st.integers(),
       to=PIDS, request=TERMS | st.sets(st.integers(), max_size=2) | st.text(min_size=990),
       timeout_ms=st.integers(-1, 2**64))
def test_encode_call_equals_the_reference(ref: Any, sender: Any, to: Pid, request: Any,
                                          timeout_ms: Any) -> None:
    fast, reference = encoders()
    expected = outcome(reference.encode_call, ref, sender, to, request, timeout_ms)
    assert outcome(fast.encode_call, ref, sender, to, request, timeout_ms) == expected
    framed, _ = fast.framers()  # the C function, calling the reference where it gives up
    assert outcome(framed, ref, sender, to, request, timeout_ms) == expected


@needs_c
@given(ref=st.integers(-1, 2**64),
       value=TERMS | st.just(Crash(type="E", message="m", traceback="")) | st.just(object()),
       queue_len=st.integers(-1, 2**64) | st.floats(allow_nan=False))
def test_encode_reply_equals_the_reference(ref: int, value: Any, queue_len: Any) -> None:
    fast, reference = encoders()
    _, framed = fast.framers()
    b = outcome(reference.encode_reply, ref, value, queue_len)
    for a in (outcome(fast.encode_reply, ref, value, queue_len),
              outcome(framed, ref, value, queue_len)):
        assert a[0] == b[0]
        if a[0] == "BadArgument" and type(value) is object:
            continue  # the message names the object, whose address differs per call
        assert a == b


@needs_c
def test_encode_over_the_frame_limit_is_refused_with_the_references_words() -> None:
    fast, reference = encoders()
    pid = Pid("n", 1, 2)
    big = "x" * 2000
    assert outcome(fast.encode_call, 1, None, pid, big, 5)[0] == "BadArgument"
    assert (outcome(fast.encode_call, 1, None, pid, big, 5)
            == outcome(reference.encode_call, 1, None, pid, big, 5))
    assert (outcome(fast.encode_reply, 1, big, 0)
            == outcome(reference.encode_reply, 1, big, 0))
    call, reply = fast.framers()
    assert outcome(call, 1, None, pid, big, 5) == outcome(reference.encode_call, 1, None, pid,
                                                          big, 5)
    assert outcome(reply, 1, big, 0) == outcome(reference.encode_reply, 1, big, 0)


def test_an_encoders_framers_frame_as_its_methods() -> None:
    """On either build: what the transport binds gives the frames the
    encoder's methods give, and the reference's errors."""
    encoder = _codec.new_encoder(1000)
    call, reply = encoder.framers()
    pid = Pid("n", 1, 2)
    for request in ("hi", [1, {"a": pid}], None):
        assert call(7, pid, pid, request, 5) == encoder.encode_call(7, pid, pid, request, 5)
        assert reply(7, request, 3) == encoder.encode_reply(7, request, 3)
    with pytest.raises(BadArgument) as info:
        call(7, None, pid, {1, 2}, 5)
    assert info.value.argument == "request"


# --- which build runs ------------------------------------------------------

def load_with(monkeypatch: pytest.MonkeyPatch, value: str | None,
              module: Any = None) -> tuple[Any, str]:
    if value is None:
        monkeypatch.delenv(_native.ENV, raising=False)
    else:
        monkeypatch.setenv(_native.ENV, value)
    if module is not None:
        monkeypatch.setattr(importlib, "import_module", lambda name: module)
    return _native.load()


def test_shoal_pure_python_chooses_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    module, reason = load_with(monkeypatch, "1")
    assert module is None and reason == "SHOAL_PURE_PYTHON=1"
    for value in ("yes", "2", "true"):
        with pytest.raises(BadArgument, match="SHOAL_PURE_PYTHON"):
            load_with(monkeypatch, value)


def test_a_build_of_another_abi_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    stale = ModuleType("shoal.wire._speedups")
    stale.SPEEDUPS_ABI = _native.ABI + 1  # type: ignore[attr-defined]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module, reason = load_with(monkeypatch, "0", stale)
    assert module is None and "reinstall" in reason
    assert any("pure-Python wire code" in str(w.message) for w in caught)


def test_a_missing_build_runs_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Any:
        raise ImportError(name)
    monkeypatch.delenv(_native.ENV, raising=False)
    monkeypatch.setattr(importlib, "import_module", missing)
    module, reason = _native.load()
    assert module is None and "not built" in reason


def test_the_version_line_says_which_build_runs() -> None:
    env = dict(os.environ, SHOAL_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-m", "shoal.cli", "--version"], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "(wire code: python)" in out


def test_this_run_is_on_the_build_it_was_asked_for() -> None:
    """scripts/test sets SHOAL_EXPECT_WIRE for each pass of the suite."""
    expected = os.environ.get("SHOAL_EXPECT_WIRE")
    info = shoal.build_info()
    assert info["wire"] in ("c", "python")
    if expected:
        assert info["wire"] == expected, info["wire_reason"]
