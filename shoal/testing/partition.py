"""Network partitions between chosen nodes, on loopback, without privileges.

Each node of a test cluster advertises the address of its own *proxy*
(``--advertise``), so every connection to it passes through the proxy. The
proxy learns who dialled from the first frame of the connection (the
initiator's HELLO names its node: docs/protocol.md 4) and forwards bytes
both ways, unless a cut says otherwise:

- ``cut(a, b)`` stops bytes between ``a`` and ``b`` both ways;
  ``cut(a, b, one_way=True)`` only those from ``a`` to ``b``.
- A cut *stalls* bytes, as a real partition does, rather than dropping
  them: the proxy stops reading the side that may not send (TCP
  backpressure does the rest), and resumes on ``heal``, so the stream stays
  intact. Nodes see silence: heartbeats time out, the peer's members become
  unroutable, and a peer that stays silent is disconnected by the
  transport's own bounds. A dial across a cut connects to the proxy and
  then hears nothing, as a dial into a black hole.

Limits, stated: the dialler is identified from its HELLO, so connections
with peer TLS (encrypted from the first byte) are forwarded as "unknown"
and no pairwise cut applies to them; the proxies live in the test's event
loop, so a test that blocks its loop stalls every connection.

Owns: the proxies (one listening socket each, closed by ``close``), their
live connections (pruned as each ends), and the set of cuts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from shoal.wire import HEADER_SIZE, Hello, decode_body

__all__ = ["Partitions"]

log = logging.getLogger("shoal.testing")

UNKNOWN = "?"
"""The dialler of a connection whose first frame is not a readable HELLO."""
CHUNK = 65536
MAX_HELLO = 4096  # a HELLO is under 400 bytes; more is not one


@dataclass(slots=True)
class _Proxy:
    name: str
    server: asyncio.Server
    port: int
    target: tuple[str, int] | None = None
    target_set: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Partitions:
    """Proxies in front of named nodes, and the cuts between them."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._proxies: dict[str, _Proxy] = {}
        # Invariant: (sender, receiver) pairs whose bytes are stalled.
        self._cuts: set[tuple[str, str]] = set()
        self._healed = asyncio.Event()  # set and replaced whenever a cut is removed

    async def proxy(self, name: str) -> int:
        """Start the proxy of node ``name`` (once); return its port, to
        advertise as the node's address."""
        existing = self._proxies.get(name)
        if existing is not None:
            return existing.port
        proxy: _Proxy | None = None

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert proxy is not None
            task = asyncio.current_task()
            if task is not None:
                proxy.tasks.add(task)
            try:
                await self._serve(proxy, reader, writer)
            finally:
                if task is not None:
                    proxy.tasks.discard(task)

        server = await asyncio.start_server(accepted, self.host, 0)
        port: int = server.sockets[0].getsockname()[1]
        proxy = self._proxies[name] = _Proxy(name=name, server=server, port=port)
        return port

    def target(self, name: str, host: str, port: int) -> None:
        """Where node ``name`` really listens (set again after a restart)."""
        proxy = self._proxies[name]
        proxy.target = (host, port)
        proxy.target_set.set()

    def cut(self, a: str, b: str, *, one_way: bool = False) -> None:
        """Stop bytes from ``a`` to ``b`` (and from ``b`` to ``a`` unless ``one_way``)."""
        self._cuts.add((a, b))
        if not one_way:
            self._cuts.add((b, a))
        log.info("partition: cut %s %s %s", a, "->" if one_way else "<->", b)

    def heal(self, a: str | None = None, b: str | None = None) -> None:
        """Remove the cuts between ``a`` and ``b`` (both ways), every cut
        involving ``a``, or (no argument) every cut."""
        self._cuts = {(x, y) for x, y in self._cuts
                      if not ((a is None or a in (x, y)) and (b is None or b in (x, y)))}
        healed, self._healed = self._healed, asyncio.Event()
        healed.set()
        log.info("partition: healed %s", "everything" if a is None else f"{a} {b or ''}")

    def is_cut(self, sender: str, receiver: str) -> bool:
        return (sender, receiver) in self._cuts

    async def close(self) -> None:
        """Stop every proxy and drop every connection through them."""
        for proxy in self._proxies.values():
            proxy.server.close()
            for task in list(proxy.tasks):
                task.cancel()
        for proxy in self._proxies.values():
            with contextlib.suppress(Exception):
                await proxy.server.wait_closed()
            await asyncio.gather(*proxy.tasks, return_exceptions=True)
        self._proxies.clear()

    # -- one connection ------------------------------------------------------------------

    async def _serve(self, proxy: _Proxy, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            first, dialler = await _read_hello(reader)
            await proxy.target_set.wait()
            assert proxy.target is not None
            up_reader, upstream = await asyncio.open_connection(*proxy.target)
            # bytes from the dialler to the node, and back
            await self._pump_to(first, proxy.name, dialler, upstream)
            await asyncio.gather(
                self._pump(reader, upstream, dialler, proxy.name),
                self._pump(up_reader, writer, proxy.name, dialler))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for side in (writer, upstream):
                if side is not None:
                    side.close()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                    sender: str, receiver: str) -> None:
        try:
            while chunk := await source.read(CHUNK):
                await self._pump_to(chunk, sender, receiver, sink)
        finally:
            if sink.can_write_eof():
                with contextlib.suppress(OSError):
                    sink.write_eof()

    async def _pump_to(self, chunk: bytes, sender: str, receiver: str,
                       sink: asyncio.StreamWriter) -> None:
        while self.is_cut(sender, receiver):  # stall, do not drop: the stream stays whole
            await self._healed.wait()
        if chunk:
            sink.write(chunk)
            await sink.drain()


async def _read_hello(reader: asyncio.StreamReader) -> tuple[bytes, str]:
    """The connection's first bytes and who sent them (its HELLO's node)."""
    header = await reader.readexactly(HEADER_SIZE)
    size = int.from_bytes(header, "big")
    if not 0 < size <= MAX_HELLO:
        return header, UNKNOWN  # not a shoal frame we can read (TLS): forward as is
    body = await reader.readexactly(size)
    try:
        message = decode_body(body)
    except Exception:
        return header + body, UNKNOWN
    return header + body, message.node if isinstance(message, Hello) else UNKNOWN
