"""shoal's asyncio TCP (and TLS) transport: thin IO around :mod:`shoal.wire`.

:class:`ConnectionManager` listens, dials and keeps one authenticated
:class:`PeerConnection` per peer node; the runtime implements
:class:`PeerHandler` to receive messages and peer up/down/silent/alive,
and may give a :class:`PeerAdmission` that says which incarnations exist.
"""

from shoal.transport._config import (
    DEFAULT_MAX_HANDSHAKES,
    DEFAULT_MAX_UNSENT,
    MIN_MAX_UNSENT,
    PeerStatistics,
    TransportConfig,
    backoff_delays,
)
from shoal.transport._handler import PeerAdmission, PeerHandler
from shoal.transport._manager import ConnectionManager
from shoal.transport._peer import PeerConnection
from shoal.transport._refusals import Refused

__all__ = [
    "DEFAULT_MAX_HANDSHAKES",
    "DEFAULT_MAX_UNSENT",
    "MIN_MAX_UNSENT",
    "ConnectionManager",
    "PeerAdmission",
    "PeerConnection",
    "PeerHandler",
    "PeerStatistics",
    "Refused",
    "TransportConfig",
    "backoff_delays",
]
