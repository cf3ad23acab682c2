"""shoal.testing's port picking: ports a test names before its server binds
them come from below the kernel's ephemeral range, so the suite's own
outgoing connections cannot take them in between."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from shoal.testing import ports
from shoal.testing.ports import free_port


def test_a_free_port_is_bindable_and_below_the_ephemeral_range() -> None:
    low = ports.ephemeral_low()
    picked = {free_port() for _ in range(20)}
    for port in picked:
        assert 10000 <= port < low
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
    assert len(picked) > 1  # random, not one fixed port every test would share


def test_ports_handed_out_recently_are_not_handed_out_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([20000, 20000, 20000, 20001])  # the same port drawn three times
    monkeypatch.setattr(ports, "ephemeral_low", lambda: 32768)
    monkeypatch.setattr(ports, "_RECENT", ports.deque(maxlen=512))
    monkeypatch.setattr(ports.random, "randrange", lambda _low, _high: next(draws))
    monkeypatch.setattr(ports, "_bindable", lambda _port: True)
    assert [free_port(), free_port()] == [20000, 20001]


def test_a_port_in_use_is_never_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        first = iter([busy, busy])  # the busy port comes up first, twice
        draw = ports.random.randrange
        monkeypatch.setattr(ports, "ephemeral_low", lambda: 65536)
        monkeypatch.setattr(ports.random, "randrange",
                            lambda low, high: next(first, None) or draw(low, high))
        assert free_port() != busy


def test_without_room_below_the_range_the_kernel_picks(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    narrow = tmp_path / "ip_local_port_range"
    narrow.write_text("10500\t60999\n")
    monkeypatch.setattr(ports, "_RANGE_FILE", narrow)
    port = free_port()
    assert port >= 10500
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))


def test_an_unreadable_range_file_means_the_usual_range(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ports, "_RANGE_FILE", tmp_path / "missing")
    assert ports.ephemeral_low() == 32768
    assert 10000 <= free_port() < 32768
