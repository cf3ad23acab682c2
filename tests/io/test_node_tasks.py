"""Messages waiting for a dial: an owned task, a bounded backlog.

A cast to a node that is still being dialled waits in a backlog, and a
task sends it once the connection is up. That task belongs to the node:
stopping the node cancels it, even while the dial hangs (here: a listener
that accepts and never answers the handshake). The backlog is bounded: past
``MAX_BACKLOG`` messages, casts and sends to that node raise ``Overloaded``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.runtime import remote

SECRET = b"node-tasks-test-secret-0123456789"
WAIT = 5.0


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


@contextlib.asynccontextmanager
async def _ghost(tmp_path: Path) -> AsyncIterator[tuple[str, shoal.Pid]]:
    """A store URL, and a pid of node "ghost" whose advertised address
    accepts connections and never answers: every dial to it hangs in the
    handshake."""
    streams: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(_: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        streams.append(w)

    blackhole = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = blackhole.sockets[0].getsockname()[1]
    store = f"sqlite://{tmp_path}/cluster.db"
    try:
        async with shoal.Node("ghost", store=store, secret=SECRET,
                              advertise=f"127.0.0.1:{port}") as ghost:
            yield store, await ghost.spawn(Echo)
    finally:
        for w in streams:
            w.close()
        blackhole.close()
        await blackhole.wait_closed()


async def test_stopping_a_node_ends_the_task_sending_to_a_node_still_being_dialled(
        tmp_path: Path) -> None:
    async with _ghost(tmp_path) as (store, pid):
        before = asyncio.all_tasks()
        a = shoal.Node("a", store=store, secret=SECRET)
        await a.start()
        try:
            a.cast(pid, "waits for the dial")  # the dial hangs in the handshake
            a.send(pid, "so does this")
            started = {t for t in asyncio.all_tasks() - before if not t.done()}
            assert any(t.get_name() == "shoal send to ghost" for t in started)
        finally:
            await a.stop()
        leftover = [t for t in asyncio.all_tasks() - before if not t.done()]
        assert not leftover, [t.get_name() for t in leftover]


@pytest.fixture
async def hanging_dial(tmp_path: Path) -> AsyncIterator[tuple[shoal.Node, shoal.Pid]]:
    """Node "a", and a pid of node "ghost" whose every dial hangs in the handshake."""
    async with _ghost(tmp_path) as (store, pid), \
            shoal.Node("a", store=store, secret=SECRET) as a:
        yield a, pid


async def test_casts_to_a_node_still_being_dialled_are_bounded(
        hanging_dial: tuple[shoal.Node, shoal.Pid], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "MAX_BACKLOG", 5)
    a, pid = hanging_dial
    for n in range(5):
        a.cast(pid, n)  # waits for the dial
    with pytest.raises(shoal.Overloaded) as info:
        a.cast(pid, "one too many")
    assert info.value.not_started and info.value.limit == 5
    assert "wait for the connection" in str(info.value)
    with pytest.raises(shoal.Overloaded):
        a.send(pid, "nor this")
