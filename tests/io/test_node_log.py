"""What a node's log says about its peers: one INFO line per event, with the reason.

Two in-process nodes on loopback share one SQLite store; a peer that stops
and a new incarnation under its name that comes back are each logged once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import shoal
from shoal.testing.cluster import wait_until

SECRET = "node-log-test-secret-0123456789ab"
WAIT = 5.0


class Echo(shoal.GenServer):
    async def handle_call(self, request: object, caller: shoal.Caller) -> object:
        return request


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


async def test_a_peer_going_down_and_coming_back_is_logged_once_each_at_info(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shoal")
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("b", store=store, secret=SECRET) as b:
        a = shoal.Node("a", store=store, secret=SECRET)
        async with a:
            pid = await a.spawn(Echo)
            assert await b.call(pid, "hi", timeout=WAIT) == "hi"
            first = a.creation
        # a stopped: its connection to b closed with a reason
        await wait_until(lambda: bool(_lines(caplog, "connection to node a")), timeout=WAIT,
                         what="b logs that a went down")
        async with shoal.Node("a", store=store, secret=SECRET) as again:
            pid = await again.spawn(Echo)
            assert await b.call(pid, "hi again", timeout=WAIT) == "hi again"
    up = _lines(caplog, "connected to node a ")
    down = _lines(caplog, f"connection to node a (creation {first})")
    assert [r.levelno for r in up] == [logging.INFO, logging.INFO]
    assert f"(creation {first})" in up[0].getMessage()
    assert f"(creation {again.creation})" in up[1].getMessage()
    assert len(down) == 1 and down[0].levelno == logging.INFO
    assert f"(creation {first}) lost: " in down[0].getMessage()  # with the reason
