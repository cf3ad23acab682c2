"""A member registered through one node's gateway, called from another
node: a callback that is gone makes the caller's group call move on to a
Python member with no failure, and the proxy's calls in flight reach the
caller's node as its queue length (least_loaded across nodes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gateway_members_support import WAIT, Gateway, Service, pid_of
from group_waits import members_seen

import shoal

SECRET = b"gateway-members-remote-secret-0123456789"


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return {"python": request}



@pytest.fixture
async def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               ) -> AsyncIterator[tuple[Gateway, shoal.Node]]:
    monkeypatch.delenv("SHOAL_GATEWAY_TOKEN", raising=False)
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", cluster="gwm", store=store, secret=SECRET,
                          http="127.0.0.1:0", drain_timeout=2.0) as a, \
            shoal.Node("b", cluster="gwm", store=store, secret=SECRET,
                       drain_timeout=2.0) as b, \
            aiohttp.ClientSession() as session:
        yield Gateway(a, session), b


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    started = await Service().start()
    yield started
    started.gate.set()
    await started.stop()


async def test_a_caller_on_another_node_moves_on_when_the_callback_is_gone(
        pair: tuple[Gateway, shoal.Node], service: Service) -> None:
    gw, b = pair
    python = await b.spawn(Echo)
    await b.groups.join("g", python)
    async with gw.stream({"group": "g", "callback_url": service.url}) as (data, _):
        proxy = pid_of(data)
        await members_seen(b, "g", 2, WAIT)
        assert await b.call(proxy, {"op": "echo", "value": 1}) == 1
        await service.stop()
        replies = [await b.groups.call("g", i, strategy="round_robin", timeout=WAIT)
                   for i in range(10)]
        assert replies == [{"python": i} for i in range(10)]  # zero failures
        await members_seen(b, "g", 1, WAIT)
        assert b.groups.get_members("g") == [python]


async def test_a_members_calls_in_flight_reach_callers_on_other_nodes_as_its_load(
        pair: tuple[Gateway, shoal.Node], service: Service) -> None:
    gw, b = pair
    async with gw.stream({"group": "g", "callback_url": service.url}) as (data, _):
        proxy = pid_of(data)
        await members_seen(b, "g", 1, WAIT)
        held = [asyncio.ensure_future(gw.node.call(proxy, {"op": "hold", "value": i}))
                for i in range(3)]
        await service.wait(lambda: service.in_flight == 3, "three held")
        assert await b.groups.call("g", {"op": "echo", "value": "x"},
                                   strategy="least_loaded", timeout=WAIT) == "x"
        # Its reply said what the proxy had to do: the three held calls.
        assert b.cluster_view.reported_queue_lengths()[proxy] == 3
        service.gate.set()
        assert await asyncio.gather(*held) == [0, 1, 2]
