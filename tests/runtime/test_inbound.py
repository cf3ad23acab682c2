"""Inbound, the part that handles what peers send, driven without sockets:
a fake connection and fake tables stand in for the transport and Remote."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

import shoal
from shoal.pid import Pid
from shoal.runtime.inbound import Inbound
from shoal.runtime.spin import BusyPoll
from shoal.wire import Down, Fail, Message, Reply


class FakePeer:
    """The connection an answer arrives on."""

    def __init__(self, node: str, creation: int) -> None:
        self.peer_node, self.peer_creation = node, creation
        self.peer_address = ("127.0.0.1", 1)
        self.is_open = True
        self.sent: list[Message] = []

    def send(self, msg: Message) -> None:
        self.sent.append(msg)


CALLEE = Pid.of("b", 1, 5)


def _inbound(peer: FakePeer) -> tuple[Inbound, dict[int, Any], asyncio.Future[Any]]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    pending: dict[int, Any] = {1: (future, CALLEE, peer)}
    tables = SimpleNamespace(pending=pending, monitors={}, busy_poll=BusyPoll(0),
                             cluster=SimpleNamespace(note_queue_length=lambda pid, n: None))
    return Inbound(tables, SimpleNamespace(get={}.get)), pending, future  # type: ignore[arg-type]


async def test_a_fail_naming_another_pid_than_the_callee_is_ignored(
        caplog: pytest.LogCaptureFixture) -> None:
    peer = FakePeer("b", 1)
    inbound, pending, future = _inbound(peer)
    bystander = Pid.of("c", 1, 7)
    inbound.on_message(peer, Fail(ref=1, kind="noproc", pid=bystander, detail=None,  # type: ignore[arg-type]
                                  queue_len=0))
    assert not future.done() and 1 in pending
    assert "went to" in caplog.text and caplog.records[-1].levelno == logging.WARNING
    inbound.on_message(peer, Fail(ref=1, kind="noproc", pid=CALLEE, detail=None,  # type: ignore[arg-type]
                                  queue_len=0))
    error = future.exception()
    assert isinstance(error, shoal.NoSuchProcess) and error.pid == CALLEE
    assert pending == {}


async def test_an_answer_on_another_connection_leaves_the_call_waiting() -> None:
    peer = FakePeer("b", 1)
    inbound, pending, future = _inbound(peer)
    inbound.on_message(FakePeer("b", 1), Reply(ref=1, value="forged", queue_len=0))  # type: ignore[arg-type]
    assert not future.done() and 1 in pending
    inbound.on_message(peer, Reply(ref=1, value="real", queue_len=0))  # type: ignore[arg-type]
    assert future.result() == "real"


def test_a_node_may_report_its_predecessors_pids_dead_but_not_its_successors() -> None:
    delivered: list[tuple[Any, ...]] = []
    watcher = Pid.of("a", 1, 2)
    older, newer = Pid.of("b", 1, 5), Pid.of("b", 3, 5)
    monitors = {7: ("ref7", watcher, older), 8: ("ref8", watcher, newer)}
    tables = SimpleNamespace(pending={}, monitors=monitors, busy_poll=BusyPoll(0),
                             deliver_down=lambda *args: delivered.append(args))
    inbound = Inbound(tables, SimpleNamespace(get={}.get))  # type: ignore[arg-type]
    peer = FakePeer("b", 2)  # the incarnation between the two
    inbound.on_message(peer, Down(ref=7, target=older, watcher=watcher, reason="noproc"))  # type: ignore[arg-type]
    inbound.on_message(peer, Down(ref=8, target=newer, watcher=watcher, reason="noproc"))  # type: ignore[arg-type]
    assert delivered == [("ref7", watcher, older, "noproc")]
    assert list(monitors) == [8]
