"""What one node takes from another: exit reasons it can pass on, answers
only from the connection a call went out on, signals only about the
sender's own processes (STYLE.md rule 21), and nothing after a connection
closed.

Two real nodes in this process share an SQLite store and talk over
loopback TCP. The attacker is a third, *authenticated* peer: a raw wire
client that knows the cluster secret and can say what a real node never
would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.runtime.replies import UNSENDABLE_REASON

SECRET = "peer-trust-test-secret-0123456789"
WAIT = 5.0

pytestmark = pytest.mark.timeout(60)


class Inbox(shoal.GenServer):
    """Records every info message; runs a callable a call carries."""

    async def init(self, box: list[Any], changed: asyncio.Event, *, trap: bool = False) -> None:
        self.box = box
        self.changed = changed
        self.trap_exit = trap

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if callable(request):
            return request(self)
        return request

    async def handle_cast(self, request: Any) -> None:
        if callable(request):
            request(self)

    async def handle_info(self, message: Any) -> None:
        self.box.append(message)
        self.changed.set()


class Box:
    """What Inbox processes received, with a bounded wait."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.changed = asyncio.Event()

    async def wait_for(self, match: Callable[[Any], bool], timeout: float = WAIT) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                for item in self.items:
                    if match(item):
                        return item
                self.changed.clear()
                await self.changed.wait()


def _stopper(reason: Any) -> Callable[[Any], None]:
    def stop_now(server: Any) -> None:
        raise shoal.Stop(reason)

    return stop_now


def _nested(depth: int) -> Any:
    term: Any = "bottom"
    for _ in range(depth):
        term = [term]
    return term


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[shoal.Node, shoal.Node]]:
    store = f"sqlite://{tmp_path}/cluster.db"
    async with shoal.Node("a", store=store, secret=SECRET) as a, \
            shoal.Node("b", store=store, secret=SECRET) as b:
        yield a, b


# -- exit reasons (item: an unsendable reason must not break the exit path) ----------


@pytest.mark.parametrize("reason", [
    pytest.param(_nested(300), id="nested-300-deep"),
    pytest.param(object(), id="not-a-term"),
    pytest.param("x" * 100_000, id="100k-str"),
])
async def test_a_process_stopping_with_an_unsendable_reason_still_signals_remote_links_and_monitors(
        two: tuple[shoal.Node, shoal.Node], reason: Any) -> None:
    a, b = two
    box = Box()
    target = await a.spawn(Inbox, [], asyncio.Event())
    watcher = await b.spawn(Inbox, box.items, box.changed)
    linked = await b.spawn(Inbox, box.items, box.changed, trap=True)
    ref = b.monitor(target, watcher=watcher)
    b.link(linked, target)
    await b.call(target, "sync", WAIT)  # after the MONITOR and LINK, on one connection

    a.cast(target, _stopper(reason))
    # The exit path completed: the local reason is kept as it was.
    assert await a.wait_exit(target, WAIT) is reason
    down = await box.wait_for(lambda m: isinstance(m, shoal.Down))
    assert down.ref == ref and down.pid == target
    assert isinstance(down.reason, shoal.Crash) and down.reason.type == UNSENDABLE_REASON
    assert "cannot be sent" in down.reason.message
    signal = await box.wait_for(lambda m: isinstance(m, shoal.Exit))
    assert signal.pid == target and signal.reason == down.reason
    assert b.is_alive(linked) and a.running and b.running
