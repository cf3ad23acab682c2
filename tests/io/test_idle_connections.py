"""Idle connections close, and reopen on demand (issue 17, item 6).

Nodes on loopback share one SQLite store. A connection that carried no
call, cast, send, monitor or link for ``idle_timeout`` closes with BYE
"idle"; neither side takes it for the peer going down. A connection that
carries a monitor or a link, or a call still being served, stays. To know
that the idle check has run past the timeout without sleeping, each test
keeps a second connection with nothing on it and waits for that one to
close first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.testing.cluster import wait_until

SECRET = "idle-test-secret-0123456789abcdef"
IDLE = 0.4  # s
WAIT = 10.0


RELEASE: list[asyncio.Event] = []  # in-process nodes: what a "wait" call waits for


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if request == "wait":
            await RELEASE[-1].wait()
        return request


def connected(node: shoal.Node) -> tuple[str, ...]:
    return node.statistics().connected


@pytest.fixture
async def trio(tmp_path: Path) -> AsyncIterator[tuple[shoal.Node, shoal.Node, shoal.Node]]:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", store=store, secret=SECRET, idle_timeout=IDLE) as a, \
            shoal.Node("b", store=store, secret=SECRET, idle_timeout=IDLE) as b, \
            shoal.Node("c", store=store, secret=SECRET, idle_timeout=IDLE) as c:
        await wait_until(lambda: {"b", "c"} <= set(a.cluster_view.names())
                         and "a" in b.cluster_view.names() and "a" in c.cluster_view.names(),
                         timeout=WAIT, what="every node in every view")
        yield a, b, c


async def _served(node: shoal.Node) -> shoal.Pid:
    pid = await node.spawn(Echo)
    await node.groups.join("g", pid)
    await node.groups.sync(timeout=WAIT)
    return pid


async def test_an_idle_connection_closes_and_the_next_call_reopens_it(
        trio: tuple[shoal.Node, shoal.Node, shoal.Node],
        caplog: pytest.LogCaptureFixture) -> None:
    a, b, _ = trio
    pid = await _served(b)
    await wait_until(lambda: a.groups.get_members("g") == [pid], timeout=WAIT,
                     what="b's member at a")
    caplog.set_level(logging.INFO, logger="shoal")
    assert await a.call(pid, "hello", timeout=WAIT) == "hello"
    assert "b" in connected(a) and "a" in connected(b)
    await wait_until(lambda: "b" not in connected(a) and "a" not in connected(b),
                     timeout=WAIT, what="the idle connection closed on both sides")
    # Not a loss: b's members stay routable at a, nothing was failed or probed.
    assert a.groups.select("g") == pid
    assert not [r for r in caplog.records if "lost" in r.getMessage()]
    assert await a.call(pid, "again", timeout=WAIT) == "again"  # dials again
    assert "b" in connected(a)


@pytest.mark.parametrize("hold", ["monitor-from-a", "monitor-from-b", "link"])
async def test_a_connection_carrying_a_monitor_or_link_stays_open(
        trio: tuple[shoal.Node, shoal.Node, shoal.Node], hold: str) -> None:
    a, b, c = trio
    on_a, on_b, on_c = await a.spawn(Echo), await b.spawn(Echo), await c.spawn(Echo)
    if hold == "monitor-from-a":
        ref = a.monitor(on_b, watcher=on_a)
    elif hold == "monitor-from-b":
        ref = b.monitor(on_a, watcher=on_b)
    else:
        a.link(on_a, on_b)
    await a.call(on_b, "set up", timeout=WAIT)  # the monitor or link is in place at b
    await b.call(on_a, "set up", timeout=WAIT)
    # a and b each also talk to c, and then nothing: that connection is idle.
    await a.call(on_c, "once", timeout=WAIT)
    await b.call(on_c, "once", timeout=WAIT)
    await wait_until(lambda: "c" not in connected(a) and "c" not in connected(b),
                     timeout=WAIT, what="the connections to c closed as idle")
    assert "b" in connected(a) and "a" in connected(b)  # held by the monitor or link
    if hold == "monitor-from-a":
        a.demonitor(ref)
    elif hold == "monitor-from-b":
        b.demonitor(ref)
    else:
        a.unlink(on_a, on_b)
    await wait_until(lambda: "b" not in connected(a), timeout=WAIT,
                     what="the connection closed once nothing held it")
    assert a.is_alive(on_a) and b.is_alive(on_b)


async def test_a_call_in_flight_is_never_cut(
        trio: tuple[shoal.Node, shoal.Node, shoal.Node]) -> None:
    a, b, c = trio
    pid, on_c = await b.spawn(Echo), await c.spawn(Echo)
    release = asyncio.Event()
    RELEASE.append(release)
    call = asyncio.ensure_future(a.call(pid, "wait", timeout=WAIT))
    await a.call(on_c, "once", timeout=WAIT)
    await b.call(on_c, "once", timeout=WAIT)
    await wait_until(lambda: "c" not in connected(a) and "c" not in connected(b),
                     timeout=WAIT, what="the connections to c closed as idle")
    assert not call.done() and "b" in connected(a) and "a" in connected(b)
    release.set()
    assert await call == "wait"


async def test_no_idle_timeout_keeps_connections(tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", store=store, secret=SECRET, idle_timeout=None) as a, \
            shoal.Node("b", store=store, secret=SECRET, idle_timeout=IDLE) as b, \
            shoal.Node("c", store=store, secret=SECRET, idle_timeout=IDLE) as c:
        await wait_until(lambda: {"b", "c"} <= set(a.cluster_view.names()),
                         timeout=WAIT, what="b and c at a")
        on_a, on_c = await a.spawn(Echo), await c.spawn(Echo)
        await b.call(on_a, "hi", timeout=WAIT)
        await b.call(on_c, "hi", timeout=WAIT)
        # b closes both as idle: the setting is each node's own.
        await wait_until(lambda: connected(b) == (), timeout=WAIT, what="b idle")
        await a.call(on_c, "hi", timeout=WAIT)
        await wait_until(lambda: "a" not in connected(c), timeout=WAIT,
                         what="c closed its idle connection to a")
        await a.call(on_c, "hi", timeout=WAIT)
        assert "c" in connected(a)


def test_a_bad_idle_timeout_is_refused() -> None:
    with pytest.raises(shoal.BadArgument, match="idle_timeout"):
        shoal.Node("a", store="memory://", idle_timeout=-1)


async def test_a_call_crossing_the_peers_idle_bye_is_sent_again(tmp_path: Path) -> None:
    # c closes its idle connection to a (a never closes: idle_timeout None),
    # and a calls c at once: while a has not read the BYE yet, its CALL goes
    # out on the closing connection, is never read by c, and must be sent
    # again on a new one rather than fail. Five rounds, each checked.
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", store=store, secret=SECRET, idle_timeout=None) as a, \
            shoal.Node("c", store=store, secret=SECRET, idle_timeout=IDLE) as c:
        await wait_until(lambda: "c" in a.cluster_view.names(), timeout=WAIT, what="c at a")
        on_c = await c.spawn(Echo)
        for round_ in range(5):
            assert await a.call(on_c, round_, timeout=WAIT) == round_
            await wait_until(lambda: "a" not in connected(c), timeout=WAIT,
                             what="c closed its idle connection to a")
            assert await a.call(on_c, "crossing", timeout=WAIT) == "crossing"
