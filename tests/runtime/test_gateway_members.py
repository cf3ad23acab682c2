"""Member registrations through the gateway (docs/gateway.md section 5):
how a registration lives (its stream, or its TTL) and ends (the stream
closed or its client killed, the TTL lapsed, DELETE draining, any exit of
its proxy), and the registrations that are refused."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gateway_members_support import (
    WAIT,
    Gateway,
    Service,
    left,
    next_event,
    pid_of,
)

import shoal


@pytest.fixture
async def gw(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.delenv("SHOAL_GATEWAY_TOKEN", raising=False)
    monkeypatch.setenv("SHOAL_GATEWAY_MAX_MEMBERS", "3")
    async with shoal.Node("gw", store="memory://", http="127.0.0.1:0",
                          drain_timeout=2.0) as node, aiohttp.ClientSession() as session:
        yield Gateway(node, session)


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    started = await Service().start()
    yield started
    started.gate.set()
    await started.stop()


async def test_a_stream_registration_lives_while_its_stream_is_open(
        gw: Gateway, service: Service) -> None:
    own = aiohttp.ClientSession()
    async with gw.stream({"group": "g", "callback_url": service.url}, own) as (data, answer):
        pid = pid_of(data)
        assert gw.node.groups.get_members("g") == [pid]
        assert await gw.node.groups.call("g", {"op": "echo", "value": 1}) == 1
        answer.close()  # the client goes away; the heartbeat is 5 s off
    took = await left(gw.node, "g", pid, within=2.0)
    assert took < 2.0
    await own.close()
    assert not gw.node.is_alive(pid)
    status, body = await gw.request("DELETE", f"/v1/members/{data['id']}")
    assert status == 404 and body["error"]["kind"] == "not_found"


CLIENT = r"""
import http.client, json, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
conn.request("POST", "/v1/members", body=json.dumps({"group": "g", "callback_url": sys.argv[3]}),
             headers={"Authorization": "Bearer " + sys.argv[2],
                      "Content-Type": "application/json"})
answer = conn.getresponse()
print(answer.readline().decode().strip(), flush=True)
answer.read()
"""


async def test_a_member_whose_process_is_killed_leaves_its_group_promptly(
        gw: Gateway, service: Service) -> None:
    assert gw.node.gateway is not None and gw.node.gateway.token is not None
    port = (gw.node.http_address or ("", 0))[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, str(port), gw.node.gateway.token, service.url,
        stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(WAIT):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("event: registered"), line
        [pid] = gw.node.groups.get_members("g")
        os.kill(proc.pid, signal.SIGKILL)
        assert await left(gw.node, "g", pid, within=2.0) < 2.0
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_a_ttl_registration_is_renewed_and_ends_when_its_ttl_lapses(
        gw: Gateway, service: Service) -> None:
    loop = asyncio.get_running_loop()
    registered = loop.time()  # the TTL starts later than this ...
    status, body = await gw.request("POST", "/v1/members", {
        "group": "g", "callback_url": service.url, "ttl": 1})
    assert status == 201
    assert set(body) == {"id", "pid", "ttl"} and body["ttl"] == 1
    pid = pid_of(body)
    await asyncio.sleep(0.6)  # time for the TTL to run, not a synchronisation
    renewed_at = loop.time()  # ... and starts again later than this
    status, renewed = await gw.request("PUT", f"/v1/members/{body['id']}")
    assert (status, renewed) == (200, body)
    await left(gw.node, "g", pid)
    assert loop.time() - renewed_at >= 0.99  # a full TTL after the renewal,
    assert loop.time() - registered >= 1.59  # so past the first one
    status, gone = await gw.request("PUT", f"/v1/members/{body['id']}")
    assert status == 404 and gone["error"]["kind"] == "not_found"


async def test_a_stream_registration_is_not_renewed(gw: Gateway, service: Service) -> None:
    async with gw.stream({"group": "g", "callback_url": service.url}) as (data, _):
        status, body = await gw.request("PUT", f"/v1/members/{data['id']}")
        assert status == 400 and "stream" in body["error"]["message"]


async def test_delete_drains_the_calls_in_flight_then_the_proxy_exits(
        gw: Gateway, service: Service) -> None:
    node = gw.node
    async with gw.stream({"group": "g", "callback_url": service.url, "concurrency": 2,
                          "name": "gw-member"}) as (data, answer):
        pid = pid_of(data)
        calls = [asyncio.ensure_future(node.groups.call("g", {"op": "hold", "value": i}))
                 for i in range(3)]  # two in flight, one queued behind them
        await service.wait(lambda: service.in_flight == 2, "two calls in flight")
        deleting = asyncio.ensure_future(gw.request("DELETE", f"/v1/members/{data['id']}"))
        await left(node, "g", pid)  # out of the group (and its name) first ...
        assert node.whereis("gw-member") is None
        with pytest.raises(shoal.NoSuchProcess):
            await node.call(pid, {"op": "echo", "value": "late"})
        assert not deleting.done() and node.is_alive(pid)  # ... its calls still running
        service.gate.set()
        assert await asyncio.gather(*calls) == [0, 1, 2]
        async with asyncio.timeout(WAIT):
            assert await deleting == (200, {"drained": 3})
        assert not node.is_alive(pid)
        event, exited = await next_event(answer)
        assert (event, exited) == ("exited", {"reason": "shutdown"})


async def test_a_proxy_that_exits_for_any_reason_leaves_its_group_and_registry(
        gw: Gateway, service: Service) -> None:
    async with gw.stream({"group": "g", "callback_url": service.url}) as (data, answer):
        pid = pid_of(data)
        sub = gw.node.groups.subscribe("g")
        gw.node.kill(pid)  # no terminate: the exit path alone
        event = await asyncio.wait_for(sub.get(), WAIT)
        assert (event.kind, event.pids, event.reason) == ("leave", (pid,), "killed")
        sub.close()
        # The stream says so once the registration is gone.
        assert await next_event(answer) == ("exited", {"reason": "killed"})
        status, body = await gw.request("DELETE", f"/v1/members/{data['id']}")
        assert status == 404 and body["error"]["kind"] == "not_found"


BAD_BODIES: list[tuple[Any, str]] = [
    ([1, 2], "body"),
    ({"callback_url": "http://127.0.0.1:1/x"}, "group"),
    ({"group": "", "callback_url": "http://127.0.0.1:1/x"}, "group"),
    ({"group": 5, "callback_url": "http://127.0.0.1:1/x"}, "group"),
    ({"group": "g", "scope": "a/b", "callback_url": "http://127.0.0.1:1/x"}, "scope"),
    ({"group": "g"}, "callback_url"),
    ({"group": "g", "callback_url": "ftp://127.0.0.1/x"}, "callback_url"),
    ({"group": "g", "callback_url": "http:///x"}, "callback_url"),
    ({"group": "g", "callback_url": "http://127.0.0.1:99999/x"}, "callback_url"),
    ({"group": "g", "callback_url": "http://a b/x"}, "callback_url"),
    ({"group": "g", "callback_url": "http://h/", "concurrency": 0}, "concurrency"),
    ({"group": "g", "callback_url": "http://h/", "concurrency": 1001}, "concurrency"),
    ({"group": "g", "callback_url": "http://h/", "concurrency": "8"}, "concurrency"),
    ({"group": "g", "callback_url": "http://h/", "concurrency": True}, "concurrency"),
    ({"group": "g", "callback_url": "http://h/", "ttl": 0.5}, "ttl"),
    ({"group": "g", "callback_url": "http://h/", "ttl": 301}, "ttl"),
    ({"group": "g", "callback_url": "http://h/", "ttl": "5"}, "ttl"),
    ({"group": "g", "callback_url": "http://h/", "name": ""}, "name"),
    ({"group": "g", "callback_url": "http://h/", "name": "a/b"}, "name"),
    ({"group": "g", "callback_url": "http://h/", "format": "xml"}, "format"),
    ({"group": "g", "callback_url": "http://h/", "callback_token": "a b"}, "callback_token"),
    ({"group": "g", "callback_url": "http://h/", "tll": 5}, "tll"),
]


async def test_bad_registrations_are_400_naming_the_field(gw: Gateway) -> None:
    for body, field in BAD_BODIES:
        status, answer = await gw.request("POST", "/v1/members", body)
        assert status == 400, (body, answer)
        assert answer["error"]["kind"] == "bad_request" and answer["error"]["retry_safe"]
        assert answer["error"]["message"].startswith(f"{field}:"), (body, answer)
    status, answer = await gw.request("POST", "/v1/members", raw=b'{"group": ')
    assert status == 400 and answer["error"]["kind"] == "bad_request"
    assert not gw.node.groups.which_groups()  # nothing was registered


async def test_a_name_in_use_is_refused_naming_it(gw: Gateway, service: Service) -> None:
    class Idle(shoal.GenServer):
        pass

    gw.node.register("taken", await gw.node.spawn(Idle))
    status, answer = await gw.request("POST", "/v1/members", {
        "group": "g", "callback_url": service.url, "name": "taken", "ttl": 5})
    assert status == 400 and answer["error"]["message"].startswith("name:")
    assert not gw.node.groups.get_members("g")


async def test_the_registry_is_bounded_and_pruned(gw: Gateway, service: Service) -> None:
    spec = {"group": "g", "callback_url": service.url, "ttl": 60}
    ids = []
    for _ in range(3):  # SHOAL_GATEWAY_MAX_MEMBERS=3
        status, body = await gw.request("POST", "/v1/members", spec)
        assert status == 201
        ids.append(body["id"])
    status, body = await gw.request("POST", "/v1/members", spec)
    assert status == 503 and body["error"]["kind"] == "overloaded" and body["error"]["retry_safe"]
    assert "SHOAL_GATEWAY_MAX_MEMBERS" in body["error"]["message"]
    assert await gw.request("DELETE", f"/v1/members/{ids[0]}") == (200, {"drained": 0})
    status, body = await gw.request("POST", "/v1/members", spec)
    assert status == 201  # the ended one's place was freed
    assert len(gw.node.groups.get_members("g")) == 3


def test_the_registration_fields_are_the_documented_ones() -> None:
    from shoal.gateway.member_spec import FIELDS

    doc = (Path(__file__).parents[2] / "docs" / "gateway.md").read_text()
    section = doc[doc.index("## 5."):]
    for field in FIELDS:
        assert f'"{field}"' in section, field


async def test_a_bad_registration_limit_stops_the_node_from_starting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_GATEWAY_MAX_MEMBERS", "none")
    node = shoal.Node("gw", store="memory://", http="127.0.0.1:0")
    with pytest.raises(shoal.BadArgument, match="SHOAL_GATEWAY_MAX_MEMBERS"):
        await node.start()
    assert not node.running


async def test_a_callback_off_loopback_is_refused_unless_the_gateway_serves_remote_clients(
        gw: Gateway, service: Service) -> None:
    spec = {"group": "g", "callback_url": "http://10.1.2.3:9000/shoal", "ttl": 5}
    status, answer = await gw.request("POST", "/v1/members", spec)
    assert status == 400 and answer["error"]["message"].startswith("callback_url:")
    assert "--gateway-remote" in answer["error"]["message"]
    assert not gw.node.groups.get_members("g")  # nothing was registered
    for url in (service.url, service.url.replace("127.0.0.1", "localhost")):
        status, answer = await gw.request("POST", "/v1/members", {**spec, "callback_url": url})
        assert status == 201, answer
    ctx = gw.node.gateway
    assert ctx is not None
    ctx.allow_remote = True  # a gateway started with --gateway-remote
    status, answer = await gw.request("POST", "/v1/members", spec)
    assert status == 201, answer
