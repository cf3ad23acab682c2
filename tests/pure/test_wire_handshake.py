"""Handshake state machine and sans-IO Connection, driven in memory."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from shoal.errors import AuthenticationFailed, BadArgument, ProtocolError
from shoal.pid import Pid
from shoal.wire import (
    HANDSHAKE_MAX_FRAME,
    PENDING,
    Bye,
    Call,
    Challenge,
    Closed,
    Connection,
    ConnectionPair,
    Established,
    Handshake,
    HandshakeConfig,
    Hello,
    Ping,
    Proof,
    Refuse,
    Reply,
    Send,
    decode_body,
    encode_message,
    proof_digest,
)

SECRET = b"the-cluster-secret"


def cfg(node: str, **kw: Any) -> HandshakeConfig:
    base: dict[str, Any] = {"cluster": "prod", "node": node, "creation": 1, "secret": SECRET}
    base.update(kw)
    return HandshakeConfig(**base)


def counter_bytes(start: int) -> Callable[[int], bytes]:
    counter = itertools.count(start)
    return lambda n: bytes([next(counter) % 256]) * n


def connect(
    a: HandshakeConfig, b: HandshakeConfig, **acceptor_kw: Any
) -> tuple[ConnectionPair, Connection, Connection]:
    ini = Connection(a, initiator=True, random_bytes=counter_bytes(1))
    acc = Connection(b, initiator=False, random_bytes=counter_bytes(100), **acceptor_kw)
    pair = ConnectionPair(ini, acc)
    pair.pump()
    return pair, ini, acc


def closed(events: list[Any]) -> Closed:
    assert events and isinstance(events[-1], Closed), events
    return events[-1]


# --- success ----------------------------------------------------------------


def test_matching_secret_and_cluster_establish_both_sides() -> None:
    pair, ini, acc = connect(cfg("a", creation=5), cfg("b", creation=9))
    assert pair.events["initiator"] == [
        Established(version=1, node="b", creation=9, initiator=True)
    ]
    assert pair.events["acceptor"] == [
        Established(version=1, node="a", creation=5, initiator=False)
    ]
    assert ini.state == acc.state == "open"


def test_messages_flow_both_ways_after_the_handshake() -> None:
    _, ini, acc = connect(cfg("a"), cfg("b"))
    call = Call(ref=1, sender=Pid.of("a", 1, 1), to=Pid.of("b", 1, 1), request="x", timeout_ms=9)
    assert acc.receive_data(ini.send(call)) == [call]
    reply = Reply(ref=1, value="y", queue_len=0)
    assert ini.receive_data(acc.send(reply)) == [reply]


def test_secret_never_appears_on_the_wire() -> None:
    ini = Connection(cfg("a"), initiator=True)
    acc = Connection(cfg("b"), initiator=False)
    wire = b""
    for _ in range(3):
        out = ini.data_to_send()
        wire += out
        acc.receive_data(out)
        back = acc.data_to_send()
        wire += back
        ini.receive_data(back)
    assert ini.state == "open" and SECRET not in wire


def test_acceptor_sends_its_message_in_the_same_chunk_as_its_final_proof() -> None:
    ini = Connection(cfg("a"), initiator=True)
    acc = Connection(cfg("b"), initiator=False)
    acc.receive_data(ini.data_to_send())
    ini.receive_data(acc.data_to_send())
    acc.receive_data(ini.data_to_send())
    assert acc.state == "open"
    big = Send(to=Pid.of("a", 1, 1), message=b"x" * (HANDSHAKE_MAX_FRAME * 2))
    events = ini.receive_data(acc.data_to_send() + acc.send(big))
    assert isinstance(events[0], Established) and events[1] == big


# --- versions ------------------------------------------------------------------


def test_highest_common_version_is_chosen() -> None:
    ini = Handshake(cfg("a", min_version=1, max_version=3), initiator=True)
    acc = Handshake(cfg("b", min_version=2, max_version=5), initiator=False)
    (hello,) = ini.start()
    (challenge,) = acc.receive(hello)
    assert isinstance(challenge, Challenge) and challenge.version == 3
    (proof,) = ini.receive(challenge)
    (proof_back,) = acc.receive(proof)
    assert ini.receive(proof_back) == []
    assert ini.result is not None and acc.result is not None
    assert ini.result.version == acc.result.version == 3


def test_no_common_version_is_refused_on_both_sides() -> None:
    pair, ini, acc = connect(
        cfg("a", min_version=1, max_version=1), cfg("b", min_version=2, max_version=3)
    )
    acc_end = closed(pair.events["acceptor"])
    assert isinstance(acc_end.error, AuthenticationFailed) and "version" in str(acc_end.error)
    ini_end = closed(pair.events["initiator"])
    assert isinstance(ini_end.error, AuthenticationFailed) and ini_end.refusal == "version"
    assert ini.state == acc.state == "closed"


def test_initiator_refuses_a_version_outside_its_range() -> None:
    ini = Handshake(cfg("a"), initiator=True)
    ini.start()
    bad = Challenge(version=2, cluster="prod", node="b", creation=1, nonce=b"\x02" * 32)
    with pytest.raises(AuthenticationFailed, match="version"):
        ini.receive(bad)
    assert ini.refusal == Refuse(reason="version")


# --- refusals -------------------------------------------------------------


def test_wrong_secret_is_refused_by_the_acceptor_and_nothing_is_established() -> None:
    pair, _ini, _acc = connect(cfg("a", secret=b"wrong"), cfg("b"))
    assert not any(isinstance(e, Established) for e in pair.events["acceptor"])
    assert not any(isinstance(e, Established) for e in pair.events["initiator"])
    assert closed(pair.events["acceptor"]).error is not None
    assert closed(pair.events["initiator"]).refusal == "auth"


def test_acceptor_with_wrong_secret_is_detected_by_the_initiator() -> None:
    # The acceptor never proves itself to a peer that failed: here the
    # initiator's proof fails on the acceptor, so the acceptor refuses first.
    pair, _, _ = connect(cfg("a"), cfg("b", secret=b"other"))
    assert closed(pair.events["initiator"]).refusal == "auth"


def test_initiator_rejects_a_forged_acceptor_proof() -> None:
    ini = Handshake(cfg("a"), initiator=True, random_bytes=counter_bytes(1))
    acc = Handshake(cfg("b"), initiator=False, random_bytes=counter_bytes(50))
    (proof,) = ini.receive(acc.receive(ini.start()[0])[0])
    acc.receive(proof)
    with pytest.raises(AuthenticationFailed, match="auth"):
        ini.receive(Proof(digest=b"\x00" * 32))
    assert ini.result is None


def test_other_cluster_is_refused_by_the_initiator_from_the_challenge() -> None:
    pair, _, _ = connect(cfg("a", cluster="staging"), cfg("b"))
    assert "cluster 'prod'" in str(closed(pair.events["initiator"]).error)
    assert closed(pair.events["acceptor"]).refusal == "cluster"


def _proof_for(hello: Hello, challenge: Challenge, secret: bytes = SECRET) -> Proof:
    return Proof(digest=proof_digest(
        secret, "initiator", version=challenge.version, min_version=hello.min_version,
        max_version=hello.max_version, cluster=hello.cluster,
        initiator=(hello.node, hello.creation), acceptor=(challenge.node, challenge.creation),
        initiator_nonce=hello.nonce, acceptor_nonce=challenge.nonce))


def test_acceptor_refuses_another_cluster_only_after_the_peer_proved_itself() -> None:
    acc = Handshake(cfg("b"), initiator=False, random_bytes=counter_bytes(100))
    hello = Hello(min_version=1, max_version=1, cluster="staging", node="a", creation=1,
                  nonce=bytes(32))
    (challenge,) = acc.receive(hello)
    assert isinstance(challenge, Challenge) and challenge.cluster == "prod"
    with pytest.raises(AuthenticationFailed, match="cluster"):
        acc.receive(_proof_for(hello, challenge))
    assert acc.refusal == Refuse(reason="cluster") and acc.result is None


@pytest.mark.parametrize("word", ["stale", "duplicate", "closing"])
def test_a_stranger_gets_a_challenge_then_auth_whatever_the_node_would_decide(
        word: str) -> None:
    """Before the peer proves it knows the secret, nothing depends on which
    nodes are alive or connected: the policy is not even asked."""
    asked: list[tuple[str, int]] = []

    def vet(node: str, creation: int) -> str:
        asked.append((node, creation))
        return word

    acc = Handshake(cfg("b"), initiator=False, random_bytes=counter_bytes(100), vet_peer=vet)
    hello = Hello(min_version=1, max_version=1, cluster="prod", node="a", creation=1,
                  nonce=bytes(32))
    (challenge,) = acc.receive(hello)
    assert isinstance(challenge, Challenge) and asked == []
    with pytest.raises(AuthenticationFailed, match="auth"):
        acc.receive(_proof_for(hello, challenge, secret=b"a guess"))
    assert acc.refusal == Refuse(reason="auth") and asked == []


def test_the_initiator_vets_the_acceptor_only_after_its_proof() -> None:
    asked: list[tuple[str, int]] = []

    def vet(node: str, creation: int) -> str:
        asked.append((node, creation))
        return "stale"

    ini = Connection(cfg("a"), initiator=True, random_bytes=counter_bytes(1), vet_peer=vet)
    acc = Connection(cfg("b", creation=5), initiator=False, random_bytes=counter_bytes(100))
    acc.receive_data(ini.data_to_send())  # HELLO
    ini.receive_data(acc.data_to_send())  # CHALLENGE
    assert asked == [] and ini.state == "handshake"
    acc.receive_data(ini.data_to_send())  # the initiator's PROOF
    events = ini.receive_data(acc.data_to_send())  # the acceptor's PROOF
    assert asked == [("b", 5)]
    assert "stale" in str(closed(events).error)
    assert closed(acc.receive_data(ini.data_to_send())).refusal == "stale"


def test_vet_peer_refusal_word_reaches_the_initiator() -> None:
    pair, _, _ = connect(cfg("a"), cfg("b"), vet_peer=lambda node, creation: "stale")
    assert closed(pair.events["initiator"]).refusal == "stale"


def _deferred() -> tuple[ConnectionPair, Connection, Connection]:
    pair, ini, acc = connect(cfg("a", creation=7), cfg("b"),
                             vet_peer=lambda node, creation: PENDING)
    assert acc.pending_admission == ("a", 7)
    assert acc.state == ini.state == "handshake"
    assert not pair.events["initiator"] and not pair.events["acceptor"]  # our PROOF waits
    return pair, ini, acc


def test_an_admission_deferred_by_the_acceptor_establishes_when_decided() -> None:
    pair, _, acc = _deferred()
    [established] = acc.decide_admission(None)
    assert isinstance(established, Established) and established.node == "a"
    assert acc.pending_admission is None and acc.state == "open"
    pair.pump()
    assert isinstance(pair.events["initiator"][0], Established)
    assert acc.decide_admission(None) == []  # decided once


def test_an_admission_deferred_by_the_acceptor_refuses_with_its_word() -> None:
    pair, ini, acc = _deferred()
    assert closed(acc.decide_admission("stale")).error is not None
    assert acc.refusal_sent == "stale"
    pair.pump()
    assert closed(pair.events["initiator"]).refusal == "stale"
    assert ini.state == acc.state == "closed"


def test_a_frame_while_the_admission_is_deferred_is_a_protocol_error() -> None:
    acc = _deferred()[2]
    error = closed(acc.receive_data(encode_message(Proof(digest=bytes(32))))).error
    assert isinstance(error, ProtocolError)
    assert acc.pending_admission is None
    assert acc.decide_admission(None) == []  # the connection is gone: nothing to decide


def test_an_initiator_cannot_defer_its_admission() -> None:
    ini = Connection(cfg("a"), initiator=True, vet_peer=lambda node, creation: PENDING)
    pair = ConnectionPair(ini, Connection(cfg("b"), initiator=False))
    with pytest.raises(BadArgument):
        pair.pump()


def test_initiator_refuses_an_unexpected_node_at_the_address() -> None:
    ini = Connection(cfg("a"), initiator=True, expect_node="c")
    acc = Connection(cfg("b"), initiator=False)
    pair = ConnectionPair(ini, acc)
    pair.pump()
    assert "expected node 'c'" in str(closed(pair.events["initiator"]).error)
    assert closed(pair.events["acceptor"]).refusal == "name"


def test_peer_claiming_our_own_name_is_refused() -> None:
    pair, _, _ = connect(cfg("same"), cfg("same", creation=2))
    assert closed(pair.events["initiator"]).refusal == "self"


# --- reflection and replay ----------------------------------------------------


def test_reflected_hello_is_refused() -> None:
    """An attacker echoes our HELLO back as if it were a peer's challenge."""
    ini = Handshake(cfg("a"), initiator=True, random_bytes=counter_bytes(7))
    (hello,) = ini.start()
    assert isinstance(hello, Hello)
    echoed = Challenge(version=1, cluster="prod", node="b", creation=1, nonce=hello.nonce)
    with pytest.raises(AuthenticationFailed, match="reflected"):
        ini.receive(echoed)


def test_a_proof_cannot_be_replayed_in_the_other_role() -> None:
    """The initiator's digest, sent back as the acceptor's, must not verify."""
    ini = Handshake(cfg("a"), initiator=True, random_bytes=counter_bytes(1))
    acc = Handshake(cfg("b"), initiator=False, random_bytes=counter_bytes(50))
    (proof,) = ini.receive(acc.receive(ini.start()[0])[0])
    with pytest.raises(AuthenticationFailed, match="auth"):
        ini.receive(proof)  # reflected to its sender


def test_a_proof_from_one_connection_fails_on_another() -> None:
    first_ini = Handshake(cfg("a"), initiator=True, random_bytes=counter_bytes(1))
    first_acc = Handshake(cfg("b"), initiator=False, random_bytes=counter_bytes(50))
    (old_proof,) = first_ini.receive(first_acc.receive(first_ini.start()[0])[0])
    # Same identities, fresh acceptor nonce: the recorded proof is useless.
    second_acc = Handshake(cfg("b"), initiator=False, random_bytes=counter_bytes(90))
    assert first_ini._hello is not None
    second_acc.receive(first_ini._hello)  # the recorded HELLO, replayed
    with pytest.raises(AuthenticationFailed, match="auth"):
        second_acc.receive(old_proof)


def test_digest_depends_on_every_transcript_input() -> None:
    base: dict[str, Any] = {
        "version": 1, "min_version": 1, "max_version": 1, "cluster": "prod",
        "initiator": ("a", 1), "acceptor": ("b", 2),
        "initiator_nonce": b"\x01" * 32, "acceptor_nonce": b"\x02" * 32,
    }  # fmt: skip
    reference = proof_digest(SECRET, "initiator", **base)
    assert proof_digest(SECRET, "acceptor", **base) != reference
    assert proof_digest(b"other", "initiator", **base) != reference
    changes: dict[str, Any] = {
        "version": 2, "min_version": 2, "max_version": 3, "cluster": "prodx",
        "initiator": ("a", 2), "acceptor": ("c", 2),
        "initiator_nonce": b"\x03" * 32, "acceptor_nonce": b"\x04" * 32,
    }  # fmt: skip
    for key, value in changes.items():
        assert proof_digest(SECRET, "initiator", **{**base, key: value}) != reference, key


# --- nothing but the handshake before it completes ---------------------------


def test_message_before_the_handshake_is_rejected_by_the_acceptor() -> None:
    acc = Connection(cfg("b"), initiator=False)
    sneaky = encode_message(Send(to=Pid.of("b", 1, 1), message="hi"))
    end = closed(acc.receive_data(sneaky))
    assert isinstance(end.error, ProtocolError) and "expected Hello" in str(end.error)
    assert acc.receive_data(sneaky) == []  # closed: everything after is ignored


def test_message_before_the_acceptor_proof_is_rejected_by_the_initiator() -> None:
    ini = Connection(cfg("a"), initiator=True)
    acc = Connection(cfg("b"), initiator=False)
    acc.receive_data(ini.data_to_send())
    ping = encode_message(Ping(seq=1))
    end = closed(ini.receive_data(acc.data_to_send() + ping))
    assert "expected Proof" in str(end.error) or "expected" in str(end.error)


def test_ignorable_message_before_the_handshake_is_rejected() -> None:
    acc = Connection(cfg("b"), initiator=False)
    body = bytes([0x91, 0x40])
    end = closed(acc.receive_data(len(body).to_bytes(4, "big") + body))
    assert "before the handshake" in str(end.error)


def test_oversized_frame_before_the_handshake_is_rejected_at_the_small_limit() -> None:
    acc = Connection(cfg("b"), initiator=False)
    end = closed(acc.receive_data((HANDSHAKE_MAX_FRAME + 1).to_bytes(4, "big")))
    assert "exceeds the limit" in str(end.error)


def test_handshake_message_after_the_handshake_is_an_error() -> None:
    _, _ini, acc = connect(cfg("a"), cfg("b"))
    again = Hello(min_version=1, max_version=1, cluster="prod", node="a", creation=1,
                  nonce=b"\x05" * 32)  # fmt: skip
    end = closed(acc.receive_data(encode_message(again)))
    assert "after handshake" in str(end.error)


def test_sending_before_established_is_a_bad_argument() -> None:
    ini = Connection(cfg("a"), initiator=True)
    with pytest.raises(BadArgument):
        ini.send(Ping(seq=1))


def test_sending_a_handshake_message_on_an_open_connection_is_a_bad_argument() -> None:
    _, ini, _ = connect(cfg("a"), cfg("b"))
    with pytest.raises(BadArgument):
        ini.send(Refuse(reason="auth"))


# --- endings ----------------------------------------------------------------


def test_bye_closes_in_order_and_later_bytes_are_ignored() -> None:
    _, ini, acc = connect(cfg("a"), cfg("b"))
    ping = ini.send(Ping(seq=1))
    events = acc.receive_data(ping + ini.close("deploy") + b"garbage")
    assert events == [Ping(seq=1), Closed(reason="deploy", by_peer=True)]
    assert acc.state == "closed"


def test_messages_before_a_bad_header_in_the_same_chunk_are_delivered_first() -> None:
    _, ini, acc = connect(cfg("a"), cfg("b"))
    events = acc.receive_data(ini.send(Ping(seq=1)) + b"\xff\xff\xff\xff")
    assert events[0] == Ping(seq=1)
    assert "exceeds the limit" in str(closed(events).error)


def test_end_of_stream_when_open_is_an_orderly_close() -> None:
    _, _, acc = connect(cfg("a"), cfg("b"))
    end = closed(acc.receive_eof())
    assert end.error is None and end.by_peer


def test_end_of_stream_mid_frame_is_a_protocol_error() -> None:
    _, ini, acc = connect(cfg("a"), cfg("b"))
    frame = ini.send(Ping(seq=1))
    assert acc.receive_data(frame[:-1]) == []
    assert "inside a frame" in str(closed(acc.receive_eof()).error)


def test_end_of_stream_during_the_handshake_is_a_protocol_error() -> None:
    acc = Connection(cfg("b"), initiator=False)
    assert "during the handshake" in str(closed(acc.receive_eof()).error)


def test_local_close_before_open_sends_nothing() -> None:
    ini = Connection(cfg("a"), initiator=True)
    assert ini.close() == b""
    assert decode_body(Connection(cfg("a"), initiator=True).data_to_send()[4:]) is not None


def test_ignorable_message_after_the_handshake_is_skipped() -> None:
    _, ini, acc = connect(cfg("a"), cfg("b"))
    body = bytes([0x92, 0x50, 0xA1, 0x78])  # [80, "x"]
    frame = len(body).to_bytes(4, "big") + body
    assert acc.receive_data(frame + ini.send(Ping(seq=3))) == [Ping(seq=3)]


def test_bye_frame_is_valid_on_its_own() -> None:
    _, ini, _ = connect(cfg("a"), cfg("b"))
    assert decode_body(ini.close("x")[4:]) == Bye(reason="x")


@pytest.mark.parametrize(
    "kw",
    [{"secret": b""}, {"secret": "text"}, {"cluster": ""}, {"node": "x" * 256},
     {"node": ""}, {"creation": -1}, {"min_version": 0},
     {"min_version": 3, "max_version": 2}],
)  # fmt: skip
def test_invalid_handshake_config_is_a_bad_argument(kw: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"cluster": "prod", "node": "a", "creation": 1, "secret": SECRET}
    with pytest.raises(BadArgument):
        HandshakeConfig(**{**fields, **kw})


def test_random_bytes_of_the_wrong_size_is_a_bad_argument() -> None:
    with pytest.raises(BadArgument):
        Connection(cfg("a"), initiator=True, random_bytes=lambda n: b"short")
