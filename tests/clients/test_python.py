"""The gateway from Python's HTTP client, on the 2-node cluster of
``conftest.py``: the round trips every language client makes."""

from __future__ import annotations

from typing import Any

import aiohttp


async def _post(session: aiohttp.ClientSession, url: str, token: str, body: Any,
                **headers: str) -> tuple[int, Any, Any]:
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {token}",
                                                     **headers}) as answer:
        return answer.status, await answer.json(), answer.headers


async def test_a_call_through_either_node_reaches_the_group_and_returns_the_reply(
        gateway_cluster: Any) -> None:
    sent = {"n": 1, "blob": {"$bin": "00ff"}, "list": [1, "two", None],
            "odd": {"$map": {"$keys": [{"$pid": ["n1", 1, 2]}]}}}
    async with aiohttp.ClientSession() as session:
        for url in gateway_cluster.urls:
            status, reply, headers = await _post(
                session, f"{url}/v1/call/default/echo?strategy=round_robin",
                gateway_cluster.token, sent)
            assert status == 200
            assert reply == sent
            assert headers["Shoal-Member"].startswith("<n")


async def test_a_handler_crash_arrives_as_kind_crash_with_the_remote_type(
        gateway_cluster: Any) -> None:
    async with aiohttp.ClientSession() as session:
        status, body, _ = await _post(session, f"{gateway_cluster.urls[0]}/v1/call/default/crash",
                                      gateway_cluster.token, "anything")
    assert status == 502
    error = body["error"]
    assert error["kind"] == "crash"
    assert error["remote_type"] == "builtins.ValueError"
    assert "boom" in error["message"]
    assert error["retry_safe"] is False
    assert set(error["member"]) == {"$pid"}
