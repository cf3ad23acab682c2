"""The Call/Reply fast path encodes exactly what the general encoder does."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.errors import BadArgument
from shoal.pid import Pid
from shoal.wire import Call, Encoder, Reply, decode_body

PIDS = st.builds(Pid, st.text(min_size=1, max_size=20), st.integers(0, 2**40),
                 st.integers(0, 2**40))
TERMS = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=30) | st.binary(max_size=30) | PIDS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=5),
    max_leaves=20,
)


@given(ref=st.integers(0, 2**62), sender=st.none() | PIDS, to=PIDS, request=TERMS,
       timeout_ms=st.integers(0, 2**40))
def test_fast_call_frames_equal_general_ones(ref: int, sender: Pid | None, to: Pid,
                                             request: Any, timeout_ms: int) -> None:
    encoder = Encoder()
    fast = encoder.encode_call(ref, sender, to, request, timeout_ms)
    general = encoder.encode(Call(ref=ref, sender=sender, to=to, request=request,
                                  timeout_ms=timeout_ms))
    assert fast == general
    assert decode_body(fast[4:]) == Call(ref=ref, sender=sender, to=to, request=request,
                                         timeout_ms=timeout_ms)


@given(ref=st.integers(0, 2**62), value=TERMS, queue_len=st.integers(0, 2**40))
def test_fast_reply_frames_equal_general_ones(ref: int, value: Any, queue_len: int) -> None:
    encoder = Encoder()
    assert encoder.encode_reply(ref, value, queue_len) == encoder.encode(
        Reply(ref=ref, value=value, queue_len=queue_len))


@pytest.mark.parametrize("bad", [object(), {1: "int key"}, {"set": {1, 2}}])
def test_fast_call_names_the_unencodable_request(bad: Any) -> None:
    with pytest.raises(BadArgument) as info:
        Encoder().encode_call(1, None, Pid("n", 1, 1), bad, 1000)
    assert info.value.argument == "request"


def test_fast_reply_names_the_unencodable_value() -> None:
    with pytest.raises(BadArgument) as info:
        Encoder().encode_reply(1, object(), 0)
    assert info.value.argument == "value"


def test_fast_reply_refuses_a_frame_over_the_limit() -> None:
    with pytest.raises(BadArgument):
        Encoder(max_frame=4096).encode_reply(1, b"x" * 5000, 0)
