"""The cap on accepted connections that have not authenticated yet.

Owns: the set of accepted connections still in the handshake, the decision
to close one more at once, and the log lines about strangers: refused past
the cap, or failing the handshake.

Rules:

1. At most ``max_handshakes`` accepted connections are in the handshake at
   once (``TransportConfig.max_handshakes``). A connection is counted from
   the moment the manager tracks it (``connection_made``) until it is
   established or lost, so each slot is held at most ``handshake_timeout``.
   One past the cap is refused: the caller closes it without a word (a
   stranger is owed nothing, and must not hold a file descriptor).
2. Outbound dials are not counted: this node makes them itself, one per
   peer at a time.
3. Refusals are logged at WARNING at most once per :data:`LOG_EVERY`
   seconds, with how many were refused since the last line: logs grow with
   time, not with the connections an attacker opens.
4. Accepted connections that fail the handshake (closed or silent before
   the proof, a wrong secret, a malformed frame) follow rule 3 too: the
   first is logged at WARNING with its address and error, later ones at
   DEBUG, and the next WARNING line, at least :data:`LOG_EVERY` seconds
   later, says how many failed since the last one. A port scanner, a TCP
   health check or a flood of half-open sockets costs one line per
   interval; a wrong secret is still seen, with an address.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final, Generic, TypeVar

__all__ = ["LOG_EVERY", "HandshakeCap"]

logger = logging.getLogger("shoal.transport")

LOG_EVERY: Final = 10.0
"""Seconds between two log lines about refused connections (rule 3)."""

C = TypeVar("C")


class HandshakeCap(Generic[C]):
    """Counts accepted connections in the handshake and refuses past the cap.

    Args:
        limit: the most connections in the handshake at once.
        clock: the event loop's ``time`` (injected for tests).
    """

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        # Invariant: at most ``limit`` connections, each neither established nor lost.
        self._open: set[C] = set()
        # Refusals since the last log line, and when that line was written.
        self._refused = 0
        self._logged = -LOG_EVERY
        # Failed handshakes since the last line about them, and its time (rule 4).
        self._failed = 0
        self._failed_logged = -LOG_EVERY

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, conn: C, address: object) -> str | None:
        """Count a newly accepted connection, or say why it must be closed.

        Args:
            conn: the connection.
            address: the peer's address, for the log.

        Returns:
            None when counted; else the reason to close it with.
        """
        if len(self._open) < self.limit:
            self._open.add(conn)
            return None
        self._refused += 1
        now = self._clock()
        if now - self._logged >= LOG_EVERY:
            logger.warning(
                "refused %d connection(s), the last from %s: %d accepted connections are "
                "in the handshake, the most allowed (max_handshakes)",
                self._refused, address, self.limit,
            )  # fmt: skip
            self._refused, self._logged = 0, now
        return f"{self.limit} connections already in the handshake"

    def failed(self, address: object, error: object) -> None:
        """Log that an accepted connection failed the handshake (rule 4).

        Args:
            address: the stranger's address.
            error: why it failed.
        """
        self._failed += 1
        now = self._clock()
        if now - self._failed_logged < LOG_EVERY:
            logger.debug("closing connection with %s (node unauthenticated): %s",
                         address, error)
            return
        if self._failed == 1:
            logger.warning("closing connection with %s (node unauthenticated): %s",
                           address, error)
        else:
            logger.warning(
                "closing connection with %s (node unauthenticated): %s (%d accepted "
                "connections failed the handshake in the last %.0fs; one line per %.0fs "
                "at most)", address, error, self._failed, now - self._failed_logged, LOG_EVERY,
            )  # fmt: skip
        self._failed, self._failed_logged = 0, now

    def release(self, conn: C) -> None:
        """The connection was established or lost: its slot is free."""
        self._open.discard(conn)
