"""Instructions per call, counted by callgrind: deterministic where wall clock is not.

This machine kind is shared and noisy (wall-clock ratios swing by a factor
of three between runs of the same code), so the hot paths are compared by
the instructions the CPU executes, which callgrind counts exactly. Each
scenario runs twice under ``valgrind --tool=callgrind`` with two numbers of
calls; the difference of the two totals divided by the difference of the
calls is the cost of one call, with start-up, imports and warm-up cancelled.

Scenarios (one process, uvloop when installed):

- ``local``: ``node.call`` to an echo GenServer on the same node (1 caller);
- ``bare-local``: the bare asyncio actor of ``bench/local_call.py``;
- ``local-64``, ``bare-local-64``: the same two with 64 concurrent callers
  (``bench/local_call.py``'s ``throughput_ratio_vs_bare`` load);
- ``remote-64``, ``bare-remote-64``: ``remote`` and ``bare-remote`` with 64
  concurrent callers (``bench/remote_call.py``'s ``throughput_ratio_vs_erlang``
  load: frames travel several to a write and a read);
- ``remote``: a round trip between two nodes of this process over loopback
  TCP (a shared in-memory store), both ends counted, 1 caller;
- ``bare-remote``: a bare uvloop + msgpack echo over loopback TCP, with the
  same length-prefixed framing, both ends counted;
- ``gateway``: ``POST /v1/call/default/echo`` through a gateway node's HTTP
  front to the echo member of a second node, over loopback TCP, 1 caller
  with one keep-alive connection; the gateway node, the member's node and
  the client (a minimal HTTP/1.1 one sending the headers ``http.client``
  sends, checking each answer's status and body) are all counted. Against
  ``remote``, the difference is what the HTTP hop and the gateway add.

Usage: ``.venv/bin/python bench/instructions.py [scenario ...]`` (default:
all nine); needs ``valgrind``. Prints ``<scenario>_instructions_per_call: N``
and the ratios ``local_vs_bare`` and ``remote_vs_bare`` (bare / shoal, as
the throughput ratios: 1.0 is the floor). ``--run SCENARIO --calls N`` runs
one scenario without valgrind (what each counted run executes).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

from _common import emit, machine, run

import shoal

WARM_UP = 500
# Long deadlines and heartbeats: the timers that tick per unit of time (the
# deadline buckets', the heartbeat's) would otherwise be counted per call in
# proportion to how slowly the run went under valgrind on a loaded machine.
TIMEOUT = 60.0
HEARTBEAT_TIMEOUT = 60.0
# Busy polling off (runtime/spin.py): how many times a loop polls while it
# waits depends on how fast the run goes, not on the code counted. What a
# poke itself costs is counted with it on: see docs/performance.md.
BUSY_POLL_US = 0
SCENARIOS = ("local", "bare-local", "remote", "bare-remote", "gateway", "local-64",
             "bare-local-64", "remote-64", "bare-remote-64")


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


async def local(calls: int, callers: int = 1) -> None:
    async with shoal.Node("count", store="memory://", listen=None) as node:
        pid = await node.spawn(Echo)
        call = node.call

        async def caller(count: int) -> None:
            for i in range(count):
                await call(pid, i, TIMEOUT)
        await concurrently(caller, WARM_UP + calls, callers)


async def bare_local(calls: int, callers: int = 1) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] = asyncio.Queue()

    async def actor() -> None:
        while True:
            request, future = await queue.get()
            future.set_result(request)

    async def caller(count: int) -> None:
        for i in range(count):
            future = loop.create_future()
            queue.put_nowait((i, future))
            await future

    task = asyncio.create_task(actor())
    await concurrently(caller, WARM_UP + calls, callers)
    task.cancel()


async def concurrently(caller: Callable[[int], Awaitable[None]], calls: int,
                       callers: int) -> None:
    """``calls`` calls made by ``callers`` concurrent callers (one caller:
    in this task, as user code calls)."""
    if callers == 1:
        await caller(calls)
        return
    share, extra = divmod(calls, callers)  # exactly ``calls`` in all
    await asyncio.gather(*(caller(share + (i < extra)) for i in range(callers)))


def node_options() -> dict[str, Any]:
    """Two nodes of the remote scenarios: one in-memory store, loopback, the
    long timers and busy polling off (see the constants above)."""
    from shoal.store import MemoryStore

    return dict(store=MemoryStore(), secret="instruction-count-secret-0123456789",
                listen="127.0.0.1:0", heartbeat_timeout=HEARTBEAT_TIMEOUT, idle_timeout=None,
                busy_poll_us=BUSY_POLL_US)


async def remote(calls: int, callers: int = 1) -> None:
    options = node_options()
    async with shoal.Node("server", **options) as srv, shoal.Node("client", **options) as cli:
        pid = await srv.spawn(Echo)
        call = cli.call

        async def caller(count: int) -> None:
            for i in range(count):
                await call(pid, i, TIMEOUT)
        await concurrently(caller, WARM_UP + calls, callers)


async def bare_remote(calls: int, callers: int = 1) -> None:
    import msgpack

    class Server(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            buf = self.buf + data
            while len(buf) >= 4:
                size = int.from_bytes(buf[:4], "big")
                if len(buf) < 4 + size:
                    break
                ref, value = msgpack.unpackb(buf[4:4 + size])
                body = msgpack.packb([ref, value])
                self.transport.write(len(body).to_bytes(4, "big") + body)
                buf = buf[4 + size:]
            self.buf = buf

    class Client(asyncio.Protocol):
        def __init__(self) -> None:
            self.pending: dict[int, asyncio.Future[Any]] = {}
            self.buf = b""

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            buf = self.buf + data
            while len(buf) >= 4:
                size = int.from_bytes(buf[:4], "big")
                if len(buf) < 4 + size:
                    break
                ref, value = msgpack.unpackb(buf[4:4 + size])
                self.pending.pop(ref).set_result(value)
                buf = buf[4 + size:]
            self.buf = buf

        async def call(self, ref: int, value: Any) -> Any:
            future = asyncio.get_running_loop().create_future()
            self.pending[ref] = future
            body = msgpack.packb([ref, value])
            self.transport.write(len(body).to_bytes(4, "big") + body)
            return await future

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, client = await loop.create_connection(Client, "127.0.0.1", port)
    refs = itertools.count()

    async def caller(count: int) -> None:
        for i in range(count):
            await client.call(next(refs), i)
    await concurrently(caller, WARM_UP + calls, callers)
    server.close()


async def gateway(calls: int) -> None:
    from shoal.gateway.context import derive_token
    options = node_options()
    async with shoal.Node("server", **options) as srv, \
            shoal.Node("gateway", http="127.0.0.1:0", **options) as gw:
        await srv.groups.join("echo", await srv.spawn(Echo))
        await srv.groups.sync()
        loop = asyncio.get_running_loop()
        for _ in range(2000):  # bounded: the gateway node sees the member
            if gw.groups.get_members("echo"):
                break
            await asyncio.sleep(0.01)
        address = gw.http_address
        assert address is not None
        head = (f"POST /v1/call/default/echo HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\n"
                "Accept-Encoding: identity\r\nContent-Length: %d\r\n"
                f"Authorization: Bearer {derive_token(str(options['secret']).encode())}\r\n"
                "Content-Type: application/json\r\n\r\n")

        class Client(asyncio.Protocol):
            def __init__(self) -> None:
                self.buf = b""
                self.waiter: asyncio.Future[bytes] | None = None

            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                self.buf += data
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                length = int(self.buf[:end].lower().partition(b"content-length: ")[2]
                             .partition(b"\r\n")[0])
                if len(self.buf) >= end + 4 + length and self.waiter is not None:
                    answer, self.buf = self.buf[:end + 4 + length], self.buf[end + 4 + length:]
                    self.waiter.set_result(answer)

            async def call(self, body: bytes) -> bytes:
                self.waiter = loop.create_future()
                self.transport.write((head % len(body)).encode() + body)
                return await self.waiter

        _, client = await loop.create_connection(Client, *address)
        for i in range(WARM_UP + calls):
            body = str(i).encode()
            answer = await client.call(body)
            if not answer.startswith(b"HTTP/1.1 200 ") or not answer.endswith(b"\r\n\r\n" + body):
                raise SystemExit(f"the gateway answered {answer[:200]!r}")
        client.transport.close()


RUNNERS = {"local": local, "bare-local": bare_local, "remote": remote,
           "bare-remote": bare_remote, "gateway": gateway,
           "local-64": lambda calls: local(calls, 64),
           "bare-local-64": lambda calls: bare_local(calls, 64),
           "remote-64": lambda calls: remote(calls, 64),
           "bare-remote-64": lambda calls: bare_remote(calls, 64)}


def count(scenario: str, calls: int, outdir: str) -> int:
    """Total instructions of one run of ``scenario`` with ``calls`` calls."""
    out = os.path.join(outdir, f"callgrind.{scenario}.{calls}")
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                    sys.executable, __file__, "--run", scenario, "--calls", str(calls)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        for line in f:
            found = re.match(r"(?:summary|totals):\s+(\d+)", line)
            if found:
                return int(found.group(1))
    raise SystemExit(f"no total in {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    parser.add_argument("--calls", type=int, default=1000,
                        help="calls of the shorter counted run (the longer makes 3x)")
    parser.add_argument("--run", choices=SCENARIOS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run(lambda: RUNNERS[args.run](args.calls))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (Debian: apt-get install valgrind)")
    print(f"machine: {machine()}")
    print(f"shoal: {os.path.dirname(shoal.__file__)}")
    per: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="shoal-callgrind-") as tmp:
        for scenario in args.scenarios:
            short = count(scenario, args.calls, tmp)
            long = count(scenario, 3 * args.calls, tmp)
            per[scenario] = (long - short) / (2 * args.calls)
            emit(f"{scenario.replace('-', '_')}_instructions_per_call", per[scenario])
    for kind in ("local", "remote", "local-64", "remote-64"):
        if kind in per and f"bare-{kind}" in per:
            emit(f"{kind.replace('-', '_')}_vs_bare", per[f"bare-{kind}"] / per[kind])


if __name__ == "__main__":
    main()
