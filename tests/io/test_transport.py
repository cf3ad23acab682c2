"""The asyncio transport on loopback with real sockets.

Every wait is on an event with a bounded deadline (``Recorder.wait_for``);
nothing sleeps to synchronise. Heartbeat tests use small intervals.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest

from shoal.errors import AuthenticationFailed, NodeDown
from shoal.pid import Pid
from shoal.testing.hand_peer import HandPeer
from shoal.transport import ConnectionManager, PeerConnection, TransportConfig
from shoal.transport._peer import FLUSH_BYTES, FLUSH_FRAMES
from shoal.wire import (
    Call,
    HandshakeConfig,
    Message,
    Ping,
    Pong,
    Reply,
    Send,
)

SECRET = b"loopback-test-secret"
DEADLINE = 5.0


class Recorder:
    """A PeerHandler that records every callback and wakes waiters."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.messages: list[tuple[str | None, Message]] = []
        self._changed = asyncio.Condition()

    def _record(self, entry: tuple[Any, ...]) -> None:
        self.log.append(entry)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def on_message(self, peer: PeerConnection, msg: Message) -> None:
        self.messages.append((peer.peer_node, msg))
        if isinstance(msg, Call):  # echo server behaviour for the tests
            peer.send(Reply(ref=msg.ref, value=msg.request, queue_len=0))
        self._record(("message", peer.peer_node, msg))

    def on_peer_up(self, peer_name: str, creation: int, connection: PeerConnection) -> None:
        self._record(("up", peer_name, creation))

    def on_peer_down(self, peer_name: str, creation: int, reason: str) -> None:
        self._record(("down", peer_name, creation, reason))

    def on_peer_silent(self, peer_name: str, creation: int) -> None:
        self._record(("silent", peer_name, creation))

    def on_peer_alive(self, peer_name: str, creation: int) -> None:
        self._record(("alive", peer_name, creation))

    def count(self, kind: str, name: str | None = None) -> int:
        return sum(1 for e in self.log if e[0] == kind and (name is None or e[1] == name))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = DEADLINE) -> None:
        async def until() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(until(), timeout)


def config(node: str, creation: int = 1, **overrides: Any) -> TransportConfig:
    base = TransportConfig(cluster="test", node=node, creation=creation, secret=SECRET)
    return replace(base, **overrides)


async def start(
    node: str, creation: int = 1, **overrides: Any
) -> tuple[ConnectionManager, Recorder]:
    recorder = Recorder()
    manager = ConnectionManager(config(node, creation, **overrides), recorder)
    await manager.start()
    return manager, recorder


@pytest.fixture
async def pair() -> AsyncIterator[tuple[ConnectionManager, Recorder, ConnectionManager, Recorder]]:
    a, ra = await start("alpha")
    b, rb = await start("beta")
    yield a, ra, b, rb
    await a.close()
    await b.close()


async def test_two_managers_connect_and_exchange_call_and_reply(pair: Any) -> None:
    a, ra, b, rb = pair
    conn = await a.connect("beta", b.address)
    await rb.wait_for(lambda: rb.count("up", "alpha") == 1)
    assert ra.count("up", "beta") == 1
    pid_a, pid_b = Pid.of("alpha", 1, 1), Pid.of("beta", 1, 1)
    for ref in range(50):
        conn.send(Call(ref=ref, sender=pid_a, to=pid_b, request=["n", ref], timeout_ms=1000))
    await ra.wait_for(lambda: len(ra.messages) == 50)
    assert [m.ref for _, m in ra.messages] == list(range(50))  # type: ignore[attr-defined]
    assert ra.messages[7] == ("beta", Reply(ref=7, value=["n", 7], queue_len=0))
    assert a.get("beta") is conn and b.get("alpha") is not None
    assert await a.connect("beta", b.address) is conn  # one connection per peer


class TypedRecorder(Recorder):
    """A sink with ``message_handlers``: CALLs go to their own function."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []
        self.message_handlers = {Call: self.on_call}

    def on_call(self, peer: PeerConnection, msg: Call) -> None:
        self.order.append(f"call {msg.ref}")
        self._record(("call", peer.peer_node, msg))

    def on_message(self, peer: PeerConnection, msg: Message) -> None:
        self.order.append(type(msg).__name__)
        super().on_message(peer, msg)


@asynccontextmanager
async def towards(sink: Recorder) -> AsyncIterator[tuple[Recorder, ConnectionManager,
                                                          PeerConnection]]:
    """alpha (a plain recorder) connected to beta, whose sink is ``sink``:
    alpha's recorder, beta's manager and alpha's connection to beta."""
    a, ra = await start("alpha")
    b = ConnectionManager(config("beta"), sink)
    await b.start()
    try:
        yield ra, b, await a.connect("beta", b.address)
    finally:
        await a.close()
        await b.close()


async def test_a_sinks_message_handlers_take_their_types_in_stream_order() -> None:
    typed = TypedRecorder()
    async with towards(typed) as (_, _, conn):
        pid_a, pid_b = Pid.of("alpha", 1, 1), Pid.of("beta", 1, 1)
        conn.send(Send(to=pid_b, message="first"))
        conn.send(Call(ref=1, sender=pid_a, to=pid_b, request="x", timeout_ms=1000))
        conn.send(Send(to=pid_b, message="last"))
        await typed.wait_for(lambda: len(typed.order) == 3)
        # The CALL went to its handler only (on_message would have echoed a
        # REPLY); the SENDs around it to on_message, all in the order sent.
        assert typed.order == ["Send", "call 1", "Send"]
        assert typed.count("call", "alpha") == 1 and typed.count("message", "alpha") == 2


class FailingRecorder(TypedRecorder):
    """CALL ref 2 makes its handler raise."""

    def on_call(self, peer: PeerConnection, msg: Call) -> None:
        super().on_call(peer, msg)
        if msg.ref == 2:
            raise RuntimeError("handler bug on ref 2")


async def test_a_handler_that_raises_is_logged_and_the_messages_after_it_still_arrive(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="shoal.transport")
    failing = FailingRecorder()
    async with towards(failing) as (_, b, conn):
        pid_a, pid_b = Pid.of("alpha", 1, 1), Pid.of("beta", 1, 1)
        for ref in range(1, 5):  # one loop turn: read together, most likely in one chunk
            conn.send(Call(ref=ref, sender=pid_a, to=pid_b, request="x", timeout_ms=1000))
        conn.send(Send(to=pid_b, message="after"))
        await failing.wait_for(lambda: len(failing.order) == 5)
        assert failing.order == ["call 1", "call 2", "call 3", "call 4", "Send"]
        [record] = [r for r in caplog.records if "callback on_message failed" in r.getMessage()]
        assert record.exc_info is not None and "handler bug on ref 2" in str(record.exc_info[1])
        assert "on_call" in caplog.text  # the traceback names where it was raised
        assert conn.is_open and b.get("alpha") is not None


async def test_a_sinks_handlers_for_ping_and_pong_are_ignored_and_pings_still_answered(
        ) -> None:
    typed = TypedRecorder()
    taken: list[Message] = []
    typed.message_handlers = MappingProxyType(  # any mapping; copied per connection
        {Call: typed.on_call, Ping: lambda peer, msg: taken.append(msg),
         Pong: lambda peer, msg: taken.append(msg)})
    async with towards(typed) as (ra, b, conn):
        before = conn.statistics().heartbeats
        conn.send(Ping(seq=7))
        conn.send(Call(ref=1, sender=Pid.of("alpha", 1, 1), to=Pid.of("beta", 1, 1),
                       request="x", timeout_ms=1000))
        await typed.wait_for(lambda: typed.order == ["call 1"])
        # beta answered the PING with a PONG before it took the CALL: a SEND
        # from beta now reaches alpha after it (one TCP stream, in order).
        back = b.get("alpha")
        assert back is not None
        back.send(Send(to=Pid.of("alpha", 1, 1), message="after the pong"))
        await ra.wait_for(lambda: ra.count("message", "beta") == 1)
        assert conn.statistics().heartbeats == before + 1  # the PONG it read
        assert taken == []


async def test_listener_reports_bound_address_on_loopback() -> None:
    manager, _ = await start("solo")
    host, port = manager.address
    assert host == "127.0.0.1" and port > 0
    await manager.close()


async def test_wrong_secret_is_refused_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    good, rgood = await start("good")
    bad, rbad = await start("bad", secret=b"not-the-secret")
    caplog.set_level(logging.WARNING, logger="shoal.transport")
    with pytest.raises(AuthenticationFailed):
        await bad.connect("good", good.address, timeout=DEADLINE)
    assert good.get("bad") is None and bad.get("good") is None
    assert rgood.count("up") == 0 and rbad.count("up") == 0
    assert any("auth" in r.getMessage() and "127.0.0.1" in r.getMessage() for r in caplog.records)
    await good.close()
    await bad.close()


async def test_other_cluster_is_refused() -> None:
    a, _ = await start("alpha")
    b, _ = await start("beta", cluster="elsewhere")
    with pytest.raises(AuthenticationFailed, match="cluster"):
        await b.connect("alpha", a.address, timeout=DEADLINE)
    await a.close()
    await b.close()


async def _raw_send(address: tuple[str, int], data: bytes) -> bytes:
    """Write bytes from a raw socket and return what comes back until close."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), DEADLINE)
    writer.close()
    return received


async def test_garbage_bytes_close_that_connection_and_listener_keeps_serving(
    pair: Any, caplog: pytest.LogCaptureFixture
) -> None:
    a, _ra, b, rb = pair
    caplog.set_level(logging.WARNING, logger="shoal.transport")
    await _raw_send(b.address, struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1")
    assert any("protocol error" in r.getMessage() or "malformed" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    await a.connect("beta", b.address)
    await rb.wait_for(lambda: rb.count("up", "alpha") == 1)


async def test_oversized_length_prefix_closes_at_once_and_listener_keeps_serving(
    pair: Any, caplog: pytest.LogCaptureFixture
) -> None:
    a, _ra, b, _rb = pair
    caplog.set_level(logging.WARNING, logger="shoal.transport")
    # Claims 1 GiB; only the header is sent, and the listener must not wait for more.
    await _raw_send(b.address, struct.pack(">I", 1 << 30))
    assert any("exceeds the limit" in r.getMessage() for r in caplog.records)
    conn = await a.connect("beta", b.address)
    assert conn.is_open


async def test_message_before_handshake_closes_connection(pair: Any) -> None:
    _, _, b, rb = pair
    pid = Pid.of("beta", 1, 1)
    from shoal.wire import encode_message

    data = await _raw_send(b.address, encode_message(Send(to=pid, message="sneaky")))
    assert data == b""  # closed without a word: no handshake step to answer
    assert rb.messages == []


async def _connect_both_ways_at_once(left: str, right: str) -> None:
    a, ra = await start(left)
    b, rb = await start(right)
    ca, cb = await asyncio.gather(a.connect(right, b.address), b.connect(left, a.address))
    assert ca.is_open and cb.is_open
    await ra.wait_for(lambda: a.get(right) is not None)
    await rb.wait_for(lambda: b.get(left) is not None)
    ka, kb = a.get(right), b.get(left)
    assert ka is not None and kb is not None
    assert ka is ca and kb is cb
    assert ka.initiator and not kb.initiator  # `left` sorts lower: its dial is kept
    # Both ends of one and the same TCP connection.
    assert ka.peer_address == kb._transport.get_extra_info("sockname")  # type: ignore[union-attr]
    assert len(a.peers()) == 1 and len(b.peers()) == 1
    assert ra.count("down") == 0 and rb.count("down") == 0  # decided before either was up
    await a.close()
    await b.close()


async def test_simultaneous_connect_ends_with_exactly_one_connection_on_both_sides() -> None:
    for attempt in range(5):  # several interleavings, bounded
        await _connect_both_ways_at_once(f"left{attempt}", f"right{attempt}")


async def test_peer_close_reports_down_with_bye_reason(pair: Any) -> None:
    a, ra, b, rb = pair
    await a.connect("beta", b.address)
    await rb.wait_for(lambda: rb.count("up", "alpha") == 1)
    await b.close("deploying")
    await ra.wait_for(lambda: ra.count("down", "beta") == 1)
    down = next(e for e in ra.log if e[0] == "down")
    assert down[1:3] == ("beta", 1) and "deploying" in down[3]
    assert a.get("beta") is None
    with pytest.raises(NodeDown):
        a.send("beta", Send(to=Pid.of("beta", 1, 1), message=1))


async def test_killed_peer_socket_reports_down(pair: Any) -> None:
    a, ra, b, rb = pair
    await a.connect("beta", b.address)
    await rb.wait_for(lambda: b.get("alpha") is not None)
    conn = b.get("alpha")
    assert conn is not None
    conn.abort("simulated crash")
    await ra.wait_for(lambda: ra.count("down", "beta") == 1)


async def test_new_creation_replaces_old_connection_and_reports_old_down() -> None:
    a, ra = await start("alpha")
    b1, _ = await start("beta", creation=1)
    await b1.connect("alpha", a.address)
    await ra.wait_for(lambda: ra.count("up", "beta") == 1)
    b2, _ = await start("beta", creation=2)  # a restart whose old socket is not yet closed
    await b2.connect("alpha", a.address)
    await ra.wait_for(lambda: ra.count("up", "beta") == 2)
    kinds = [(e[0], e[2]) for e in ra.log if e[1] == "beta" and e[0] in ("up", "down")]
    assert kinds == [("up", 1), ("down", 1), ("up", 2)]
    current = a.get("beta")
    assert current is not None and current.peer_creation == 2
    await b1.close()
    await b2.close()
    await a.close()


async def test_old_creation_is_refused_as_stale() -> None:
    a, ra = await start("alpha")
    b2, _ = await start("beta", creation=2)
    await b2.connect("alpha", a.address)
    await ra.wait_for(lambda: ra.count("up", "beta") == 1)
    old, _ = await start("beta", creation=1)
    with pytest.raises(AuthenticationFailed, match="stale"):
        await old.connect("alpha", a.address, timeout=DEADLINE)
    current = a.get("beta")
    assert current is not None and current.peer_creation == 2
    for manager in (old, b2, a):
        await manager.close()


async def test_wrong_node_at_address_is_refused() -> None:
    a, _ = await start("alpha")
    b, _ = await start("beta")
    with pytest.raises(AuthenticationFailed, match="name"):
        await a.connect("gamma", b.address, timeout=DEADLINE)
    await a.close()
    await b.close()


class SilentPeer(HandPeer):
    """A hand-driven peer: completes the handshake, then says nothing."""

    def __init__(self, node: str) -> None:
        super().__init__(HandshakeConfig(cluster="test", node=node, creation=1, secret=SECRET))

    def speak(self) -> None:
        self.send(Pong(seq=1))


async def test_heartbeat_timeout_reports_silent_then_alive_when_bytes_arrive() -> None:
    a, ra = await start("alpha", heartbeat_interval=0.05, heartbeat_timeout=0.2)
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_connection(lambda: SilentPeer("mute"), *a.address)
    await asyncio.wait_for(peer.established.wait(), DEADLINE)
    await ra.wait_for(lambda: ra.count("up", "mute") == 1)
    started = loop.time()
    await ra.wait_for(lambda: ra.count("silent", "mute") == 1, timeout=2.0)
    assert loop.time() - started < 1.0
    assert a.get("mute") is not None  # silence is suspicion, not death
    peer.speak()
    await ra.wait_for(lambda: ra.count("alive", "mute") == 1, timeout=2.0)
    peer.transport.close()  # type: ignore[union-attr]
    await ra.wait_for(lambda: ra.count("down", "mute") == 1)
    await a.close()


async def test_idle_connected_managers_exchange_pings_and_stay_alive() -> None:
    fast = {"heartbeat_interval": 0.05, "heartbeat_timeout": 0.2}
    a, ra = await start("alpha", **fast)
    b, rb = await start("beta", **fast)
    conn = await a.connect("beta", b.address)
    # A negative check needs time to pass: wait (bounded) for a silence that
    # must not come, across four heartbeat timeouts of an idle connection.
    with pytest.raises(TimeoutError):
        await ra.wait_for(lambda: ra.count("silent") + rb.count("silent") > 0, timeout=0.8)
    stats = conn.statistics()
    assert stats.messages_received >= 4 and stats.messages_sent >= 4  # pings and pongs
    assert ra.count("message") == 0  # heartbeats never reach the runtime
    await a.close()
    await b.close()


async def test_reconnect_after_listener_comes_back() -> None:
    a, ra = await start("alpha", backoff_initial=0.02, backoff_max=0.1)
    with socket.socket() as probe:  # reserve a port, then free it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    failed = asyncio.Event()

    class OnFailure(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "failed (attempt" in record.getMessage():
                failed.set()

    watcher = OnFailure()
    logger = logging.getLogger("shoal.transport")
    logger.addHandler(watcher)
    logger.setLevel(logging.DEBUG)
    try:
        dial = asyncio.create_task(a.connect("beta", ("127.0.0.1", port), timeout=DEADLINE))
        await asyncio.wait_for(failed.wait(), DEADLINE)  # refused at least once
    finally:
        logger.removeHandler(watcher)
        logger.setLevel(logging.NOTSET)
    b, rb = await start("beta", port=port)
    conn = await asyncio.wait_for(dial, DEADLINE)
    assert conn.peer_node == "beta"
    await rb.wait_for(lambda: rb.count("up", "alpha") == 1)
    await b.close()
    await ra.wait_for(lambda: ra.count("down", "beta") == 1)
    b, rb = await start("beta", creation=2, port=port)
    conn2 = await a.connect("beta", ("127.0.0.1", port), timeout=DEADLINE)
    assert conn2.peer_creation == 2
    await a.close()
    await b.close()


async def test_connect_gives_up_with_node_down_when_nobody_listens() -> None:
    a, _ = await start("alpha", backoff_initial=0.01, backoff_max=0.02, max_connect_attempts=3)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(NodeDown) as caught:
        await a.connect("beta", ("127.0.0.1", port), timeout=DEADLINE)
    assert caught.value.not_started
    await a.close()


def count_writes(conn: PeerConnection) -> list[int]:
    """The sizes of the connection's writes to its socket from now on."""
    writes: list[int] = []
    transport = conn._transport
    assert transport is not None
    original = transport.write

    def counting_write(data: Any) -> None:
        writes.append(len(data))
        original(data)

    transport.write = counting_write  # type: ignore[method-assign]
    return writes


async def test_many_sends_in_one_turn_are_coalesced_into_a_few_writes(pair: Any) -> None:
    a, _ra, b, rb = pair
    conn = await a.connect("beta", b.address)
    pid = Pid.of("beta", 1, 1)
    writes = count_writes(conn)
    for i in range(200):
        conn.send(Send(to=pid, message=i))
    await rb.wait_for(lambda: len(rb.messages) == 200)
    # The first frame at once, then the other 199 in parts of FLUSH_FRAMES
    # (the peer starts on each part while the rest is produced), the last
    # part at the end of the turn.
    assert len(writes) == 1 + -(-199 // FLUSH_FRAMES)
    assert [m.message for _, m in rb.messages] == list(range(200))  # type: ignore[attr-defined]


async def test_a_burst_of_large_frames_goes_out_by_the_byte_bound(pair: Any) -> None:
    a, _ra, b, rb = pair
    conn = await a.connect("beta", b.address)
    pid = Pid.of("beta", 1, 1)
    writes = count_writes(conn)
    blob = b"x" * (FLUSH_BYTES // 4)
    for i in range(9):
        conn.send(Send(to=pid, message=[i, blob]))
    await rb.wait_for(lambda: len(rb.messages) == 9)
    assert len(writes) == 3  # the first at once, then two parts of four frames
    assert all(size >= FLUSH_BYTES for size in writes[1:])
    assert [m.message[0] for _, m in rb.messages] == list(range(9))  # type: ignore[attr-defined]


async def test_refused_connect_fails_at_once_when_told_not_to_retry() -> None:
    a, _ = await start("alpha", backoff_initial=1.0, backoff_max=1.0)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NodeDown, match="refused") as caught:
        await a.connect("beta", ("127.0.0.1", port), retry_refused=False)
    assert caught.value.not_started
    assert loop.time() - started < 0.9  # no backoff delay was taken
    await a.close()


def test_two_managers_connect_and_exchange_messages_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        a, ra = await start("alpha")
        b, _rb = await start("beta")
        conn = await a.connect("beta", b.address, timeout=DEADLINE)
        pid_a, pid_b = Pid.of("alpha", 1, 1), Pid.of("beta", 1, 1)
        for ref in range(20):
            conn.send(Call(ref=ref, sender=pid_a, to=pid_b, request=ref, timeout_ms=1000))
        await ra.wait_for(lambda: len(ra.messages) == 20)
        await b.close("bye")
        await ra.wait_for(lambda: ra.count("down", "beta") == 1)
        await a.close()

    uvloop.run(scenario())


async def test_backpressure_pauses_writing_and_wait_writable_resumes(pair: Any) -> None:
    a, _ra, b, rb = pair
    conn = await a.connect("beta", b.address)
    await rb.wait_for(lambda: b.get("alpha") is not None)
    receiver = b.get("alpha")
    assert receiver is not None and receiver._transport is not None
    receiver._transport.pause_reading()  # the peer stops reading: buffers fill up
    chunk = Send(to=Pid.of("beta", 1, 1), message=b"x" * 256 * 1024)
    for _ in range(2000):  # bounded: kernel buffers hold a few MiB at most
        if conn.write_paused:
            break
        conn.send(chunk)
        await asyncio.sleep(0)  # let the loop hand the frames to the socket
    assert conn.write_paused
    receiver._transport.resume_reading()
    await asyncio.wait_for(conn.wait_writable(), DEADLINE)
    assert not conn.write_paused
