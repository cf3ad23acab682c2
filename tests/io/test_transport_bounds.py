"""A peer that never reads costs a bounded amount of memory (rule 5 of _peer.py).

A raw peer completes the handshake, then stops reading its socket. What
this node holds for it is measured by the connection's own statistics
(``buffered``: bytes accepted for sending that the socket has not taken),
not by the process's RSS. Past ``max_unsent`` the connection is congested;
congested for the heartbeat timeout, or at twice the bound, it is dropped.
Every wait is bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from test_transport import DEADLINE, Recorder, SilentPeer, config, start

from shoal.errors import BadArgument, NodeDown
from shoal.pid import Pid
from shoal.transport import ConnectionManager, PeerConnection
from shoal.wire import Reply, Send

BOUND = 1024 * 1024
CHUNK = 256 * 1024
FRAME_SLACK = CHUNK + 1024  # one frame past a check (header and term overhead)


async def _deaf_peer(manager: ConnectionManager,
                     recorder: Recorder) -> tuple[SilentPeer, PeerConnection]:
    """A peer that completed the handshake and then stopped reading."""
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_connection(lambda: SilentPeer("deaf"), *manager.address)
    await asyncio.wait_for(peer.established.wait(), DEADLINE)
    await recorder.wait_for(lambda: recorder.count("up", "deaf") == 1)
    assert peer.transport is not None
    peer.transport.pause_reading()
    conn = manager.get("deaf")
    assert conn is not None
    return peer, conn


def _down_reason(recorder: Recorder, name: str) -> str:
    return next(str(entry[3]) for entry in recorder.log if entry[:2] == ("down", name))


async def _fill_until_congested(conn: PeerConnection) -> int:
    """Send until the connection is congested; the most it ever buffered."""
    chunk = Send(to=Pid.of("deaf", 1, 1), message=b"x" * CHUNK)
    most = 0
    for _ in range(2000):  # bounded: the kernel takes a few MiB at most
        if conn.congested:
            break
        conn.send(chunk)
        most = max(most, conn.statistics().buffered)
        await asyncio.sleep(0)  # let the loop hand the frames to the socket
    return most


async def test_a_peer_that_never_reads_is_congested_then_disconnected_after_heartbeat_timeout(
) -> None:
    timeout = 0.4
    a, ra = await start("alpha", heartbeat_interval=0.05, heartbeat_timeout=timeout,
                        max_unsent=BOUND)
    loop = asyncio.get_running_loop()
    _, conn = await _deaf_peer(a, ra)
    most = await _fill_until_congested(conn)
    congested_at = loop.time()
    stats = conn.statistics()
    assert stats.congested and conn.congested
    assert BOUND <= stats.buffered < BOUND + FRAME_SLACK
    assert most < BOUND + FRAME_SLACK
    assert a.get("deaf") is conn  # congestion alone is not yet a disconnect
    await ra.wait_for(lambda: ra.count("down", "deaf") == 1, timeout=DEADLINE)
    assert loop.time() - congested_at >= timeout
    assert "not reading" in _down_reason(ra, "deaf")
    assert conn.statistics().buffered == 0  # what it held is released
    await a.close()


async def test_answers_still_queue_when_congested_until_twice_the_bound_then_it_disconnects(
) -> None:
    # A heartbeat timeout far away: only the hard bound can end the connection.
    a, ra = await start("alpha", heartbeat_interval=5.0, heartbeat_timeout=60.0,
                        max_unsent=BOUND)
    _, conn = await _deaf_peer(a, ra)
    await _fill_until_congested(conn)
    assert conn.congested
    reply = Reply(ref=1, value=b"r" * CHUNK, queue_len=0)
    most = conn.statistics().buffered
    refused = None
    for _ in range(2000):  # bounded
        try:
            conn.send(reply)  # an answer this node owes: queued while it fits
        except NodeDown as exc:
            refused = exc
            break
        most = max(most, conn.statistics().buffered)
        await asyncio.sleep(0)
    assert refused is not None, "a peer that never reads was never disconnected"
    assert most > BOUND + FRAME_SLACK  # answers went past the soft bound...
    assert most < 2 * BOUND + FRAME_SLACK  # ...but never past twice it
    await ra.wait_for(lambda: ra.count("down", "deaf") == 1)
    assert "twice the bound" in _down_reason(ra, "deaf")
    with pytest.raises(NodeDown):
        conn.send(reply)
    await a.close()


async def test_a_peer_that_reads_slowly_but_catches_up_stays_connected() -> None:
    a, ra = await start("alpha", heartbeat_interval=0.05, heartbeat_timeout=0.4,
                        max_unsent=BOUND)
    peer, conn = await _deaf_peer(a, ra)
    await _fill_until_congested(conn)
    assert conn.congested
    assert peer.transport is not None
    peer.transport.resume_reading()  # it reads again before the timeout
    await asyncio.wait_for(conn.wait_writable(), DEADLINE)
    assert not conn.congested
    # Wait (bounded) for a disconnect that must not come: three heartbeat
    # timeouts of a connection that drained.
    with pytest.raises(TimeoutError):
        await ra.wait_for(lambda: ra.count("down", "deaf") > 0, timeout=1.2)
    assert a.get("deaf") is conn
    await a.close()


@pytest.mark.parametrize(
    "overrides",
    [{"max_unsent": 1000}, {"max_unsent": 2**20 + 0.5}, {"max_unsent": True},
     {"max_unsent": 2**20, "write_buffer_high": 2**20}],
)
def test_bad_bounds_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(BadArgument):
        replace(config("alpha"), **overrides)


def test_the_default_bound_is_64_mib() -> None:
    assert config("alpha").max_unsent == 64 * 1024 * 1024
