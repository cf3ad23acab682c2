"""The app of ``test_observability.py``: the test agent, plus

- ``Blocker`` (group ``blocker``): a cast of ``s`` blocks the node's event
  loop for ``s`` seconds with ``time.sleep``, as a buggy handler would;
- ``Lingers``: its ``terminate`` takes ``OBSERVE_LINGER`` seconds, so a
  drain lasts long enough to be looked at;
- ``OBSERVE_GATE``: setup waits (at most 30 s) until this file exists, so
  the node is registered but not set up for as long as the test wants.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import shoal
from shoal.testing import agent


class Blocker(shoal.GenServer):
    async def handle_cast(self, request: Any) -> None:
        time.sleep(float(request))  # noqa: ASYNC251  # blocks the whole loop: on purpose


class Lingers(shoal.GenServer):
    shutdown_timeout = 30.0

    async def terminate(self, reason: shoal.Reason) -> None:
        await asyncio.sleep(float(os.environ.get("OBSERVE_LINGER", "0")))


async def setup(node: shoal.Node) -> None:
    await agent.setup(node)
    gate = os.environ.get("OBSERVE_GATE")
    if gate:
        for _ in range(600):  # bounded: 30 s
            if os.path.exists(gate):  # noqa: ASYNC240  # a test gate, polled briefly
                break
            await asyncio.sleep(0.05)
    await node.spawn(Lingers)
    await node.groups.join("blocker", await node.spawn(Blocker))
