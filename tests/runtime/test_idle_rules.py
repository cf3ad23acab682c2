"""IdleConnections' rules on fake connections: what counts as idle.

The end-to-end behaviour is in tests/io/test_idle_connections.py; here each
rule of ``runtime/idle.py`` is checked alone, with the loop's clock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from shoal.pid import Pid
from shoal.runtime.holds import Holds
from shoal.runtime.idle import IDLE, PEER_IDLE, IdleConnections
from shoal.transport import PeerStatistics


@dataclass(eq=False)
class FakeConn:
    messages: int = 0
    silent: bool = False
    serving: int = 0
    calls_until: float = 0.0
    closed: list[str] = field(default_factory=list)

    def statistics(self) -> PeerStatistics:
        return PeerStatistics(bytes_sent=0, bytes_received=0, messages_sent=self.messages + 7,
                              messages_received=3, write_paused=False, buffered=0,
                              congested=False, silent=self.silent, heartbeats=10,
                              calls_until=self.calls_until)


class FakeManager:
    def __init__(self, conns: dict[str, FakeConn]) -> None:
        self.conns = conns

    def peers(self) -> dict[str, Any]:
        return {n: c for n, c in self.conns.items() if not c.closed}

    def close_idle(self, conn: FakeConn, reason: str, linger: float) -> None:
        conn.closed.append(reason)


def _idle(conns: dict[str, FakeConn], pending: dict[int, Any] | None = None,
          links: set[Pid] | None = None) -> IdleConnections:
    remote = SimpleNamespace(pending=pending or {}, monitors={}, holds=Holds(),
                             manager=FakeManager(conns))
    processes = SimpleNamespace(all=lambda: [SimpleNamespace(links=links or set())])
    return IdleConnections(remote, processes)  # type: ignore[arg-type]


def _sweep_at(idle: IdleConnections, monkeypatch: pytest.MonkeyPatch, now: float) -> None:
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "time", lambda: now)
    idle._close_idle(1.0, idle._remote.manager)  # type: ignore[attr-defined]


async def test_only_a_quiet_connection_with_nothing_on_it_closes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    conns = {"quiet": FakeConn(), "busy": FakeConn(), "silent": FakeConn(silent=True),
             "serving": FakeConn(serving=1, calls_until=103.0), "called": FakeConn(),
             "linked": FakeConn()}
    idle = _idle(conns, pending={1: (None, Pid("called", 1, 1), None)},
                 links={Pid("linked", 1, 2)})
    _sweep_at(idle, monkeypatch, 100.0)  # first sight: the clock starts
    conns["busy"].messages += 1
    _sweep_at(idle, monkeypatch, 100.5)
    assert all(not c.closed for c in conns.values())
    _sweep_at(idle, monkeypatch, 101.0)
    assert {n for n, c in conns.items() if c.closed} == {"quiet"}
    assert conns["quiet"].closed == [IDLE]
    _sweep_at(idle, monkeypatch, 101.5)  # busy: a second since its message
    assert {n for n, c in conns.items() if c.closed} == {"quiet", "busy"}
    _sweep_at(idle, monkeypatch, 105.0)  # the served call's deadline passed
    assert {n for n, c in conns.items() if c.closed} == {"quiet", "busy", "serving"}
    assert not conns["silent"].closed and not conns["called"].closed
    assert not conns["linked"].closed


async def test_an_idle_close_is_quiet_only_when_nothing_spans_it() -> None:
    idle = _idle({}, pending={1: (None, Pid("called", 1, 1), None)})
    assert idle.closed_quietly("other", PEER_IDLE) and idle.closed_quietly("other", IDLE)
    assert not idle.closed_quietly("called", PEER_IDLE)  # its CALL crossed the BYE
    assert not idle.closed_quietly("other", "peer closed: shutdown")
