"""A registered member's proxy forwarding to its callback (docs/gateway.md
section 5): the request and its headers, every kind of answer, the call's
deadline, a callback that is gone, concurrency, and load as least_loaded
sees it."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from gateway_members_support import WAIT, Gateway, Service, left, next_event, pid_of

import shoal
from shoal.testing import wait_until


@pytest.fixture
async def gw(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.delenv("SHOAL_GATEWAY_TOKEN", raising=False)
    async with shoal.Node("gw", store="memory://", http="127.0.0.1:0", seed=7,
                          drain_timeout=2.0) as node, aiohttp.ClientSession() as session:
        yield Gateway(node, session)


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    started = await Service().start()
    yield started
    started.gate.set()
    await started.stop()


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return {"python": request}


class Relay(shoal.GenServer):
    """Calls the group from inside a process."""

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return await self.node.groups.call("g", request)


def metric(gw: Gateway) -> int:
    assert gw.node.gateway is not None
    return gw.node.gateway.metrics.callback_timeouts


async def test_calls_casts_and_messages_reach_the_callback_with_their_headers(
        gw: Gateway, service: Service) -> None:
    node = gw.node
    async with gw.stream({"group": "g", "callback_url": service.url,
                          "callback_token": "s3cret"}) as (data, _):
        pid = pid_of(data)
        relay = await node.spawn(Relay)
        reply = await node.groups.call("g", {"op": "echo", "value": {"x": [1, b"\x01"]}},
                                       timeout=3.0)
        assert reply == {"x": [1, b"\x01"]}
        node.groups.cast("g", {"op": "echo", "value": "cast"})
        node.send(pid, {"op": "echo", "value": "info"})
        await service.wait(lambda: len(service.received) == 3, "the cast and the info")
        assert service.kinds() == ["call", "cast", "info"]
        (headers, body), _, _ = service.received
        assert body == {"op": "echo", "value": {"x": [1, {"$bin": "01"}]}}
        assert headers["Content-Type"] == "application/json"
        assert headers["Accept-Encoding"] == "identity"  # its answer is read as sent
        assert headers["Shoal-Member"] == str(pid)
        assert headers["Shoal-Registration"] == data["id"]
        assert headers["Authorization"] == "Bearer s3cret"
        assert 2500 < int(headers["Shoal-Deadline-Ms"]) <= 3000
        assert "Shoal-Caller" not in headers  # called from outside any process
        assert all("Shoal-Deadline-Ms" not in h for h, _ in service.received[1:])
        # A caller that is a process is named.
        assert await node.call(relay, {"op": "echo", "value": "relayed"}) == "relayed"
        assert service.received[-1][0]["Shoal-Caller"] == str(relay)
        # Through the gateway's own route too.
        status, answer = await gw.request("POST", "/v1/call/default/g",
                                          {"op": "echo", "value": [True, None]})
        assert (status, answer) == (200, [True, None])


async def test_a_msgpack_member_gets_exact_types(gw: Gateway, service: Service) -> None:
    async with gw.stream({"group": "g", "callback_url": service.url,
                          "format": "msgpack"}) as _:
        value = {"big": 2**60 + 1, "bytes": b"\x00", "pid": gw.node.self_pid,
                 "float": 2.5, b"key": [1]}
        assert await gw.node.groups.call("g", {"op": "echo", "value": value}) == value
        headers, body = service.received[0]
        assert headers["Content-Type"] == "application/msgpack"
        assert body == {"op": "echo", "value": value}


async def test_a_crash_a_rejection_and_a_garbled_answer_reach_the_caller(
        gw: Gateway, service: Service) -> None:
    node = gw.node
    async with gw.stream({"group": "g", "callback_url": service.url}) as (data, _):
        pid = pid_of(data)
        with pytest.raises(shoal.CallError) as crash:
            await node.groups.call("g", {"op": "crash"})
        assert (crash.value.remote_type, crash.value.remote_message) == ("ValueError", "boom")
        assert crash.value.pid == pid
        with pytest.raises(shoal.BadRequest, match="not this one"):
            await node.groups.call("g", {"op": "reject"})
        with pytest.raises(shoal.CallError) as garbled:
            await node.groups.call("g", {"op": "garbage"})
        assert garbled.value.remote_type == "shoal.gateway.CallbackError"
        # Through the gateway, with the documented kinds.
        status, body = await gw.request("POST", "/v1/call/default/g", {"op": "crash"})
        assert status == 502 and body["error"]["kind"] == "crash"
        assert body["error"]["remote_type"] == "ValueError"
        status, body = await gw.request("POST", "/v1/call/default/g", {"op": "reject"})
        assert status == 422 and body["error"]["kind"] == "rejected"
        # None of that ends the member: the service is still there.
        assert node.groups.get_members("g") == [pid]
        assert await node.groups.call("g", {"op": "echo", "value": "ok"}) == "ok"
        # An answer over the gateway's body limit is a crash too, read no further.
        with pytest.raises(shoal.CallError, match="over"):
            await node.groups.call("g", {"op": "big", "value": 2 << 20})
        # A request JSON cannot carry is refused before anything is sent.
        with pytest.raises(shoal.BadRequest, match="json"):
            await node.groups.call("g", {"op": "echo", "value": math.nan})


async def test_a_hung_callback_is_given_up_at_the_deadline_and_counted(
        gw: Gateway, service: Service) -> None:
    node = gw.node
    loop = asyncio.get_running_loop()
    async with gw.stream({"group": "g", "callback_url": service.url}) as (data, _):
        before = metric(gw)
        started = loop.time()
        with pytest.raises(shoal.CallTimeout):
            await node.groups.call("g", {"op": "hold"}, timeout=0.3)
        assert loop.time() - started < 1.5
        # The exchange was abandoned (the service saw its request cancelled),
        # counted, and the member holds nothing any more.
        await service.wait(lambda: service.cancelled == 1, "the hung request cancelled")
        assert metric(gw) == before + 1
        proc = node.local_process(pid_of(data))
        assert proc is not None and proc.queue_len() == 0
        status, body = await gw.request("POST", "/v1/call/default/g?timeout=0.3", {"op": "hold"})
        assert status == 504 and body["error"]["kind"] == "timeout"
        assert metric(gw) == before + 2
        async with gw.session.get(gw.url + "/metrics") as answer:
            text = await answer.text()
        assert f"shoal_gateway_callback_timeouts_total {before + 2}.0" in text


async def test_a_callback_that_refuses_connections_is_left_and_its_calls_go_elsewhere(
        gw: Gateway, service: Service) -> None:
    node = gw.node
    python = await node.spawn(Echo)
    await node.groups.join("g", python)
    async with gw.stream({"group": "g", "callback_url": service.url}) as (data, answer):
        proxy = pid_of(data)
        assert sorted(node.groups.get_members("g")) == sorted([python, proxy])
        await service.stop()  # the service is gone: its port refuses connections
        replies = [await node.groups.call("g", i, strategy="round_robin") for i in range(20)]
        assert replies == [{"python": i} for i in range(20)]  # zero failures
        assert node.groups.get_members("g") == [python]
        assert not node.is_alive(proxy)
        assert await next_event(answer) == ("exited", {"reason": "callback_unreachable"})


async def test_concurrency_bounds_the_calls_in_flight_and_the_rest_queue(
        gw: Gateway, service: Service) -> None:
    node = gw.node
    async with gw.stream({"group": "g", "callback_url": service.url,
                          "concurrency": 2}) as (data, _):
        proc = node.local_process(pid_of(data))
        assert proc is not None
        calls = [asyncio.ensure_future(node.groups.call("g", {"op": "hold", "value": i}))
                 for i in range(5)]
        await service.wait(lambda: service.in_flight == 2, "two in flight")
        # The proxy still takes calls (deferred replies): two out, three queued,
        # and all five count as its queue length.
        await service.wait(lambda: proc.queue_len() == 5, "five held")
        assert len(proc.mailbox) == 0
        service.gate.set()
        assert await asyncio.gather(*calls) == [0, 1, 2, 3, 4]
        assert service.most_in_flight == 2
        assert proc.queue_len() == 0


async def test_least_loaded_spreads_calls_by_the_members_calls_in_flight(
        gw: Gateway, service: Service) -> None:
    node = gw.node
    idle = await Service().start()
    try:
        async with gw.stream({"group": "g", "callback_url": service.url}) as (busy_data, _), \
                gw.stream({"group": "g", "callback_url": idle.url}) as (idle_data, _):
            busy, free = pid_of(busy_data), pid_of(idle_data)
            held = [asyncio.ensure_future(node.call(busy, {"op": "hold", "value": n}, 30.0))
                    for n in range(3)]
            await service.wait(lambda: service.in_flight == 3, "three calls held by one member")
            # Its proxy counts the three it holds as its queue length, the
            # other's is 0: least_loaded takes the busy one only when it
            # draws it twice (with replacement), 1 pick in 4. 400 picks put
            # the bounds below more than four standard deviations away.
            picks = Counter(node.groups.select("g", strategy="least_loaded")
                            for _ in range(400))
            assert picks[busy] < 0.35 * 400 and picks[free] > 0.65 * 400, picks
            assert picks[busy] > 0  # still drawn now and then: a stale load heals
            service.gate.set()
            assert await asyncio.gather(*held) == [0, 1, 2]
    finally:
        await idle.stop()


async def test_a_direct_call_to_a_member_whose_callback_is_gone_did_not_start(
        gw: Gateway, service: Service) -> None:
    node = gw.node
    async with gw.stream({"group": "g", "callback_url": service.url}) as (data, _):
        proxy = pid_of(data)
        await service.stop()
        # The proxy is alive and in the group until its first call finds the
        # callback gone: that call fails "no such process", never started.
        with pytest.raises(shoal.NoSuchProcess):
            await node.call(proxy, {"op": "echo", "value": 1})
        assert await left(node, "g", proxy) < WAIT


async def test_a_stopping_node_lets_its_members_calls_in_flight_finish(
        gw: Gateway, service: Service) -> None:
    node = gw.node
    async with gw.stream({"group": "g", "callback_url": service.url}) as (data, answer):
        proxy = pid_of(data)
        call = asyncio.ensure_future(node.groups.call("g", {"op": "hold", "value": "done"}))
        await service.wait(lambda: service.in_flight == 1, "the call in flight")
        stopping = asyncio.ensure_future(node.stop())
        await left(node, "g", proxy)  # out of its group first (G4) ...
        # ... and stopped: its terminate runs, holding the call.
        await wait_until(lambda: not node.is_alive(proxy), timeout=WAIT, what="proxy exiting")
        assert not call.done()
        service.gate.set()  # its call finishes, not failed by the stop
        assert await asyncio.wait_for(call, WAIT) == "done"
        await asyncio.wait_for(stopping, WAIT)
        assert await next_event(answer) == ("exited", {"reason": "shutdown"})


async def test_a_connection_lost_mid_call_is_delivery_unknown(
        gw: Gateway, service: Service) -> None:
    node = gw.node
    python = await node.spawn(Echo)
    async with gw.stream({"group": "g", "callback_url": service.url}) as (data, _):
        proxy = pid_of(data)
        with pytest.raises(shoal.ProcessExited, match="connection lost"):
            await node.call(proxy, {"op": "drop"})
        # Not retried elsewhere unless the caller says it may run twice.
        await node.groups.join("g", python)
        await node.groups.leave("g", proxy)
        await node.groups.join("g", proxy)
        assert await node.groups.call("g", {"op": "drop"}, idempotent=True,
                                      strategy="round_robin") == {"python": {"op": "drop"}}
        assert node.is_alive(proxy)  # the member itself is still there


async def test_a_queued_call_whose_caller_gave_up_is_never_sent_and_the_queue_is_bounded(
        gw: Gateway, service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    import shoal.gateway.proxy as proxy_module

    monkeypatch.setattr(proxy_module, "QUEUE_LIMIT", 1)
    node = gw.node
    async with gw.stream({"group": "g", "callback_url": service.url,
                          "concurrency": 1}) as (data, _):
        proxy = pid_of(data)
        first = asyncio.ensure_future(node.call(proxy, {"op": "hold", "value": 1}))
        await service.wait(lambda: service.in_flight == 1, "the first in flight")
        with pytest.raises(shoal.CallTimeout):
            await node.call(proxy, {"op": "echo", "value": "queued"}, 0.2)
        # The call given up is dropped from the queue to make room: of two
        # more, one is queued, and the other finds the queue full.
        more = [asyncio.ensure_future(node.call(proxy, {"op": "echo", "value": v}))
                for v in (3, 4)]
        await asyncio.wait(more, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
        service.gate.set()
        outcomes = await asyncio.gather(*more, return_exceptions=True)
        [refused] = [o for o in outcomes if isinstance(o, shoal.Overloaded)]
        [taken] = [o for o in outcomes if o is not refused]
        assert await first == 1 and taken in (3, 4)
        # Never sent: the call whose caller gave up, and the one refused.
        assert [body["value"] for _, body in service.received] == [1, taken]


async def test_a_stopping_node_drains_its_members_together_not_one_after_the_other(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    import shoal.gateway.proxy as proxy_module

    monkeypatch.setattr(proxy_module, "SHUTDOWN_DRAIN", 1.0)
    node = gw.node
    loop = asyncio.get_running_loop()
    services = [await Service().start() for _ in range(4)]
    held = []
    try:
        async with contextlib.AsyncExitStack() as streams:
            for service in services:
                data, _ = await streams.enter_async_context(
                    gw.stream({"group": "g", "callback_url": service.url}))
                # A call none of them will answer, held by each member.
                held.append(asyncio.ensure_future(node.call(pid_of(data), {"op": "hold"}, 30.0)))
            for service in services:
                await service.wait(lambda s=service: s.in_flight == 1, "the call held")
            started = loop.time()
            await node.stop()
            # One shared window of 1 s, not 1 s per member (4 s).
            assert loop.time() - started < 3.0
            outcomes = await asyncio.gather(*held, return_exceptions=True)
            assert all(isinstance(o, shoal.ProcessExited) for o in outcomes), outcomes
    finally:
        for service in services:
            service.gate.set()
            await service.stop()
