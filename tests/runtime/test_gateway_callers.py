"""The gateway's callers' routes on one in-process node (docs/gateway.md
sections 1-4): every documented answer, bad input included, and nothing
left behind by a client that goes away."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiohttp.web
import msgpack
import pytest

import shoal
from shoal.gateway.context import is_loopback, max_scopes_from_env
from shoal.testing import wait_until
from shoal.wire import pack_term, unpack_term


class Echo(shoal.GenServer):
    async def init(self) -> None:
        self.seen: list[Any] = []

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if request == "seen":
            return self.seen
        if request == "nan":
            return math.nan
        if request == "reject":
            raise shoal.BadRequest(request, "not this one")
        return request

    async def handle_cast(self, request: Any) -> None:
        self.seen.append(["cast", request])

    async def handle_info(self, message: Any) -> None:
        self.seen.append(["info", message])


class Slow(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        await asyncio.sleep(float(request))
        return request


class Gateway:
    def __init__(self, node: shoal.Node, session: aiohttp.ClientSession, echo: shoal.Pid) -> None:
        self.node = node
        self.session = session
        self.echo = echo
        host, port = node.http_address or ("", 0)
        self.url = f"http://{host}:{port}"
        assert node.gateway is not None and node.gateway.token is not None
        self.auth = {"Authorization": f"Bearer {node.gateway.token}"}

    async def request(self, method: str, path: str, *, data: bytes | None = None,
                      headers: dict[str, str] | None = None,
                      auth: bool = True) -> tuple[int, bytes, Any]:
        sent = {**(self.auth if auth else {}), **(headers or {})}
        async with self.session.request(method, self.url + path, data=data,
                                        headers=sent) as answer:
            return answer.status, await answer.read(), answer.headers

    async def post(self, path: str, body: Any, **headers: str) -> tuple[int, Any, Any]:
        status, raw, got = await self.request(
            "POST", path, data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **headers})
        return status, json.loads(raw), got


@pytest.fixture
async def gw(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.setenv("SHOAL_GATEWAY_MAX_BODY", "4096")
    monkeypatch.delenv("SHOAL_GATEWAY_TOKEN", raising=False)
    monkeypatch.delenv("SHOAL_GATEWAY_REMOTE", raising=False)
    async with shoal.Node("gw", store="memory://", http="127.0.0.1:0", drain_timeout=2.0) as node:
        echo = await node.spawn(Echo)
        await node.groups.join("echo", echo)
        await node.groups.join("slow", await node.spawn(Slow))
        async with aiohttp.ClientSession() as session:
            yield Gateway(node, session, echo)


def _error(body: Any) -> tuple[str, bool]:
    return body["error"]["kind"], body["error"]["retry_safe"]


async def test_a_group_call_returns_the_reply_and_who_answered(gw: Gateway) -> None:
    status, body, headers = await gw.post("/v1/call/default/echo", {"x": [1, {"$bin": "ff"}]})
    assert (status, body) == (200, {"x": [1, {"$bin": "ff"}]})
    assert headers["Shoal-Member"] == str(gw.echo)


async def test_options_come_from_the_query_or_the_headers(gw: Gateway) -> None:
    status, _, _ = await gw.post("/v1/call/default/echo?strategy=hash&key=k", 1)
    assert status == 200
    status, _, _ = await gw.post("/v1/call/default/echo", 1, **{"Shoal-Strategy": "hash",
                                                               "Shoal-Key": "k"})
    assert status == 200
    status, body, _ = await gw.post("/v1/call/default/echo?strategy=nope", 1)
    assert status == 400 and "strategy" in body["error"]["message"]
    status, body, _ = await gw.post("/v1/call/default/echo", 1, **{"Shoal-Timeout": "0"})
    assert status == 400 and "timeout" in body["error"]["message"]
    status, body, _ = await gw.post("/v1/call/default/echo?idempotent=maybe", 1)
    assert status == 400 and "idempotent" in body["error"]["message"]


async def test_the_gateway_answers_504_when_the_timeout_passes(gw: Gateway) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, body, _ = await gw.post("/v1/call/default/slow?timeout=0.2", 5)
    assert status == 504
    assert _error(body) == ("timeout", False)
    assert loop.time() - started < 3


async def test_a_call_to_a_pid_a_cast_and_a_send_reach_the_process(gw: Gateway) -> None:
    pid = str(gw.echo)
    status, body, _ = await gw.post(f"/v1/call/pid/{pid}", "hello")
    assert (status, body) == (200, "hello")
    status, body, _ = await gw.post(f"/v1/cast/pid/{pid.strip('<>')}", ["c", 1])
    assert (status, body) == (202, {})
    status, body, _ = await gw.post(f"/v1/send/pid/{pid}", {"tick": True})
    assert (status, body) == (202, {})
    status, body, _ = await gw.post("/v1/cast/default/echo", "g")
    assert status == 202 and body == {"member": {"$pid": list(gw.echo)}}
    seen = await gw.node.call(gw.echo, "seen")
    assert sorted(map(str, seen)) == sorted(map(str, [["cast", ["c", 1]], ["info", {"tick": True}],
                                                      ["cast", "g"]]))


async def test_members_lists_the_group(gw: Gateway) -> None:
    status, raw, _ = await gw.request("GET", "/v1/members/default/echo")
    assert status == 200
    assert json.loads(raw) == {"scope": "default", "group": "echo",
                               "members": [{"$pid": list(gw.echo)}],
                               "routable": [{"$pid": list(gw.echo)}]}


async def test_msgpack_bodies_carry_exact_types_both_ways(gw: Gateway) -> None:
    request = {"pid": gw.echo, "blob": b"\x00", "big": 2**60 + 1}
    status, raw, headers = await gw.request(
        "POST", "/v1/call/default/echo", data=pack_term(request),
        headers={"Content-Type": "application/msgpack"})
    assert status == 200 and headers["Content-Type"] == "application/msgpack"
    assert unpack_term(raw) == request
    status, raw, headers = await gw.request(
        "POST", "/v1/call/default/echo", data=pack_term([1]),
        headers={"Content-Type": "application/msgpack", "Accept": "application/json"})
    assert (status, json.loads(raw)) == (200, [1])


async def test_a_reply_json_cannot_hold_is_502_unless_msgpack_is_accepted(gw: Gateway) -> None:
    status, body, _ = await gw.post("/v1/call/default/echo", "nan")
    assert status == 502 and _error(body) == ("unencodable", False)
    status, raw, headers = await gw.request(
        "POST", "/v1/call/default/echo", data=b'"nan"',
        headers={"Content-Type": "application/json",
                 "Accept": "application/json, application/msgpack"})
    assert status == 200 and headers["Content-Type"] == "application/msgpack"
    assert math.isnan(msgpack.unpackb(raw))


async def test_a_rejected_request_is_422(gw: Gateway) -> None:
    status, body, _ = await gw.post("/v1/call/default/echo", "reject")
    assert status == 422 and _error(body) == ("rejected", False)


# -- bad input: each its documented status and body ------------------------------------


async def test_malformed_json_is_400_and_nothing_is_sent(gw: Gateway) -> None:
    status, raw, _ = await gw.request("POST", "/v1/call/default/echo", data=b'{"x": ',
                                      headers={"Content-Type": "application/json"})
    assert status == 400 and _error(json.loads(raw)) == ("bad_request", True)
    status, raw, _ = await gw.request("POST", "/v1/call/default/echo", data=b'{"$what": 1}',
                                      headers={"Content-Type": "application/json"})
    assert status == 400 and "$what" in json.loads(raw)["error"]["message"]
    assert await gw.node.call(gw.echo, "seen") == []


async def test_malformed_msgpack_and_another_media_type_are_refused(gw: Gateway) -> None:
    status, raw, _ = await gw.request("POST", "/v1/call/default/echo", data=b"\xc1",
                                      headers={"Content-Type": "application/msgpack"})
    assert status == 400 and _error(json.loads(raw)) == ("bad_request", True)
    status, raw, _ = await gw.request("POST", "/v1/call/default/echo", data=b"x",
                                      headers={"Content-Type": "text/plain"})
    assert status == 415 and _error(json.loads(raw)) == ("unsupported_media_type", True)


async def test_an_unknown_group_is_404_no_members(gw: Gateway) -> None:
    status, body, _ = await gw.post("/v1/call/default/nobody", 1)
    assert status == 404 and _error(body) == ("no_members", True)
    status, body, _ = await gw.post("/v1/cast/default/nobody", 1)
    assert status == 404 and _error(body) == ("no_members", True)


async def test_a_dead_pid_is_404_noproc_and_a_bad_pid_400(gw: Gateway) -> None:
    dead = shoal.Pid(gw.node.name, gw.node.creation, 999_999)
    status, body, _ = await gw.post(f"/v1/call/pid/{dead}", 1)
    assert status == 404 and _error(body) == ("noproc", True)
    status, body, _ = await gw.post("/v1/call/pid/not-a-pid", 1)
    assert status == 400 and _error(body) == ("bad_request", True)


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0123456789", "Basic abc"])
async def test_a_missing_or_wrong_token_is_401(gw: Gateway, header: str | None) -> None:
    status, raw, _ = await gw.request(
        "POST", "/v1/call/default/echo", data=b"1", auth=False,
        headers={} if header is None else {"Authorization": header})
    assert status == 401 and _error(json.loads(raw)) == ("unauthorized", True)
    assert await gw.node.call(gw.echo, "seen") == []


async def test_operators_paths_need_no_token(gw: Gateway) -> None:
    status, _, _ = await gw.request("GET", "/healthz", auth=False)
    assert status == 200


async def test_a_body_over_the_limit_is_413_and_the_connection_closes(gw: Gateway) -> None:
    status, raw, headers = await gw.request("POST", "/v1/call/default/echo",
                                            data=b'"' + b"x" * 5000 + b'"',
                                            headers={"Content-Type": "application/json"})
    assert status == 413 and _error(json.loads(raw)) == ("too_large", True)
    assert headers.get("Connection", "").lower() == "close"

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
        yield b'"'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"'
    status, raw, _ = await gw.request("POST", "/v1/call/default/echo", data=chunked(),  # type: ignore[arg-type]
                                      headers={"Content-Type": "application/json"})
    assert status == 413 and _error(json.loads(raw)) == ("too_large", True)


async def test_an_unknown_path_is_404_and_a_wrong_method_405(gw: Gateway) -> None:
    status, raw, _ = await gw.request("GET", "/v1/nothing/here")
    assert status == 404 and _error(json.loads(raw)) == ("not_found", True)
    status, raw, _ = await gw.request("GET", "/v1/call/default/echo")
    assert status == 405 and _error(json.loads(raw)) == ("method_not_allowed", True)


def test_the_loopback_rule() -> None:
    for host in ("127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"):
        assert is_loopback(host), host
    for host in ("10.0.0.1", "192.168.1.2", "::ffff:10.0.0.1", "2001:db8::1", "", None, "x"):
        assert not is_loopback(host), host


def _from(address: str, headers: dict[str, str]) -> Any:
    """A request as the gateway sees it from a client at ``address``."""
    from unittest.mock import Mock

    from aiohttp.test_utils import make_mocked_request

    transport = Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (address, 40000) if name == "peername" else default)
    return make_mocked_request("POST", "/v1/call/default/echo", headers=headers,
                              transport=transport)


async def test_a_client_not_on_loopback_is_403_unless_remote_is_allowed(gw: Gateway) -> None:
    ctx = gw.node.gateway
    assert ctx is not None
    handled: list[Any] = []

    async def handler(request: Any) -> Any:
        handled.append(request)
        return aiohttp.web.Response(text="handled")
    answer = await ctx.middleware(_from("10.1.2.3", gw.auth), handler)
    assert answer.status == 403 and not handled
    assert _error(json.loads(answer.body)) == ("forbidden", True)
    assert "--gateway-remote" in json.loads(answer.body)["error"]["message"]
    assert (await ctx.middleware(_from("127.0.0.1", gw.auth), handler)).status == 200
    ctx.allow_remote = True
    assert (await ctx.middleware(_from("10.1.2.3", gw.auth), handler)).status == 200
    ctx.allow_remote = False
    status, _, _ = await gw.post("/v1/call/default/echo", 1)  # a real loopback client passes
    assert status == 200


# -- watch ---------------------------------------------------------------------------


async def _next_event(stream: aiohttp.StreamReader) -> tuple[str, Any]:
    name, data = "", None
    while True:
        line = (await asyncio.wait_for(stream.readline(), 5)).decode()
        if line.startswith("event: "):
            name = line[7:].strip()
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "\n" and name:
            return name, data


async def test_a_watch_streams_members_then_joins_and_leaves(gw: Gateway) -> None:
    async with gw.session.get(gw.url + "/v1/watch/default/echo", headers=gw.auth) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        assert await _next_event(answer.content) == ("members",
                                                     {"members": [{"$pid": list(gw.echo)}]})
        other = await gw.node.spawn(Echo)
        await gw.node.groups.join("echo", other)
        assert await _next_event(answer.content) == ("join", {"pids": [{"$pid": list(other)}]})
        await gw.node.groups.leave("echo", other)
        assert await _next_event(answer.content) == ("leave", {"pids": [{"$pid": list(other)}]})


async def test_a_quiet_watch_sends_a_comment_line_every_heartbeat(gw: Gateway) -> None:
    assert gw.node.gateway is not None and gw.node.gateway.watch_heartbeat == 15.0
    gw.node.gateway.watch_heartbeat = 0.05
    async with gw.session.get(gw.url + "/v1/watch/default/echo", headers=gw.auth) as answer:
        await _next_event(answer.content)
        for _ in range(2):
            assert await asyncio.wait_for(answer.content.readline(), 5) == b": keep-alive\n"
            assert await asyncio.wait_for(answer.content.readline(), 5) == b"\n"


async def test_watches_past_the_bound_are_refused_503_overloaded(gw: Gateway) -> None:
    ctx = gw.node.gateway
    assert ctx is not None
    ctx.max_watches = 2
    answers = [await gw.session.get(gw.url + "/v1/watch/default/echo", headers=gw.auth)
               for _ in range(2)]
    for answer in answers:
        await _next_event(answer.content)
    status, raw, _ = await gw.request("GET", "/v1/watch/default/echo")
    assert status == 503 and _error(json.loads(raw)) == ("overloaded", True)
    assert len(ctx.watches) == 2
    for answer in answers:
        answer.close()
    await wait_until(lambda: not ctx.watches, timeout=5, what="the watches to be closed")
    status, _, _ = await gw.request("GET", "/v1/members/default/echo")
    assert status == 200


async def test_a_node_that_is_stopping_answers_503_unavailable(gw: Gateway) -> None:
    ctx = gw.node.gateway
    assert ctx is not None

    class Draining:
        name, running, stopping, fenced = "gw", True, True, None
    ctx.node, real = Draining(), ctx.node  # type: ignore[assignment]
    try:
        status, body, _ = await gw.post("/v1/call/default/echo", 1)
    finally:
        ctx.node = real
    assert status == 503 and _error(body) == ("unavailable", True)


async def test_a_watch_whose_client_goes_away_leaves_no_subscription(gw: Gateway) -> None:
    ctx = gw.node.gateway
    assert ctx is not None
    answers = []
    for _ in range(3):
        answer = await gw.session.get(gw.url + "/v1/watch/default/echo", headers=gw.auth)
        await _next_event(answer.content)
        answers.append(answer)
    watches = set(ctx.watches)
    assert len(watches) == 3
    for answer in answers:
        answer.close()  # the client goes away without a word
    await wait_until(lambda: not ctx.watches, timeout=5, what="the watches to be closed")
    # Closed subscriptions get nothing more: a join now reaches none of them.
    await gw.node.groups.join("echo", await gw.node.spawn(Echo))
    assert all(s.get_nowait() is None for s in watches)


async def test_requests_are_counted_by_route_and_status_in_metrics(gw: Gateway) -> None:
    await gw.post("/v1/call/default/echo", 1)
    await gw.post("/v1/call/default/nobody", 1)
    await gw.request("GET", "/v1/nothing")
    status, raw, _ = await gw.request("GET", "/metrics", auth=False)
    text = raw.decode()
    assert status == 200
    assert 'shoal_gateway_requests_total{route="/v1/call/{scope}/{group}",status="200"} 1.0' in text
    assert 'shoal_gateway_requests_total{route="/v1/call/{scope}/{group}",status="404"} 1.0' in text
    assert 'shoal_gateway_requests_total{route="unmatched",status="404"} 1.0' in text
    assert "shoal_gateway_callback_timeouts_total 0.0" in text


async def test_a_callback_timeout_counted_by_the_members_shows_in_metrics(gw: Gateway) -> None:
    assert gw.node.gateway is not None
    gw.node.gateway.metrics.callback_timed_out()
    _, raw, _ = await gw.request("GET", "/metrics", auth=False)
    assert "shoal_gateway_callback_timeouts_total 1.0" in raw.decode()


# -- retries: exactly Groups.call's (G3) ------------------------------------------------


class HangsOnce(shoal.GenServer):
    """The first call any of them gets hangs (the test kills it mid-call:
    delivery unknown); every later call is answered."""

    first: list[shoal.Pid] = []

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if not HangsOnce.first:
            HangsOnce.first.append(self.pid)
            await asyncio.sleep(60)
        return ["answered by", self.pid]


@pytest.mark.parametrize("idempotent", [False, True])
async def test_a_call_whose_member_exits_mid_call_is_retried_only_when_idempotent(
        gw: Gateway, idempotent: bool) -> None:
    HangsOnce.first = []
    for _ in range(2):
        await gw.node.groups.join("flaky", await gw.node.spawn(HangsOnce))
    call = asyncio.create_task(gw.post(
        f"/v1/call/default/flaky?idempotent={str(idempotent).lower()}", "x"))
    await wait_until(lambda: bool(HangsOnce.first), timeout=5, what="the first call to hang")
    dead = HangsOnce.first[0]
    gw.node.kill(dead)
    status, body, headers = await asyncio.wait_for(call, 5)
    if idempotent:
        assert status == 200
        assert headers["Shoal-Member"] != str(dead)
        assert body == ["answered by", {"$pid": list(shoal.Pid.parse(headers["Shoal-Member"]))}]
    else:
        assert status == 502
        assert _error(body) == ("exited", False)
        assert body["error"]["member"] == {"$pid": list(dead)}


async def test_a_member_that_provably_did_not_start_is_retried_elsewhere(gw: Gateway) -> None:
    dead = await gw.node.spawn(Echo)
    await gw.node.groups.join("mixed", [dead, gw.echo])
    gw.node.kill(dead)
    await gw.node.wait_exit(dead)
    for _ in range(5):  # whatever the pick, the live member answers
        status, body, headers = await gw.post("/v1/call/default/mixed?strategy=random", 7)
        assert (status, body, headers["Shoal-Member"]) == (200, 7, str(gw.echo))


async def test_the_scopes_the_gateway_opens_on_its_node_are_bounded(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = gw.node.gateway
    assert ctx is not None and ctx.max_scopes == 64  # the documented default
    ctx.max_scopes = 2
    for scope in ("s1", "s2"):
        status, body, _ = await gw.post(f"/v1/call/{scope}/echo", 1)
        assert status == 404 and _error(body) == ("no_members", True)  # opened: empty
    status, body, _ = await gw.post("/v1/call/s3/echo", 1)
    assert status == 400 and _error(body) == ("bad_request", True)
    assert "SHOAL_GATEWAY_MAX_SCOPES" in body["error"]["message"]
    assert "s3" not in gw.node.followed_scopes()  # refused before anything was opened
    # Scopes already followed stay open to it: those it opened, and the node's own.
    status, body, _ = await gw.post("/v1/call/s1/echo", 1)
    assert status == 404 and _error(body) == ("no_members", True)
    status, body, _ = await gw.post("/v1/call/default/echo", 1)
    assert (status, body) == (200, 1)
    await gw.node.open_scope("own")
    status, body, _ = await gw.post("/v1/call/own/echo", 1)
    assert status == 404 and _error(body) == ("no_members", True)
    monkeypatch.setenv("SHOAL_GATEWAY_MAX_SCOPES", "0")
    with pytest.raises(shoal.BadArgument, match="SHOAL_GATEWAY_MAX_SCOPES"):
        max_scopes_from_env()
