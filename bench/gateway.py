"""The HTTP/JSON gateway next to a native shoal remote call, same run.

Three OS processes on loopback, SQLite store: a server node hosting an echo
member of group ``echo``; a gateway node (``shoal gateway --http``, the
sidecar) that has no member; and this process, a client node. Measured, in
alternating rounds so drift hits both alike:

- native: this node's ``groups.call("echo", ...)`` (a remote call to the
  server node), 1 caller in sequence: p50, p99;
- gateway: ``POST /v1/call/default/echo`` to the gateway node, from a Python
  process with no node, over one keep-alive ``http.client`` connection
  (the standard library's client), 1 caller in sequence: p50, p99. The
  gateway node makes the same remote group call to the server node;
- throughput: the gateway node's calls per second with 64 concurrent
  keep-alive connections (in 2 processes, 32 each; each connection sends
  its next request once the last one's answer is in), and the native group
  calls per second with 64 concurrent callers, for scale; and the gateway
  node's CPU time per call under that load (from /proc), whose inverse is
  what one core can serve when the clients do not share it
  (``gateway_calls_per_cpu_second``). The load generator is a lean HTTP/1.1
  client on ``httptools`` (:func:`http_load`): real requests over TCP, with
  the headers a real client sends, every answer parsed and its status, body
  and keep-alive checked, bounded in count and time. Until 2026-12-02 it was
  aiohttp's client, which spent about as much CPU per request as the gateway
  and, on 2 cores shared by every process of the bench, capped the figure
  at 4,900-6,700 calls/s whatever the gateway did.

For reference, the same ``http.client`` loop against the gateway that the
member's own node serves (``--http`` on the server node: its group call is
local, and one process fewer is in the chain): ``gateway_in_member_node_us_p50``
and ``gateway_in_member_node_overhead_us_p50`` (that p50 minus the native
p50). The headline figures stay the sidecar's.

For reference too, the same ``http.client`` loop against a bare server on
``httptools`` that echoes the body (no node; aiohttp's application until
2026-12-02, which cost more than the gateway's front): ``http_hop_us_p50``,
the HTTP hop alone;
``gateway_own_us_p50`` is what remains of the gateway's p50 once the hop
and the native call are taken out (its own parsing, checks and mapping).

Every round's latencies are measured before any round's throughput: the
throughput phases keep both cores busy, and a node's busy poll
(``runtime/spin.py``, on by default in all three nodes) pauses while the
host's CPU pressure stays high, which it does for tens of seconds after;
measured in between, the latency of whichever side came next would be
taken without it.

``cpu_pressure_pct_before_latency`` is the host's CPU pressure (PSI
``some avg10``) as each round's latencies began, where the kernel reports
it: above ``spin.PRESSURE_LIMIT`` (10 %) the nodes did not busy-poll.

Printed last: ``gateway_overhead_us_p50`` (gateway p50 minus native p50:
what the HTTP hop and the gateway add in front of the same remote call;
goal <= 150), ``gateway_overhead_ratio`` (gateway p50 / native p50) and
``gateway_throughput_calls_per_s`` (one gateway node; goal >= 10,000).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import emit, loop_name, machine, median, percentile, run

import shoal
from shoal.gateway.context import derive_token
from shoal.runtime import spin
from shoal.testing.cluster import free_port

SECRET = "gateway-benchmark-secret-0123456789"
CONCURRENCY = 64
HTTP_PROCESSES = 2


class BodyReader(asyncio.Protocol):
    """Feeds what it reads to its ``httptools`` parser and gathers the body
    (the HTTP hop's echo server and the load generator's client)."""

    parser: Any
    parts: list[bytes]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


async def serve(store: str) -> None:
    """The server node: the echo member, and a gateway of its own (the
    ``gateway_in_member_node_*`` figures) on a port it picks."""
    async with shoal.Node("bench-server", store=store, secret=SECRET,
                          http="127.0.0.1:0") as node:
        await node.groups.join("echo", await node.spawn(Echo))
        await node.groups.sync()
        assert node.http_address is not None
        print(f"ready {node.http_address[1]}", flush=True)
        stop = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
        await stop


async def bare(port: int) -> None:
    """A bare HTTP/1.1 server on ``httptools`` (the parser of the gateway's
    front) echoing the body with a JSON answer: the HTTP hop alone, with no
    node behind it (and so no busy poll: its loop sleeps between requests)."""
    import httptools

    class Echo(BodyReader):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            self.parser = httptools.HttpRequestParser(self)
            self.parts: list[bytes] = []

        def on_message_complete(self) -> None:
            body, self.parts = b"".join(self.parts), []
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port)
    print("ready", flush=True)
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    await stop
    server.close()


def http_latency(url: str, token: str, calls: int) -> dict[str, float]:
    import http.client

    host, _, port = url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(i: int) -> None:
        conn.request("POST", "/v1/call/default/echo", body=str(i), headers=headers)
        answer = conn.getresponse()
        body = answer.read()
        if answer.status != 200 or body != str(i).encode():
            raise SystemExit(f"gateway answered {answer.status}: {body[:200]!r}")
    for i in range(2000):  # warm up: the connection, the gateway's path to the server
        call(i)
    clock = time.perf_counter_ns
    samples = []
    for i in range(calls):
        t0 = clock()
        call(i)
        samples.append((clock() - t0) / 1000)
    conn.close()
    return {"p50_us": percentile(samples, 50), "p99_us": percentile(samples, 99)}


async def http_load(url: str, token: str, calls: int, concurrency: int) -> dict[str, float]:
    """``concurrency`` keep-alive connections, each sending its next request
    when the answer to the last one is in, ``calls`` in all: a lean HTTP/1.1
    client on ``httptools`` (uvloop), so the load generator's own CPU per
    request is a fraction of the gateway's. Each request carries the headers
    a real client sends (Host, User-Agent, Accept, Accept-Encoding,
    Content-Length, Authorization, Content-Type); each answer is parsed, and
    its status, body and keep-alive checked."""
    import httptools

    host, _, port = url.removeprefix("http://").partition(":")
    loop = asyncio.get_running_loop()
    head = (f"POST /v1/call/default/echo HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "User-Agent: shoal-bench/1\r\nAccept: */*\r\nAccept-Encoding: identity\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            "Content-Length: ").encode()

    class Client(BodyReader):
        def __init__(self) -> None:
            self.parser = httptools.HttpResponseParser(self)
            self.parts: list[bytes] = []
            self.expected = b""
            self.answered: asyncio.Future[None] = loop.create_future()
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.answered.done():
                self.answered.set_exception(ConnectionError(f"the gateway closed: {exc}"))

        def on_message_complete(self) -> None:
            body, self.parts = b"".join(self.parts), []
            status = self.parser.get_status_code()
            if status != 200 or body != self.expected or not self.parser.should_keep_alive():
                self.answered.set_exception(
                    RuntimeError(f"gateway answered {status}: {body[:200]!r}"))
            else:
                self.answered.set_result(None)

        async def call(self, i: int) -> None:
            assert self.transport is not None
            body = self.expected = str(i).encode()
            self.answered = loop.create_future()
            self.transport.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
            await self.answered

    clients = [(await loop.create_connection(Client, host, int(port)))[1]
               for _ in range(concurrency)]

    async def one(client: Client, count: int) -> None:
        for i in range(count):
            await client.call(i)
    await asyncio.wait_for(asyncio.gather(*(one(c, 50) for c in clients)), 60)  # warm up
    per = calls // concurrency
    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one(c, per) for c in clients)), 300)
    elapsed = time.perf_counter() - t0
    for client in clients:
        assert client.transport is not None
        client.transport.close()
    return {"calls": per * concurrency, "start": t0, "elapsed": elapsed}


async def native(node: shoal.Node, calls: int) -> dict[str, float]:
    call = node.groups.call
    for i in range(2000):
        await call("echo", i)
    clock = time.perf_counter_ns
    samples = []
    for i in range(calls):
        t0 = clock()
        await call("echo", i)
        samples.append((clock() - t0) / 1000)
    return {"p50_us": percentile(samples, 50), "p99_us": percentile(samples, 99)}


async def native_load(node: shoal.Node, calls: int) -> float:
    call = node.groups.call

    async def one(count: int) -> None:
        for i in range(count):
            await call("echo", i)
    per = calls // CONCURRENCY
    t0 = time.perf_counter()
    await asyncio.gather(*(one(per) for _ in range(CONCURRENCY)))
    return per * CONCURRENCY / (time.perf_counter() - t0)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process ``pid`` used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sub(*args: str) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, *args, stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    if process.returncode:
        raise SystemExit(f"{args[1]} failed (exit {process.returncode})")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


async def measure(store: str, url: str, bare_url: str, member_url: str, gateway_pid: int,
                  calls: int, rounds: int) -> list[dict[str, float]]:
    token = derive_token(SECRET.encode())
    results = []
    async with shoal.Node("bench-client", store=store, secret=SECRET, http="") as node:
        deadline = time.monotonic() + 20
        while not node.groups.get_members("echo"):
            if time.monotonic() > deadline:
                raise SystemExit("the server's member never appeared")
            await asyncio.sleep(0.01)
        pressure = spin.pressure_file()
        for _ in range(rounds):  # every latency before any throughput (module docstring)
            level = None if pressure is None else spin.read_pressure(pressure)
            out = {f"native_{k}": v for k, v in (await native(node, calls)).items()}
            if level is not None:
                out["pressure"] = level
            latency = await sub("--role", "http-latency", "--url", url, "--token", token,
                                "--calls", str(calls))
            out.update({f"gateway_{k}": v for k, v in latency.items()})
            in_node = await sub("--role", "http-latency", "--url", member_url, "--token",
                                token, "--calls", str(calls))
            out.update({f"in_node_{k}": v for k, v in in_node.items()})
            hop = await sub("--role", "http-latency", "--url", bare_url, "--token", token,
                            "--calls", str(calls))
            out.update({f"hop_{k}": v for k, v in hop.items()})
            results.append(out)
        for out in results:
            out["native_throughput"] = await native_load(node, calls)
            cpu_before = cpu_seconds(gateway_pid)
            loads = await asyncio.gather(*(
                sub("--role", "http-load", "--url", url, "--token", token, "--calls",
                    str(calls * 2 // HTTP_PROCESSES))
                for _ in range(HTTP_PROCESSES)))
            start = min(x["start"] for x in loads)
            end = max(x["start"] + x["elapsed"] for x in loads)
            total = sum(x["calls"] for x in loads)
            out["gateway_throughput"] = total / (end - start)
            out["gateway_cpu_us"] = (cpu_seconds(gateway_pid) - cpu_before) / total * 1e6
    return results


def bench(calls: int, rounds: int) -> list[dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="shoal-bench-gw-") as tmp:
        store = f"sqlite://{tmp}/cluster.db"
        env = dict(os.environ, SHOAL_SECRET=SECRET)
        for name in ("SHOAL_GATEWAY_TOKEN", "SHOAL_GATEWAY_TOKEN_FILE", "SHOAL_HTTP"):
            env.pop(name, None)
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--role", "server", "--store", store],
                                  stdout=subprocess.PIPE, env=env)
        gateway: subprocess.Popen[bytes] | None = None
        bare_port = free_port()
        hop = subprocess.Popen([sys.executable, __file__, "--role", "bare", "--url",
                                str(bare_port)], stdout=subprocess.PIPE, env=env)
        try:
            assert hop.stdout is not None
            if b"ready" not in hop.stdout.readline():
                raise SystemExit("the bare HTTP server did not start")
            assert server.stdout is not None
            ready = server.stdout.readline().split()
            if ready[:1] != [b"ready"]:
                raise SystemExit("the server node did not start")
            member_url = f"http://127.0.0.1:{int(ready[1])}"
            gateway = subprocess.Popen([sys.executable, "-m", "shoal.cli", "gateway", "--http",
                                        f"127.0.0.1:{port}", "--node", "bench-gateway",
                                        "--store", store], stdout=subprocess.PIPE, env=env)
            assert gateway.stdout is not None
            if b"ready" not in gateway.stdout.readline():
                raise SystemExit("the gateway node did not start")
            url = f"http://127.0.0.1:{port}"
            pid = gateway.pid
            bare_url = f"http://127.0.0.1:{bare_port}"
            return run(lambda: measure(store, url, bare_url, member_url, pid, calls, rounds))
        finally:
            for process in (gateway, server, hop):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["bench", "server", "bare", "http-latency",
                                           "http-load"],
                        default="bench")
    parser.add_argument("--store", default="")
    parser.add_argument("--url", default="")
    parser.add_argument("--token", default="")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.role == "server":
        run(lambda: serve(args.store))
        return
    if args.role == "bare":
        run(lambda: bare(int(args.url)))
        return
    if args.role == "http-latency":
        print(json.dumps(http_latency(args.url, args.token, args.calls)))
        return
    if args.role == "http-load":
        print(json.dumps(run(lambda: http_load(args.url, args.token, args.calls,
                                               CONCURRENCY // HTTP_PROCESSES))))
        return
    print(f"machine: {machine()}")
    print(f"loop: {loop_name()}")
    results = bench(args.calls, args.rounds)

    def mid(key: str) -> float:
        return median([r[key] for r in results])

    emit("native_group_call_us_p50", mid("native_p50_us"), "us")
    emit("native_group_call_us_p99", mid("native_p99_us"), "us")
    emit("native_throughput_calls_per_s", mid("native_throughput"), "calls/s")
    emit("gateway_call_us_p50", mid("gateway_p50_us"), "us")
    emit("gateway_call_us_p99", mid("gateway_p99_us"), "us")
    emit("http_hop_us_p50", mid("hop_p50_us"), "us")
    emit("gateway_in_member_node_us_p50", mid("in_node_p50_us"), "us")
    emit("gateway_in_member_node_overhead_us_p50", median([
        r["in_node_p50_us"] - r["native_p50_us"] for r in results]), "us")
    emit("gateway_own_us_p50", median([r["gateway_p50_us"] - r["native_p50_us"]
                                       - r["hop_p50_us"] for r in results]), "us")
    emit("gateway_throughput_calls_per_s", mid("gateway_throughput"), "calls/s")
    emit("gateway_node_cpu_us_per_call", mid("gateway_cpu_us"), "us")
    emit("gateway_calls_per_cpu_second", 1e6 / mid("gateway_cpu_us"), "calls/s")
    if all("pressure" in r for r in results):
        emit("cpu_pressure_pct_before_latency", mid("pressure"), "%")
    emit("gateway_overhead_us_p50", median([r["gateway_p50_us"] - r["native_p50_us"]
                                            for r in results]), "us")
    emit("gateway_overhead_ratio", median([r["gateway_p50_us"] / r["native_p50_us"]
                                           for r in results]))


if __name__ == "__main__":
    main()
