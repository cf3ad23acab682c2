"""Who gets in, and what a stranger learns before it proves the secret.

Real managers on loopback; strangers are raw sockets driven by hand. Waits
are bounded (``wait_until``, ``asyncio.timeout``); nothing sleeps to
synchronise.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import shoal
from shoal.errors import AuthenticationFailed
from shoal.testing.cluster import wait_until
from shoal.transport import DEFAULT_MAX_HANDSHAKES, ConnectionManager, PeerConnection
from shoal.transport import TransportConfig as Config
from shoal.transport._handshaking import LOG_EVERY, HandshakeCap
from shoal.wire import (
    Challenge,
    Hello,
    Message,
    Proof,
    Refuse,
    decode_body,
    encode_message,
)

SECRET = b"admission-test-secret"
WAIT = 5.0

pytestmark = pytest.mark.timeout(60)


class Handler:
    def on_message(self, peer: PeerConnection, msg: Message) -> None:
        pass

    def on_peer_up(self, peer_name: str, creation: int, connection: PeerConnection) -> None:
        pass

    def on_peer_down(self, peer_name: str, creation: int, reason: str) -> None:
        pass

    def on_peer_silent(self, peer_name: str, creation: int) -> None:
        pass

    def on_peer_alive(self, peer_name: str, creation: int) -> None:
        pass


async def start(node: str, creation: int = 1, **overrides: Any) -> ConnectionManager:
    config = Config(cluster="test", node=node, creation=creation, secret=SECRET, **overrides)
    manager = ConnectionManager(config, Handler())
    await manager.start()
    return manager


async def _read_frame(reader: asyncio.StreamReader) -> Message | None:
    """The next message, or None at end of stream."""
    try:
        header = await reader.readexactly(4)
        body = await reader.readexactly(int.from_bytes(header, "big"))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return decode_body(body)


async def _stranger(address: tuple[str, int], node: str, creation: int) -> list[Message | None]:
    """HELLO as ``node``, then a PROOF made without the secret: what comes back."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        async with asyncio.timeout(WAIT):
            writer.write(encode_message(Hello(min_version=1, max_version=1, cluster="test",
                                              node=node, creation=creation, nonce=bytes(32))))
            first = await _read_frame(reader)
            if not isinstance(first, Challenge):
                return [first]
            writer.write(encode_message(Proof(digest=bytes(32))))
            return [first, await _read_frame(reader)]
    finally:
        writer.close()


# -- before the proof, every node name gets the same answer --------------------------


async def test_a_stranger_gets_the_same_answers_for_a_live_a_stale_and_an_unknown_name() -> None:
    alpha = await start("alpha")
    beta = await start("beta", creation=2)
    try:
        await beta.connect("alpha", alpha.address)
        await wait_until(lambda: alpha.get("beta") is not None, what="beta up on alpha")
        answers = {
            case: await _stranger(alpha.address, node, creation)
            for case, (node, creation) in {
                "connected": ("beta", 2),  # once "duplicate"
                "stale": ("beta", 1),  # once "stale"
                "unknown": ("gamma", 1),
            }.items()
        }
        for case, (challenge, refusal) in answers.items():
            assert isinstance(challenge, Challenge), case
            assert (challenge.node, challenge.cluster) == ("alpha", "test"), case
            assert refusal == Refuse(reason="auth"), case
        # The connected peer was not disturbed by strangers using its name.
        current = alpha.get("beta")
        assert current is not None and current.peer_creation == 2
    finally:
        await beta.close()
        await alpha.close()


async def test_a_stale_incarnation_that_knows_the_secret_is_told_stale_after_its_proof() -> None:
    alpha = await start("alpha")
    beta2 = await start("beta", creation=2)
    beta1 = await start("beta", creation=1)
    try:
        await beta2.connect("alpha", alpha.address)
        await wait_until(lambda: alpha.get("beta") is not None, what="beta up on alpha")
        with pytest.raises(AuthenticationFailed, match="stale"):
            await beta1.connect("alpha", alpha.address, timeout=WAIT)
    finally:
        for manager in (beta1, beta2, alpha):
            await manager.close()


# -- the cap on connections in the handshake ------------------------------------------


def test_the_cap_on_handshakes_has_a_documented_default_and_is_checked() -> None:
    assert Config(cluster="c", node="n", creation=1, secret=b"s").max_handshakes == 64
    assert DEFAULT_MAX_HANDSHAKES == 64
    with pytest.raises(ValueError, match="max_handshakes"):
        Config(cluster="c", node="n", creation=1, secret=b"s", max_handshakes=0)


async def _half_open(address: tuple[str, int]) -> tuple[asyncio.StreamReader,
                                                          asyncio.StreamWriter]:
    return await asyncio.open_connection(*address)


async def test_connections_past_the_cap_are_closed_at_once_logged_once_and_slots_come_back(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="shoal.transport")
    alpha = await start("alpha", max_handshakes=3)
    beta = await start("beta")
    held = [await _half_open(alpha.address) for _ in range(3)]
    try:
        await wait_until(lambda: alpha.handshaking == 3, what="three half-open connections")
        # Every connection past the cap is closed as soon as it is accepted.
        for _ in range(5):
            reader, writer = await _half_open(alpha.address)
            async with asyncio.timeout(WAIT):
                assert await reader.read() == b""
            writer.close()
        assert alpha.handshaking == 3
        refused = [r for r in caplog.records if "max_handshakes" in r.getMessage()]
        assert len(refused) == 1  # rate-limited: one line, not one per connection
        assert "3 accepted connections are in the handshake" in refused[0].getMessage()
        # A half-open socket going away frees its slot; a node then gets in,
        # and once authenticated it no longer holds a slot.
        held.pop()[1].close()
        await wait_until(lambda: alpha.handshaking == 2, what="a slot to come back")
        conn = await beta.connect("alpha", alpha.address, timeout=WAIT)
        assert conn.is_open and alpha.handshaking == 2
    finally:
        for _, writer in held:
            writer.close()
        await beta.close()
        await alpha.close()


async def test_a_half_open_connection_holds_its_slot_at_most_the_handshake_timeout() -> None:
    alpha = await start("alpha", max_handshakes=1, handshake_timeout=0.3)
    reader, writer = await _half_open(alpha.address)
    try:
        await wait_until(lambda: alpha.handshaking == 1, what="the half-open connection")
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""  # dropped at the handshake deadline
        await wait_until(lambda: alpha.handshaking == 0, what="its slot to come back")
    finally:
        writer.close()
        await alpha.close()


async def test_a_node_passes_its_max_handshakes_to_its_listener(tmp_path: Any) -> None:
    with pytest.raises(shoal.BadArgument) as info:
        shoal.Node("n", store="memory://", max_handshakes=0)
    assert info.value.argument == "max_handshakes"
    async with shoal.Node("n", store=f"sqlite://{tmp_path}/c.db", secret="s" * 32,
                          max_handshakes=2) as node:
        assert node.address is not None
        held = [await _half_open(node.address) for _ in range(2)]
        try:
            reader, writer = await _half_open(node.address)
            async with asyncio.timeout(WAIT):
                assert await reader.read() == b""  # the third is closed at once
            writer.close()
        finally:
            for _, held_writer in held:
                held_writer.close()


# -- what strangers cost in the log ----------------------------------------------------


async def _stranger_leaves(address: tuple[str, int], first_bytes: bytes) -> None:
    """Send ``first_bytes`` (maybe none), end the stream, and read until the
    node closes its side: the node has then handled the failed handshake."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(first_bytes)
        writer.write_eof()
        async with asyncio.timeout(WAIT):
            while await reader.read(65536):
                pass
    finally:
        writer.close()


async def test_strangers_failing_the_handshake_are_logged_per_interval_not_one_line_each(
        caplog: pytest.LogCaptureFixture) -> None:
    # A port scanner, a TCP health check or a flood of half-open sockets: one
    # WARNING line with the address for the first, the rest counted (each at
    # DEBUG), so the log grows with time, not with what a stranger opens.
    caplog.set_level(logging.DEBUG, logger="shoal.transport")
    alpha = await start("alpha")
    try:
        await _stranger_leaves(alpha.address, b"")
        for i in range(30):
            await _stranger_leaves(alpha.address, b"" if i % 2 else b"\x00\x00\x00\x03abc")
        warnings = [r.getMessage() for r in caplog.records
                    if r.levelno >= logging.WARNING and r.name == "shoal.transport"]
        assert len(warnings) == 1, warnings
        assert "127.0.0.1" in warnings[0] and "handshake" in warnings[0]
        assert alpha.handshaking == 0
    finally:
        await alpha.close()


def test_failed_handshakes_after_the_interval_are_summed_up_in_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="shoal.transport")
    now = [0.0]
    cap: HandshakeCap[object] = HandshakeCap(4, lambda: now[0])
    for i in range(10):
        cap.failed(("10.0.0.1", i), "connection closed during the handshake")
    now[0] = LOG_EVERY
    cap.failed(("10.0.0.2", 1), "bad frame")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "10.0.0.1" in lines[0]
    assert "(10 accepted" in lines[1] and "10.0.0.2" in lines[1] and "bad frame" in lines[1]
