"""Free loopback ports for servers a test starts and must name in advance.

A port the kernel picks for ``bind(port 0)`` comes from the ephemeral range
(``net.ipv4.ip_local_port_range``), the same range every outgoing connection
takes its local port from. A suite that opens thousands of connections can
therefore take a port between the moment it was picked and the moment the
server binds it ("address already in use"). :func:`free_port` picks below
that range instead, at random, where only another :func:`free_port` could
collide; servers that can report their own port are better started on port
0 (``LocalCluster`` does that for the nodes' HTTP endpoints).
"""

from __future__ import annotations

import random
import socket
from collections import deque
from pathlib import Path

__all__ = ["ephemeral_low", "free_port"]

_LOWEST = 10000  # below this sit well-known services' ports
_TRIES = 200
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# The ports handed out last: a test that names several servers' ports before
# starting any (an etcd cluster's) must not get one port twice (bounded).
_RECENT: deque[int] = deque(maxlen=512)


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 where unknown)."""
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, outside the ephemeral range when
    that range leaves room below it (else the kernel's pick), and none of
    the last 512 this process was given."""
    low = ephemeral_low()
    if low - _LOWEST >= 1000:
        for _ in range(_TRIES):
            port = random.randrange(_LOWEST, low)
            if port not in _RECENT and _bindable(port):
                _RECENT.append(port)
                return port
    for _ in range(_TRIES):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            picked: int = probe.getsockname()[1]
        if picked not in _RECENT:
            break
    _RECENT.append(picked)
    return picked
