"""What one node takes from another: exit reasons it can pass on, answers
only from the connection a call went out on, signals only about the
sender's own processes (STYLE.md rule 21), and nothing after a connection
closed.

Two real nodes in this process share an SQLite store and talk over
loopback TCP. The attacker is a third, *authenticated* peer: a raw wire
client that knows the cluster secret and can say what a real node never
would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

import shoal
import shoal.wire as wire
from shoal.runtime.replies import UNSENDABLE_REASON
from shoal.testing.registration import register_peer, wait_seen

SECRET = "peer-trust-test-secret-0123456789"
WAIT = 5.0

pytestmark = pytest.mark.timeout(60)


class Inbox(shoal.GenServer):
    """Records every info message; runs a callable a call carries."""

    async def init(self, box: list[Any], changed: asyncio.Event, *, trap: bool = False) -> None:
        self.box = box
        self.changed = changed
        self.trap_exit = trap

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if callable(request):
            return request(self)
        return request

    async def handle_cast(self, request: Any) -> None:
        if callable(request):
            request(self)

    async def handle_info(self, message: Any) -> None:
        self.box.append(message)
        self.changed.set()


class Box:
    """What Inbox processes received, with a bounded wait."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.changed = asyncio.Event()

    async def wait_for(self, match: Callable[[Any], bool], timeout: float = WAIT) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                for item in self.items:
                    if match(item):
                        return item
                self.changed.clear()
                await self.changed.wait()


def _stopper(reason: Any) -> Callable[[Any], None]:
    def stop_now(server: Any) -> None:
        raise shoal.Stop(reason)

    return stop_now


def _nested(depth: int) -> Any:
    term: Any = "bottom"
    for _ in range(depth):
        term = [term]
    return term


class RawPeer:
    """An authenticated peer driven by hand: it knows the secret, and sends
    whatever frames a test gives it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 conn: wire.Connection) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = conn
        self.received: list[wire.Event] = []

    @classmethod
    async def connect(cls, node: shoal.Node, *, name: str = "mallory",
                      creation: int = 1) -> RawPeer:
        assert node.address is not None
        reader, writer = await asyncio.open_connection(*node.address)
        config = wire.HandshakeConfig(cluster=node.cluster, node=name, creation=creation,
                                      secret=SECRET.encode())
        peer = cls(reader, writer, wire.Connection(config, initiator=True, expect_node=node.name))
        writer.write(peer.conn.data_to_send())
        async with asyncio.timeout(WAIT):
            while peer.conn.state == "handshake":
                await peer._read()
        assert peer.conn.state == "open", peer.received
        return peer

    async def _read(self) -> None:
        data = await self.reader.read(65536)
        self.received += self.conn.receive_data(data) if data else self.conn.receive_eof()
        self.writer.write(self.conn.data_to_send())

    def send(self, *messages: wire.Message) -> None:
        """Write the messages' frames in one write."""
        self.writer.write(b"".join(self.conn.send(m) for m in messages))

    async def wait_for(self, match: Callable[[wire.Event], bool]) -> wire.Event:
        async with asyncio.timeout(WAIT):
            while True:
                for event in self.received:
                    if match(event):
                        return event
                await self._read()

    async def wait_closed(self) -> None:
        """Read until the node closes the connection."""
        async with asyncio.timeout(WAIT):
            while await self.reader.read(65536):
                pass

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[shoal.Node, shoal.Node]]:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", store=store, secret=SECRET) as a, \
            shoal.Node("b", store=store, secret=SECRET) as b:
        # The attacker is a member: registered in the store, as a node is.
        assert a._store is not None
        mallory = await register_peer(a._store, "mallory", 1)
        await wait_seen(a, "mallory", 1)
        await wait_seen(b, "mallory", 1)
        yield a, b
        await mallory.close()


# -- exit reasons (item: an unsendable reason must not break the exit path) ----------


@pytest.mark.parametrize("reason", [
    pytest.param(_nested(300), id="nested-300-deep"),
    pytest.param(object(), id="not-a-term"),
    pytest.param("x" * 100_000, id="100k-str"),
])
async def test_a_process_stopping_with_an_unsendable_reason_still_signals_remote_links_and_monitors(
        two: tuple[shoal.Node, shoal.Node], reason: Any) -> None:
    a, b = two
    box = Box()
    target = await a.spawn(Inbox, [], asyncio.Event())
    watcher = await b.spawn(Inbox, box.items, box.changed)
    linked = await b.spawn(Inbox, box.items, box.changed, trap=True)
    ref = b.monitor(target, watcher=watcher)
    b.link(linked, target)
    await b.call(target, "sync", WAIT)  # after the MONITOR and LINK, on one connection

    a.cast(target, _stopper(reason))
    # The exit path completed: the local reason is kept as it was.
    assert await a.wait_exit(target, WAIT) is reason
    down = await box.wait_for(lambda m: isinstance(m, shoal.Down))
    assert down.ref == ref and down.pid == target
    assert isinstance(down.reason, shoal.Crash) and down.reason.type == UNSENDABLE_REASON
    assert "cannot be sent" in down.reason.message
    signal = await box.wait_for(lambda m: isinstance(m, shoal.Exit))
    assert signal.pid == target and signal.reason == down.reason
    assert b.is_alive(linked) and a.running and b.running


# -- nothing is answered on a closed connection -------------------------------------


# The FAIL whose kind is a list once escaped the decoder as a TypeError: a
# fatal transport error, and the valid frames before it were lost.
FAIL_KIND_A_LIST = msgpack.packb([18, 1, ["noproc"], msgpack.ExtType(1, msgpack.packb(["b", 1, 1])),
                                  None, 0])
ENDINGS = {
    "bye": None,
    "zero-length-frame": b"\x00\x00\x00\x00",
    "fail-kind-a-list": len(FAIL_KIND_A_LIST).to_bytes(4, "big") + FAIL_KIND_A_LIST,
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
async def test_messages_before_a_close_in_one_read_are_delivered_and_answers_dropped_quietly(
        two: tuple[shoal.Node, shoal.Node], ending: str,
        caplog: pytest.LogCaptureFixture) -> None:
    a, _ = two
    box = Box()
    inbox = await a.spawn(Inbox, box.items, box.changed)
    caplog.set_level(logging.DEBUG)
    peer = await RawPeer.connect(a)
    frames = [wire.Send(to=inbox, message="before the end")]
    dead = shoal.Pid(a.name, a.creation, 10**9)
    frames += [wire.Call(ref=i, sender=None, to=inbox if i % 2 else dead, request=i,
                         timeout_ms=5000) for i in range(1, 101)]
    frames += [wire.Monitor(ref=1, watcher=shoal.Pid("mallory", 1, 1), target=inbox),
               wire.Link(a=shoal.Pid("mallory", 1, 1), b=dead),
               wire.Ping(seq=1)]
    data = b"".join(peer.conn.send(m) for m in frames)
    data += ENDINGS[ending] or peer.conn.close("shutdown")
    caplog.clear()
    peer.writer.write(data)  # a legitimate peer may well write PING and BYE together
    await peer.wait_closed()
    peer.close()
    assert await box.wait_for(lambda m: m == "before the end")
    assert await a.call(inbox, "still serving", WAIT) == "still serving"
    # No traceback, no fatal transport error: one line for the connection's end.
    assert [r for r in caplog.records if r.exc_info] == []
    assert not any("Fatal error" in r.getMessage() for r in caplog.records)
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(noisy) <= 1, [r.getMessage() for r in noisy]
    assert sum(len(r.getMessage()) for r in caplog.records) < 2000


# -- a peer speaks only for itself --------------------------------------------------


class Worker(shoal.GenServer):
    """Records the calls it takes; ``"hold"`` waits for ``release``."""

    async def init(self, box: Box, release: asyncio.Event, held: asyncio.Event) -> None:
        self.box = box
        self.release = release
        self.held = held

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        self.box.items.append(("call", caller.pid, request))
        self.box.changed.set()
        if request == "hold":
            self.held.set()
            await self.release.wait()
            return "genuine"
        return request


async def _sync(peer: RawPeer, node: shoal.Node) -> None:
    """Wait until ``node`` handled everything ``peer`` sent before: it answers
    messages of one connection in order."""
    ref = 10**12 + len(peer.received)
    peer.send(wire.Call(ref=ref, sender=None, to=shoal.Pid(node.name, node.creation, 10**9),
                        request=None, timeout_ms=5000))
    await peer.wait_for(lambda e: isinstance(e, wire.Fail) and e.ref == ref)


def _dropped(caplog: pytest.LogCaptureFixture, kind: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.getMessage().startswith(f"dropped {kind} from node mallory")]


@pytest.mark.parametrize("forged", ["reply", "fail"])
async def test_an_answer_from_a_third_node_is_ignored_even_with_the_right_ref(
        two: tuple[shoal.Node, shoal.Node], forged: str,
        caplog: pytest.LogCaptureFixture) -> None:
    a, b = two
    release, held, box = asyncio.Event(), asyncio.Event(), Box()
    worker = await a.spawn(Worker, box, release, held)
    call = asyncio.ensure_future(b.call(worker, "hold", WAIT))
    await held.wait()
    [ref] = list(b._remote.pending)  # the attacker guessed it: refs count up from 1
    peer = await RawPeer.connect(b)
    caplog.set_level(logging.DEBUG, logger="shoal")
    for _ in range(3):
        peer.send(wire.Reply(ref=ref, value="forged", queue_len=0) if forged == "reply"
                  else wire.Fail(ref=ref, kind="crash", pid=worker, queue_len=0,
                                 detail=["builtins.RuntimeError", "forged", ""]))
    await _sync(peer, b)
    assert not call.done()
    release.set()
    assert await call == "genuine"
    # One warning for the connection, not one per forged message.
    dropped = _dropped(caplog, "Reply" if forged == "reply" else "Fail")
    assert [r.levelno for r in dropped] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    peer.close()


async def test_a_down_from_a_third_node_is_ignored_and_the_real_one_still_arrives(
        two: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = two
    box = Box()
    worker = await a.spawn(Worker, Box(), asyncio.Event(), asyncio.Event())
    watcher = await b.spawn(Inbox, box.items, box.changed)
    ref = b.monitor(worker, watcher=watcher)
    await b.call(worker, "sync", WAIT)  # the MONITOR reached a
    peer = await RawPeer.connect(b)
    peer.send(wire.Down(ref=ref.serial, target=worker, watcher=watcher, reason="forged"))
    await _sync(peer, b)
    assert await b.call(watcher, "sync", WAIT) == "sync"  # it would have seen a Down by now
    assert box.items == []
    a.exit(worker, "real")
    down = await box.wait_for(lambda m: isinstance(m, shoal.Down))
    assert down == shoal.Down(ref=ref, pid=worker, reason="real")
    peer.close()


async def test_exit_link_and_unlink_naming_another_nodes_process_are_ignored(
        two: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = two
    box = Box()
    worker = await a.spawn(Worker, Box(), asyncio.Event(), asyncio.Event())
    linked = await b.spawn(Inbox, box.items, box.changed, trap=True)
    bystander = await b.spawn(Inbox, [], asyncio.Event())
    b.link(linked, worker)
    await b.call(worker, "sync", WAIT)  # the LINK reached a
    peer = await RawPeer.connect(b)
    peer.send(wire.Exit(sender=worker, to=linked, reason="forged"),  # as if a's worker died
              wire.Exit(sender=worker, to=bystander, reason="kill"),
              wire.Unlink(a=worker, b=linked),  # cut a's link from b's side
              wire.Link(a=worker, b=bystander))  # tie a's worker to a bystander
    await _sync(peer, b)
    assert await b.call(linked, "sync", WAIT) == "sync"
    assert box.items == [] and b.is_alive(bystander)
    a.exit(worker, "real")  # the genuine link still works, the forged one does not exist
    signal = await box.wait_for(lambda m: isinstance(m, shoal.Exit))
    assert signal == shoal.Exit(pid=worker, reason="real")
    assert await b.call(bystander, "sync", WAIT) == "sync"
    peer.close()


async def test_monitor_demonitor_and_call_naming_another_nodes_process_are_ignored(
        two: tuple[shoal.Node, shoal.Node]) -> None:
    a, b = two
    box, calls = Box(), Box()
    worker = await a.spawn(Worker, calls, asyncio.Event(), asyncio.Event())
    watcher = await b.spawn(Inbox, box.items, box.changed)
    ref = b.monitor(worker, watcher=watcher)
    await b.call(worker, "sync", WAIT)  # the MONITOR reached a
    peer = await RawPeer.connect(a)
    peer.send(wire.Demonitor(ref=ref.serial, watcher=watcher, target=worker),
              wire.Monitor(ref=99, watcher=watcher, target=worker),
              wire.Call(ref=1, sender=watcher, to=worker, request="as b", timeout_ms=5000))
    await _sync(peer, a)
    assert [request for _, _, request in calls.items] == ["sync"]
    a.exit(worker, "real")
    down = await box.wait_for(lambda m: isinstance(m, shoal.Down))
    assert down == shoal.Down(ref=ref, pid=worker, reason="real")
    # Only b's own monitor fired: the forged one (ref 99) never existed.
    assert await b.call(watcher, "sync", WAIT) == "sync"
    assert [m for m in box.items if isinstance(m, shoal.Down)] == [down]
    assert not any(isinstance(e, wire.Reply) and e.ref == 1 for e in peer.received)
    peer.close()


async def test_a_peer_may_still_link_monitor_and_signal_as_itself(
        two: tuple[shoal.Node, shoal.Node]) -> None:
    _, b = two
    box = Box()
    target = await b.spawn(Inbox, box.items, box.changed, trap=True)
    peer = await RawPeer.connect(b)
    own = shoal.Pid("mallory", 1, 5)
    peer.send(wire.Link(a=own, b=target), wire.Monitor(ref=7, watcher=own, target=target),
              wire.Exit(sender=shoal.Pid("mallory", 1, 6), to=target, reason="mine"),
              wire.Call(ref=3, sender=own, to=target, request="hello", timeout_ms=5000))
    reply = await peer.wait_for(lambda e: isinstance(e, wire.Reply) and e.ref == 3)
    assert reply.value == "hello"  # type: ignore[union-attr]
    assert await box.wait_for(lambda m: isinstance(m, shoal.Exit)) == shoal.Exit(
        pid=shoal.Pid("mallory", 1, 6), reason="mine")
    b.kill(target)
    down = await peer.wait_for(lambda e: isinstance(e, wire.Down))
    assert down == wire.Down(ref=7, target=target, watcher=own, reason=shoal.KILLED)
    signal = await peer.wait_for(lambda e: isinstance(e, wire.Exit))
    assert signal == wire.Exit(sender=target, to=own, reason=shoal.KILLED)
    peer.close()
