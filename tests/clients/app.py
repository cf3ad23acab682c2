"""The application of the client tests' cluster (``conftest.py``'s ``gateway_cluster``).

Every node hosts, besides the test agent (so ``LocalCluster`` can drive it):

- group ``echo``: replies its request unchanged;
- group ``crash``: raises ``ValueError("boom")`` for every call;
- group ``slow``: sleeps the requested number of seconds, then replies it.

Each group has one member per node.
"""

from __future__ import annotations

import asyncio
from typing import Any

import shoal
from shoal.testing import agent


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


class Crash(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        raise ValueError("boom")


class Slow(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        await asyncio.sleep(float(request))
        return request


async def setup(node: shoal.Node) -> None:
    await agent.setup(node)
    for group, behaviour in (("echo", Echo), ("crash", Crash), ("slow", Slow)):
        await node.groups.join(group, await node.spawn(behaviour))
