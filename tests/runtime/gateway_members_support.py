"""What the gateway members' tests share: a node serving the gateway, a
client for it, and ``Service``, an aiohttp server standing in for a member
written in another language (its callback URL).

``Service`` answers each callback by the request it carries (JSON, or
msgpack when sent so): ``{"op": "echo", "value": v}`` replies ``v`` in the
same format; ``"crash"`` answers 500 with an error naming ``ValueError``;
``"reject"`` answers 422; ``"garbage"`` answers 200 with a body that is not
JSON; ``"big"`` answers 200 with ``value`` bytes of JSON; ``"drop"``
closes the connection without answering; ``"hold"`` waits until the test
opens ``gate`` (or the proxy gives up); ``"sleep"`` waits ``value`` seconds.
Every request it received is recorded with its headers, and ``in_flight``
counts requests being answered now; ``changed`` is set on each change, so
tests wait on it (bounded) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

import shoal
from shoal.wire import pack_term, unpack_term

WAIT = 5.0  # seconds any single wait in a test may take before it fails


class Service:
    """A member's callback endpoint on 127.0.0.1 (see the module header)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], Any]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.cancelled = 0
        self.gate = asyncio.Event()
        self.changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Service:
        app = web.Application()
        app.router.add_post("/shoal", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/shoal"
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def _note(self) -> None:
        self.changed.set()

    async def wait(self, predicate: Callable[[], bool], what: str) -> None:
        """Wait (bounded by WAIT) until ``predicate()`` holds."""
        async with asyncio.timeout(WAIT):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def kinds(self) -> list[str]:
        return [headers["Shoal-Kind"] for headers, _ in self.received]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        packed = request.content_type == "application/msgpack"
        body = (unpack_term(raw) if packed else json.loads(raw)) if raw else None
        self.received.append((dict(request.headers), body))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self._note()
        try:
            op = body.get("op") if isinstance(body, dict) else None
            if op == "crash":
                return web.json_response({"error": {"type": "ValueError", "message": "boom"}},
                                         status=500)
            if op == "reject":
                return web.json_response({"error": {"message": "not this one"}}, status=422)
            if op == "garbage":
                return web.Response(text="<html>oops</html>", content_type="text/html")
            if op == "big":
                return web.Response(text='"' + "x" * int(body["value"]) + '"',
                                    content_type="application/json")
            if op == "drop":
                assert request.transport is not None
                request.transport.abort()
                raise asyncio.CancelledError  # nothing more to answer on
            if op == "hold":
                await self.gate.wait()
            if op == "sleep":
                await asyncio.sleep(float(body["value"]))
            value = body.get("value") if isinstance(body, dict) else body
            if packed:
                return web.Response(body=pack_term(value), content_type="application/msgpack")
            return web.json_response(value)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
            self._note()


class Gateway:
    """A client of one node's gateway."""

    def __init__(self, node: shoal.Node, session: aiohttp.ClientSession) -> None:
        self.node = node
        self.session = session
        host, port = node.http_address or ("", 0)
        self.url = f"http://{host}:{port}"
        assert node.gateway is not None and node.gateway.token is not None
        self.auth = {"Authorization": f"Bearer {node.gateway.token}"}

    async def request(self, method: str, path: str, body: Any = None,
                      raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        async with self.session.request(method, self.url + path, data=data, headers={
                **self.auth, "Content-Type": "application/json"}) as answer:
            text = await answer.read()
            return answer.status, json.loads(text) if text else None

    @asynccontextmanager
    async def stream(self, spec: dict[str, Any],
                     session: aiohttp.ClientSession | None = None,
                     ) -> AsyncIterator[tuple[dict[str, Any], aiohttp.ClientResponse]]:
        """Register ``spec`` in stream mode: the ``registered`` event's data
        and the open response (closed on leaving the block)."""
        async with (session or self.session).post(
                self.url + "/v1/members", data=json.dumps(spec).encode(),
                headers={**self.auth, "Content-Type": "application/json"}) as answer:
            assert answer.status == 200, await answer.text()
            assert answer.headers["Content-Type"].startswith("text/event-stream")
            event, data = await next_event(answer)
            assert event == "registered"
            yield data, answer


async def next_event(answer: aiohttp.ClientResponse) -> tuple[str, Any]:
    """The next event of a server-sent event stream (comments skipped)."""
    event, data = "message", None
    async with asyncio.timeout(WAIT):
        while True:
            line = (await answer.content.readline()).decode()
            if not line:
                raise EOFError("the stream ended")
            line = line.rstrip("\n")
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
            elif line == "" and data is not None:
                return event, data


def pid_of(data: dict[str, Any]) -> shoal.Pid:
    node, creation, serial = data["pid"]["$pid"]
    return shoal.Pid(node, creation, serial)


async def left(node: shoal.Node, group: str, pid: shoal.Pid, *,
               within: float = WAIT) -> float:
    """Wait until ``pid`` is no member of ``group`` on ``node``; the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    sub = node.groups.subscribe(group)
    try:
        async with asyncio.timeout(within):
            while pid in node.groups.get_members(group):
                await sub.get()
    finally:
        sub.close()
    return loop.time() - started
