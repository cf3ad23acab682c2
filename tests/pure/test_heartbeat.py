"""The heartbeat's decision at each tick (``transport/_heartbeat.py``), without a loop."""

from __future__ import annotations

from shoal.transport import TransportConfig
from shoal.transport._heartbeat import Tick, decide

CONFIG = TransportConfig(cluster="c", node="n", creation=1, secret=b"s" * 32,
                         heartbeat_interval=0.5, heartbeat_timeout=2.0, max_unsent=64 * 1024)


def at(now: float, *, last_read: float = 100.0, last_write: float = 100.0, unsent: int = 0,
       congested_since: float | None = None, silent: bool = False) -> Tick:
    return decide(CONFIG, now, last_read=last_read, last_write=last_write, unsent=unsent,
                  congested_since=congested_since, silent=silent)


def test_a_ping_goes_out_when_nothing_was_written_for_an_interval() -> None:
    assert at(100.4).ping is False
    assert at(100.5).ping is True
    assert at(100.5, last_write=100.2).ping is False


def test_a_peer_quiet_for_the_timeout_is_reported_silent_once() -> None:
    assert at(101.9).silent is False
    tick = at(102.0)
    assert tick.silent is True and tick.disconnect is None
    assert at(105.0, silent=True).silent is False  # already reported


def test_the_next_tick_comes_when_silence_would_reach_the_timeout() -> None:
    assert at(100.1).delay == CONFIG.heartbeat_interval
    assert abs(at(101.7).delay - 0.3) < 1e-9  # 2.0 - 1.7 < 0.5
    assert at(102.5, silent=True).delay == CONFIG.heartbeat_interval


def test_congestion_is_timed_from_the_first_tick_that_sees_it() -> None:
    full = CONFIG.max_unsent
    first = at(100.0, unsent=full)
    assert first.congested_since == 100.0 and first.disconnect is None
    assert at(101.9, unsent=full, congested_since=100.0).congested_since == 100.0
    assert at(101.9, unsent=full - 1, congested_since=100.0).congested_since is None


def test_a_peer_congested_for_the_timeout_is_disconnected_and_nothing_else_is_done() -> None:
    tick = at(102.0, unsent=3 * CONFIG.max_unsent, congested_since=100.0, last_write=0.0,
              last_read=0.0)
    assert tick.disconnect == "peer not reading: 196608 bytes unsent (bound 65536) for 2.0s"
    assert tick.ping is False and tick.silent is False
