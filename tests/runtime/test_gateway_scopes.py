"""The HTTP/JSON gateway serves any scope, though its node follows only the
scopes it opens: a request naming a scope the node never opened loads that
scope's membership first, then answers from it."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

import shoal
from shoal.store import MemoryStore

SECRET = "gateway-scopes-test-secret-0123456789"


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


async def test_members_and_calls_of_a_scope_the_gateway_node_never_opened(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOAL_GATEWAY_TOKEN", raising=False)
    monkeypatch.delenv("SHOAL_GATEWAY_REMOTE", raising=False)
    store = MemoryStore()
    async with shoal.Node("owner", store=store, secret=SECRET, listen="127.0.0.1:0") as owner, \
            shoal.Node("gw", store=store.another_client(), secret=SECRET,
                       listen="127.0.0.1:0", http="127.0.0.1:0") as gw:
        pid = await owner.spawn(Echo)
        await owner.scope("jobs").join("workers", pid)
        await owner.scope("jobs").sync()
        assert "jobs" not in gw.followed_scopes()
        assert gw.gateway is not None and gw.gateway.token is not None
        host, port = gw.http_address or ("", 0)
        auth = {"Authorization": f"Bearer {gw.gateway.token}"}
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{host}:{port}/v1/members/jobs/workers",
                                   headers=auth) as answer:
                assert answer.status == 200
                assert json.loads(await answer.read())["members"] == [{"$pid": list(pid)}]
            async with session.post(f"http://{host}:{port}/v1/call/jobs/workers",
                                    data=b'"hi"', headers={
                                        **auth, "Content-Type": "application/json"}) as answer:
                assert answer.status == 200 and json.loads(await answer.read()) == "hi"
        assert "jobs" in gw.followed_scopes()
