"""Crossing dials, made to cross at the worst moment.

Node "alpha" (the lower identity, whose dial must win) starts its own dial
to "beta" the moment beta's dial has said HELLO to it, and a relay on
beta's dial holds everything alpha answers after its CHALLENGE until
alpha's own dial is up. While the acceptor decided at HELLO, alpha
admitted beta's dial, established it when beta's PROOF arrived, then
replaced it with its own: a CALL written on it in between was lost
("replaced by a new connection"). Decided at the proof, alpha refuses
beta's dial because its own is under way: neither end of the losing
connection is ever established, and nothing is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any

from shoal.transport import ConnectionManager, PeerConnection, TransportConfig
from shoal.wire import Message

SECRET = b"crossing-test-secret"
WAIT = 5.0


class Recorder:
    """A PeerHandler that keeps the up and down events."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.changed = asyncio.Event()

    def on_message(self, peer: PeerConnection, msg: Message) -> None:
        pass

    def on_peer_up(self, peer_name: str, creation: int, connection: PeerConnection) -> None:
        self.events.append(("up", peer_name, connection.initiator))
        self.changed.set()

    def on_peer_down(self, peer_name: str, creation: int, reason: str) -> None:
        self.events.append(("down", peer_name, reason))
        self.changed.set()

    def on_peer_silent(self, peer_name: str, creation: int) -> None:
        pass

    def on_peer_alive(self, peer_name: str, creation: int) -> None:
        pass

    async def wait_up(self) -> None:
        async with asyncio.timeout(WAIT):
            while not any(e[0] == "up" for e in self.events):
                self.changed.clear()
                await self.changed.wait()


class Relay:
    """Forwards one TCP connection to ``target``. From the target back,
    only the first chunk passes at once; the rest waits for ``release``.
    ``first_in`` is set once the first chunk towards the target went."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.first_in = asyncio.Event()
        self.released = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.tasks += [asyncio.create_task(self._pump(reader, up_writer, towards=True)),
                       asyncio.create_task(self._pump(up_reader, writer, towards=False))]

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                    towards: bool) -> None:
        first = True
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if not towards and not first:
                    await self.released.wait()
                writer.write(data)
                await writer.drain()
                if towards and first:
                    self.first_in.set()
                first = False
        writer.close()

    async def close(self) -> None:
        self.released.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def _config(node: str) -> TransportConfig:
    base = TransportConfig(cluster="test", node=node, creation=1, secret=SECRET)
    return replace(base, handshake_timeout=WAIT)


async def test_a_dial_started_inside_the_peers_handshake_wins_without_replacing_anything(
) -> None:
    ra, rb = Recorder(), Recorder()
    alpha, beta = ConnectionManager(_config("alpha"), ra), ConnectionManager(_config("beta"), rb)
    await alpha.start()
    await beta.start()
    relay = Relay(alpha.address)
    via = await relay.start()
    try:
        beta_dial = asyncio.create_task(beta.connect("alpha", via, timeout=WAIT))
        async with asyncio.timeout(WAIT):
            await relay.first_in.wait()  # beta's HELLO is on its way to alpha
        alpha_dial = asyncio.create_task(alpha.connect("beta", beta.address, timeout=WAIT))
        await ra.wait_up()
        await rb.wait_up()
        relay.released.set()  # now alpha's answer to beta's PROOF arrives
        mine, theirs = await asyncio.wait_for(asyncio.gather(alpha_dial, beta_dial), WAIT)
        assert mine is alpha.get("beta") and mine.initiator  # the lower identity's dial
        assert theirs is beta.get("alpha") and not theirs.initiator
        # Each side saw one connection come up, and none replaced.
        assert ra.events == [("up", "beta", True)]
        assert rb.events == [("up", "alpha", False)]
    finally:
        await relay.close()
        await alpha.close()
        await beta.close()
