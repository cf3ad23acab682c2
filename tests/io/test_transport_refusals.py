"""The dialler's refusals: which failed dials mean "this node is refused",
and the hold that keeps a refusing peer from being redialled in a loop.

A fake clock drives the holds; no sockets, nothing sleeps.
"""

from __future__ import annotations

import random
import ssl

import pytest

from shoal.errors import AuthenticationFailed, NodeDown, ProtocolError
from shoal.transport import Refused
from shoal.transport._refusals import HOLD_MAX, MAX_HELD, Refusals, explain

ADDRESS = ("127.0.0.1", 7000)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("exc", "word", "closes", "says"), [
    (AuthenticationFailed("peer refused the handshake: auth"), "auth", 0, "secrets differ"),
    (AuthenticationFailed("peer refused the handshake: cluster"), "cluster", 0,
     "another cluster"),
    (AuthenticationFailed("handshake refused (auth): peer's proof does not match the cluster "
                          "secret"), None, 0, "does not match"),
    (ssl.SSLCertVerificationError("certificate verify failed"), None, 0, "not trusted here"),
    (ssl.SSLError("tlsv1 alert unknown ca"), None, 0, "TLS handshake failed"),
    (ProtocolError("connection closed during the handshake"), None, 2, "may use TLS"),
    (NodeDown("a", "connection lost"), None, 2, "may use TLS"),
], ids=["peer-auth", "peer-cluster", "our-auth", "tls-verify", "tls-other", "closed-twice",
        "lost-twice"])
def test_a_refusal_is_explained(exc: BaseException, word: str | None, closes: int,
                                says: str) -> None:
    why = explain(exc, word, closes)
    assert why is not None and says in why


@pytest.mark.parametrize(("exc", "word", "closes"), [
    (AuthenticationFailed("peer refused the handshake: closing"), "closing", 0),
    (AuthenticationFailed("peer refused the handshake: duplicate"), "duplicate", 0),
    (ProtocolError("connection closed during the handshake"), None, 1),
    (ProtocolError("handshake not completed in 5s"), None, 0),
    (ConnectionResetError("reset"), None, 0),
], ids=["closing", "duplicate", "closed-once", "timed-out", "reset"])
def test_what_passes_with_time_is_no_refusal(exc: BaseException, word: str | None,
                                             closes: int) -> None:
    assert explain(exc, word, closes) is None


def test_a_refused_peer_is_held_then_dialled_again_and_holds_grow() -> None:
    clock = Clock()
    refusals = Refusals(clock, random.Random(1))
    assert refusals.check("a", ADDRESS) is None
    error = refusals.record("a", ADDRESS, "the cluster secrets differ")
    assert isinstance(error, Refused) and isinstance(error, AuthenticationFailed)
    assert "authentication refused by node 'a' at 127.0.0.1:7000" in str(error)
    assert refusals.check("a", ADDRESS) is error
    assert refusals.check("a", ("127.0.0.1", 7001)) is None  # another address: not held
    holds = []
    for _ in range(8):
        start = clock.now
        while refusals.check("a", ADDRESS) is not None:
            clock.now += 0.05
        holds.append(clock.now - start)
        refusals.record("a", ADDRESS, "again")
    assert 0.5 <= holds[0] <= 1.1  # the first hold: about a second, jittered
    assert holds[-1] > holds[0] and max(holds) <= HOLD_MAX + 0.1


def test_a_successful_handshake_ends_the_hold() -> None:
    clock = Clock()
    refusals = Refusals(clock, random.Random(2))
    refusals.record("a", ADDRESS, "why")
    refusals.clear("a")
    assert refusals.check("a", ADDRESS) is None and len(refusals) == 0


def test_holds_are_bounded_and_long_expired_ones_pruned() -> None:
    clock = Clock()
    refusals = Refusals(clock, random.Random(3))
    for i in range(MAX_HELD + 10):
        refusals.record(f"n{i}", ADDRESS, "why")
    assert len(refusals) == MAX_HELD
    assert refusals.check("n0", ADDRESS) is None  # the oldest went
    clock.now += 2 * HOLD_MAX + 1
    refusals.record("late", ADDRESS, "why")
    assert len(refusals) == 1


def test_a_hold_does_not_stop_a_dial_meant_for_another_incarnation() -> None:
    refusals = Refusals(Clock(), random.Random(4))
    refusals.record("a", ADDRESS, "the cluster secrets differ", incarnation=1)
    assert refusals.check("a", ADDRESS, 1) is not None
    assert refusals.check("a", ADDRESS) is not None  # the caller did not say
    assert refusals.check("a", ADDRESS, 2) is None  # restarted, perhaps fixed
