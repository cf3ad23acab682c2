"""The gateway's lean HTTP/1.1 front (shoal/gateway/front.py) against the real
endpoint on 127.0.0.1, byte by byte: pipelined requests answered in order
(also across the hand-off to aiohttp), Expect: 100-continue, chunked bodies,
the body limit, malformed requests, HTTP/1.0, HTTPS, and the idle bound."""

from __future__ import annotations

import asyncio
import json
import random
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import shoal
from shoal.gateway.front import Front
from shoal.testing import wait_until
from shoal.testing.tls import make_pki

SECRET = "gateway-front-secret-0123456789"
WAIT = 10.0


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


class Waiter(shoal.GenServer):
    """Answers only once an Opener was called: a later request's reply is
    ready before this earlier one's."""

    opened: asyncio.Event

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        await asyncio.wait_for(Waiter.opened.wait(), WAIT)
        return request


class Opener(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        Waiter.opened.set()
        return request


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SHOAL_GATEWAY_TOKEN", "SHOAL_GATEWAY_TOKEN_FILE", "SHOAL_GATEWAY_MAX_BODY",
                 "SHOAL_GATEWAY_REMOTE", "SHOAL_HTTP_TLS", "SHOAL_SECRET", "SHOAL_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SHOAL_GATEWAY_MAX_BODY", "2000")


@pytest.fixture
async def node() -> AsyncIterator[shoal.Node]:
    async with shoal.Node("a", store="memory://", secret=SECRET, http="127.0.0.1:0") as node:
        await node.groups.join("echo", await node.spawn(Echo))
        Waiter.opened = asyncio.Event()
        await node.groups.join("waiter", await node.spawn(Waiter))
        await node.groups.join("opener", await node.spawn(Opener))
        yield node


def _token(node: shoal.Node) -> str:
    assert node.gateway is not None and node.gateway.token is not None
    return node.gateway.token


def _post(node: shoal.Node, path: str, body: bytes, *, extra: str = "",
          version: str = "1.1") -> bytes:
    return (f"POST {path} HTTP/{version}\r\nHost: x\r\nAuthorization: Bearer {_token(node)}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            ).encode() + body


async def _connect(node: shoal.Node, ssl_context: ssl.SSLContext | None = None
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = node.http_address or ("", 0)
    return await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ssl_context), WAIT)


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One answer: its status, headers (lower-case names) and body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    status_line, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value for name, _, value in
               (line.partition(": ") for line in lines if line)}
    length = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), WAIT) if length else b""
    return int(status_line.split()[1]), headers, body


async def _closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(1), WAIT) == b""


async def test_pipelined_requests_are_answered_in_request_order(node: shoal.Node) -> None:
    reader, writer = await _connect(node)
    writer.write(_post(node, "/v1/call/default/waiter", b'"first"')
                 + _post(node, "/v1/call/default/opener", b'"second"')
                 + _post(node, "/v1/call/default/echo", b"3"))
    answers = [await _answer(reader) for _ in range(3)]
    assert [(status, body) for status, _, body in answers] == [
        (200, b'"first"'), (200, b'"second"'), (200, b"3")]
    writer.close()


async def test_header_names_are_read_in_any_case_and_a_repeated_one_by_its_first_value(
        node: shoal.Node) -> None:
    reader, writer = await _connect(node)
    for head, expected in [
            (f"authorization: Bearer {_token(node)}\r\ncontent-TYPE: application/json\r\n"
             "sHOAL-tIMEOUT: 2\r\nshoal-strategy: random\r\nShoal-Strategy: bogus\r\n", 200),
            (f"AUTHORIZATION: Bearer {_token(node)}\r\nSHOAL-TIMEOUT: never\r\n", 400),
            (f"Authorization: Bearer wrong-token-0123456789\r\nauthorization: Bearer "
             f"{_token(node)}\r\n", 401)]:
        writer.write(f"POST /v1/call/default/echo HTTP/1.1\r\nHost: x\r\n{head}"
                     "Content-Length: 1\r\n\r\n7".encode())
        status, _, body = await _answer(reader)
        assert status == expected, body
        if status == 400:
            assert "timeout='never'" in json.loads(body)["error"]["message"]
    writer.close()


async def test_an_answer_head_lists_its_headers_in_the_same_order_every_time(
        node: shoal.Node) -> None:
    reader, writer = await _connect(node)
    for _ in range(2):
        writer.write(_post(node, "/v1/call/default/echo", b"1"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        await asyncio.wait_for(reader.readexactly(1), WAIT)
        lines = head.decode().split("\r\n")
        assert lines[0] == "HTTP/1.1 200 OK"
        assert [line.partition(":")[0] for line in lines[1:] if line] == [
            "Content-Type", "Content-Length", "Shoal-Member", "Date"]
        assert lines[1:3] == ["Content-Type: application/json", "Content-Length: 1"]
    writer.close()


async def test_a_pipelined_request_for_another_route_is_handed_over_in_order(
        node: shoal.Node) -> None:
    reader, writer = await _connect(node)
    writer.write(_post(node, "/v1/call/default/waiter", b'"first"')
                 + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                 + _post(node, "/v1/call/default/echo", b'"second"'))
    await writer.drain()
    Waiter.opened.set()  # the first answer is owed while the rest waits behind it
    first, health, second = [await _answer(reader) for _ in range(3)]
    assert (first[0], first[2]) == (200, b'"first"')
    assert (health[0], health[2]) == (200, b"ok\n")
    assert (second[0], second[2]) == (200, b'"second"')
    writer.close()


async def test_pipelined_requests_split_at_any_byte_are_answered_in_order(
        node: shoal.Node) -> None:
    """The hand-off finds where a request starts whatever the reads' boundaries
    (front.py Rule 6): bodies with a Content-Length or chunked, and one
    request for aiohttp's routes, split into pieces of 1 to 300 bytes."""
    rng = random.Random(16)
    health = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    for trial in range(25):
        requests: list[bytes] = []
        expected: list[bytes] = []
        for index in range(rng.randint(2, 5)):
            if index == 1 and trial % 2:
                requests.append(health)
                expected.append(b"ok\n")
                continue
            body = json.dumps(f"{trial}.{index}." + "x" * rng.randint(0, 1500)).encode()
            request = _post(node, "/v1/call/default/echo", body)
            if rng.random() < 0.4:
                request = request.replace(f"Content-Length: {len(body)}".encode(),
                                          b"Transfer-Encoding: chunked").replace(
                    body, f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
            requests.append(request)
            expected.append(body)
        data = b"".join(requests)
        reader, writer = await _connect(node)
        position = 0
        while position < len(data):
            size = rng.randint(1, 300)
            writer.write(data[position:position + size])
            position += size
            await writer.drain()
        assert [(await _answer(reader))[2] for _ in expected] == expected, f"trial {trial}"
        writer.close()


async def test_expect_100_continue_is_answered_before_the_body(node: shoal.Node) -> None:
    reader, writer = await _connect(node)
    body = json.dumps("x" * 1500).encode()
    head, _, _ = _post(node, "/v1/call/default/echo", body,
                       extra="Expect: 100-continue\r\n").partition(b"\r\n\r\n")
    writer.write(head + b"\r\n\r\n")
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT) \
        == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(body)
    status, _, answered = await _answer(reader)
    assert (status, answered) == (200, body)
    writer.close()


async def test_a_refused_expect_100_continue_gets_the_refusal_and_the_connection_closes(
        node: shoal.Node) -> None:
    reader, writer = await _connect(node)
    request = _post(node, "/v1/call/default/echo", b"[1]", extra="Expect: 100-continue\r\n")
    writer.write(request.replace(_token(node).encode(), b"wrong-token-0123456789")
                 .partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
    status, headers, body = await _answer(reader)
    assert status == 401 and json.loads(body)["error"]["kind"] == "unauthorized"
    assert headers["connection"] == "close" and await _closed(reader)


async def test_a_chunked_body_is_read(node: shoal.Node) -> None:
    reader, writer = await _connect(node)
    head = _post(node, "/v1/call/default/echo", b"").replace(
        b"Content-Length: 0", b"Transfer-Encoding: chunked")
    writer.write(head + b"3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n")
    assert (await _answer(reader))[::2] == (200, b"[1,2]")
    writer.close()


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_over_the_limit_is_413_and_the_connection_closes(
        node: shoal.Node, chunked: bool) -> None:
    reader, writer = await _connect(node)
    body = json.dumps("x" * 3000).encode()  # the limit is 2000 bytes here
    request = _post(node, "/v1/call/default/echo", body)
    if chunked:
        request = request.replace(f"Content-Length: {len(body)}".encode(),
                                  b"Transfer-Encoding: chunked").replace(
            body, f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
    writer.write(request)
    status, headers, answered = await _answer(reader)
    assert status == 413 and json.loads(answered)["error"]["kind"] == "too_large"
    assert headers["connection"] == "close" and await _closed(reader)


async def test_a_malformed_request_is_400_and_the_connection_closes(node: shoal.Node) -> None:
    reader, writer = await _connect(node)
    writer.write(b"POST /v1/call/default/echo HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
    status, headers, body = await _answer(reader)
    assert status == 400 and json.loads(body)["error"]["kind"] == "bad_request"
    assert headers["connection"] == "close" and await _closed(reader)


async def test_an_http_1_0_request_is_answered_then_the_connection_closes(
        node: shoal.Node) -> None:
    reader, writer = await _connect(node)
    writer.write(_post(node, "/v1/call/default/echo", b"7", version="1.0"))
    status, headers, body = await _answer(reader)
    assert (status, body, headers["connection"]) == (200, b"7", "close")
    assert await _closed(reader)


async def test_a_call_whose_client_goes_away_is_cancelled(node: shoal.Node) -> None:
    _reader, writer = await _connect(node)
    writer.write(_post(node, "/v1/call/default/waiter", b"1"))
    in_flight = node.cluster_view.calls_in_flight
    await wait_until(lambda: in_flight() == 1, timeout=WAIT, what="the call sent")
    writer.close()  # the client goes away before the member answers
    await wait_until(lambda: in_flight() == 0, timeout=WAIT, what="the call given up")
    Waiter.opened.set()


async def test_calls_over_https(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, names=("a",))
    async with shoal.Node("a", store="memory://", secret=SECRET, http="127.0.0.1:0",
                          tls_cert=pki.cert("a"), tls_key=pki.key("a"), tls_ca=pki.ca,
                          http_tls=True) as node:
        await node.groups.join("echo", await node.spawn(Echo))
        reader, writer = await _connect(node, ssl.create_default_context(cafile=str(pki.ca)))
        writer.write(_post(node, "/v1/call/default/echo", b"[1]")
                     + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await _answer(reader))[::2] == (200, b"[1]")
        assert (await _answer(reader))[::2] == (200, b"ok\n")
        writer.close()


async def test_a_silent_connection_owing_nothing_is_closed_after_the_keepalive_bound(
        node: shoal.Node) -> None:
    assert node.gateway is not None

    async def unused(_request: web.BaseRequest) -> web.StreamResponse:
        raise AssertionError("only the front's routes are asked")
    front = Front(node.gateway, web.Server(unused), keepalive=0.2)
    port = await front.start("127.0.0.1", 0, None)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_post(node, "/v1/call/default/echo", b"1"))
        assert (await _answer(reader))[::2] == (200, b"1")
        assert await _closed(reader)  # within WAIT, long after 0.2 s of silence
    finally:
        await front.close()


async def test_more_targets_and_header_names_than_the_front_keeps_are_all_answered(
        node: shoal.Node) -> None:
    """The front keeps the routes of the last request targets and the text of
    the last header names (shoal/gateway/http11.py, front.py): past their
    bounds it forgets them and reads each request afresh, answering the same."""
    from shoal.gateway import front, http11

    count = max(http11.MAX_TARGETS, front.MAX_NAMES) + 50
    reader, writer = await _connect(node)
    writer.write(b"".join(
        _post(node, f"/v1/call/default/echo?timeout=1.{i}", str(i).encode(),
              extra=f"X-Extra-{i}: {i}\r\nSHOAL-STRATEGY: random\r\n")
        for i in range(count)))
    answers = [await _answer(reader) for _ in range(count)]
    assert [(status, body) for status, _, body in answers] == [
        (200, str(i).encode()) for i in range(count)]
    assert len(http11.ROUTE_CACHE) <= http11.MAX_TARGETS
    assert len(front.NAME_CACHE) <= front.MAX_NAMES
    writer.write(_post(node, "/v1/call/default/echo?timeout=0", b"1"))
    status, _, body = await _answer(reader)
    assert status == 400 and "timeout='0'" in json.loads(body)["error"]["message"]
    writer.close()


@pytest.mark.parametrize("body", [
    b"1", b" 1", b"1 ", b"\n[1, 2]\n", b'"text"', b"-0.5e3", b"NaN", b"-Infinity", b"1e400",
    b"true", b"null", b'{"a": [1, {"b": null}]}', b'{"$bin": "00ff"}', b'{"$pid": ["n", 1, 2]}',
    b"[1,", b"1 x", b"{}{}", b'"\\ud800"', b"tru", b"[" * 300 + b"]" * 300, "\"é\"".encode()])
def test_a_json_body_reads_as_json_loads_reads_it(body: bytes) -> None:
    """bodies.decode scans a body that is one JSON value from its first byte
    to its last with json's C scanner and leaves any other to json.loads:
    the same term, or the same error, either way."""
    from shoal.errors import BadArgument
    from shoal.gateway.bodies import JSON, decode
    from shoal.gateway.jsonmap import from_json

    def by_loads() -> Any:
        try:
            value = json.loads(body.decode())
        except (ValueError, RecursionError) as exc:
            return f"JSON ({exc})"
        try:
            return from_json(value)
        except BadArgument as exc:
            return str(exc)

    try:
        got: Any = decode(body, JSON)
    except BadArgument as exc:
        got = str(exc)
        expected = by_loads()
        assert isinstance(expected, str) and expected in got
        return
    expected = by_loads()
    assert repr(got) == repr(expected)


async def test_a_request_to_the_front_and_its_answer_poke_the_node_s_busy_poll(
        node: shoal.Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """front.py Rule 7: call traffic through the front keeps the loop polling
    (runtime/spin.py); a connection that sends nothing, or asks for
    /metrics, opens no window."""
    from shoal.runtime.spin import BusyPoll

    assert node.gateway is not None
    poll = BusyPoll(150, switches=lambda: 0, pressure=lambda: None)  # no contention here
    poll.start(asyncio.get_running_loop())
    monkeypatch.setattr(node, "busy_poll", poll)
    pokes = 0

    def poke() -> None:
        nonlocal pokes
        pokes += 1
        poll.poke()

    async def other(_request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(text="metrics")  # a request the front hands over
    front = Front(node.gateway, web.Server(other))
    assert front.poke == poll.poke
    front.poke = poke
    port = await front.start("127.0.0.1", 0, None)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert pokes == 0 and poll.windows == 0
        writer.write(_post(node, "/v1/call/default/echo", b"1"))
        assert (await _answer(reader))[::2] == (200, b"1")
        assert pokes == 2 and poll.windows >= 1  # the request's head, the answer written
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # handed to aiohttp
        assert (await _answer(reader))[0] == 200
        assert pokes == 2  # /metrics is not call traffic (spin.py Rule 1)
        writer.close()
        # A new connection: the one above was handed to aiohttp for good.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/call/default/echo HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer wrong\r\nContent-Length: 1\r\n\r\n1")
        assert (await _answer(reader))[0] == 401
        assert pokes == 2  # a refused request does not make the node spin (Rule 7)
        writer.close()
    finally:
        poll.stop()
        await front.close()


async def test_a_client_accepting_anything_gets_json_replies(node: shoal.Node) -> None:
    reader, writer = await _connect(node)
    for accept in ("*/*", None):
        for body, reply in [(b"7", b"7"), (b'"t\\u00e9"', b'"t\\u00e9"'), (b"null", b"null"),
                            (b"true", b"true"), (b"[1, 2.5]", b"[1,2.5]"),
                            (b'{"$bin": "00"}', b'{"$bin":"00"}')]:
            writer.write(_post(node, "/v1/call/default/echo", body,
                               extra=f"Accept: {accept}\r\n" if accept else ""))
            status, headers, got = await _answer(reader)
            assert (status, headers["content-type"], got) == (200, "application/json", reply)
    writer.close()


def test_the_front_keeps_every_header_the_routes_read() -> None:
    """The front keeps only the headers of http11.HEADERS_READ: every header
    name the hot path's modules read must be there (or its reader would see
    it missing on the front, and only there)."""
    import re

    import shoal.gateway as package
    from shoal.gateway import callers, http11

    names: set[str] = set(callers.OPTION_HEADERS.values())
    for module in ("bodies", "callers", "context", "front", "http11"):
        text = (Path(package.__file__).parent / f"{module}.py").read_text()
        names.update(re.findall(r'(?:headers|by_name)\.get\("([^"]+)"', text))
        names.update(re.findall(r'"([^"]+)" (?:not )?in (?:request\.)?headers(?![.\w])', text))
    assert {"authorization", "content-type", "accept", "shoal-timeout"} <= names  # found
    assert names <= http11.HEADERS_READ
    assert all(name == name.lower() for name in names)


async def test_headers_no_route_reads_are_not_kept_and_change_nothing(node: shoal.Node) -> None:
    reader, writer = await _connect(node)
    for i in range(3):
        writer.write(_post(node, "/v1/call/default/echo", b"5", extra=(
            f"User-Agent: x/{i}\r\nX-Trace: {i}\r\nAccept-Encoding: gzip\r\nConnection: keep-alive"
            "\r\n")))
        status, _, body = await _answer(reader)
        assert (status, body) == (200, b"5")
    writer.close()
