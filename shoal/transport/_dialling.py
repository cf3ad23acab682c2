"""Outbound dials of one connection manager: attempts, backoff, refusals.

Owns: the names this node is dialling (the manager's rule 3 reads them),
the ``connect`` callers waiting for a peer's own dial after ours was
refused as a duplicate, and the holds on peers that refused this node
(``_refusals.py``). Which connection to keep stays the manager's decision.

Rules:

1. A name is in ``dialling`` from before its TCP connect starts until its
   handshake ended: the peer's own HELLO may arrive at any moment, and the
   simultaneous-connect rule must see this dial.
2. A failed dial is retried with the one jittered backoff, within the
   caller's budget and ``max_connect_attempts``; a refused TCP connect is
   retried only if the caller asks.
3. A refusal (``_refusals.py``, rule 1) is never retried: the dial fails at
   once with ``AuthenticationFailed`` saying why, and the peer is held, so
   later dials fail the same way without touching the network until the
   hold ends.
4. A dial refused as a ``duplicate`` waits, bounded by the handshake
   timeout, for the connection the peer keeps instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shoal.errors import AuthenticationFailed, NodeDown, ProtocolError
from shoal.transport._config import TransportConfig, backoff_delays
from shoal.transport._refusals import Refusals, explain

if TYPE_CHECKING:
    from shoal.transport._peer import PeerConnection

__all__ = ["Dialler"]

logger = logging.getLogger("shoal.transport")

Address = tuple[str, int]


class _Duplicate(NodeDown):
    """Our dial was refused because the peer keeps another connection."""

    def __init__(self, detail: str) -> None:
        super().__init__("?", detail)


class _Ended(ProtocolError):
    """The handshake of our dial failed; what it tells about the peer."""

    def __init__(self, error: BaseException, word: str | None, by_peer: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.word = word  # the peer's REFUSE word, if it sent one
        self.by_peer = by_peer  # the peer closed it (not our handshake timer)


class Dialler:
    """Dials peers for a manager (see the module header).

    Args:
        config: timeouts, attempts, backoff and TLS.
        rng: random source for backoff jitter.
        current: the manager's current open connection to a peer, if any.
        protocol: builds the protocol object of an outbound connection to
            the named peer.
    """

    def __init__(self, config: TransportConfig, rng: random.Random,
                 current: Callable[[str], PeerConnection | None],
                 protocol: Callable[[str], PeerConnection]) -> None:
        self._config = config
        self._rng = rng
        self._current = current
        self._protocol = protocol
        # Invariant: names with a dial between its TCP connect and the end
        # of its handshake (rule 1).
        self.dialling: set[str] = set()
        # connect() callers waiting for a peer's own dial (rule 4); emptied
        # when the peer comes up or the wait times out.
        self._up_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self.refusals = Refusals(time.monotonic, rng)

    def peer_up(self, name: str) -> None:
        """A connection with ``name`` was established: wake its waiters,
        end its holds."""
        self.refusals.clear(name)
        for waiter in self._up_waiters.pop(name, []):
            if not waiter.done():
                waiter.set_result(None)

    async def _dial(self, peer_name: str, address: Address) -> PeerConnection:
        loop = asyncio.get_running_loop()
        config = self._config
        hostname = None
        if config.client_ssl is not None:
            hostname = config.tls_server_hostname or address[0]
        self.dialling.add(peer_name)  # rule 1
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: self._protocol(peer_name),
                    address[0], address[1], ssl=config.client_ssl, server_hostname=hostname,
                    ssl_handshake_timeout=config.handshake_timeout if config.client_ssl else None,
                ),
                config.handshake_timeout,
            )  # fmt: skip
            try:
                await conn.wait_established()  # bounded by the handshake timer
            except (ProtocolError, NodeDown) as exc:
                if conn.refusal == "duplicate":
                    raise _Duplicate(str(exc)) from None
                by_peer = conn.close_reason != "handshake timed out"  # see _peer.py
                raise _Ended(exc, conn.refusal, by_peer) from exc
        finally:
            self.dialling.discard(peer_name)
        return conn

    async def _wait_up(self, peer_name: str) -> PeerConnection | None:
        """After our dial was refused as a duplicate, the peer's own dial
        should complete within one handshake; wait for it, bounded."""
        current = self._current(peer_name)
        if current is not None:
            return current
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._up_waiters.setdefault(peer_name, []).append(waiter)
        try:
            await asyncio.wait_for(waiter, self._config.handshake_timeout)
        except TimeoutError:
            pass
        finally:
            waiters = self._up_waiters.get(peer_name, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._up_waiters.pop(peer_name, None)
        return self._current(peer_name)

    async def connect_loop(self, peer_name: str, address: Address, budget: float,
                           retry_refused: bool = True,
                           incarnation: int | None = None) -> PeerConnection:
        """Dial until connected, refused, or out of budget or attempts.
        ``incarnation`` is the peer's creation the caller expects, if known.

        Raises:
            AuthenticationFailed: the peer refused this node, now or within
                its hold (rule 3).
            NodeDown: no connection within the budget or attempts.
        """
        held = self.refusals.check(peer_name, address, incarnation)
        if held is not None:
            raise held
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        delays = backoff_delays(self._config, self._rng)
        last: BaseException | None = None
        closes = 0  # dials in a row the peer closed during the handshake
        for attempt in range(1, self._config.max_connect_attempts + 1):
            current = self._current(peer_name)
            if current is not None:
                return current
            try:
                conn = await self._dial(peer_name, address)
                return self._current(peer_name) or conn
            except _Duplicate as exc:
                # The peer keeps another connection with us (manager rules 3, 5).
                closes = 0
                found = await self._wait_up(peer_name)
                if found is not None:
                    return found
                last = exc
            except ConnectionRefusedError as exc:
                # Nothing listens there. Retrying would keep a caller that
                # knows the peer is gone waiting for its whole budget.
                closes = 0
                if not retry_refused:
                    raise NodeDown(peer_name, f"connection to {address} refused") from exc
                last = exc
            except (OSError, ProtocolError, NodeDown, TimeoutError) as exc:
                error, word = (exc.error, exc.word) if isinstance(exc, _Ended) else (exc, None)
                closes = closes + 1 if isinstance(exc, _Ended) and exc.by_peer else 0
                why = explain(error, word, closes)
                if why is not None:  # rule 3
                    raise self.refusals.record(peer_name, address, why, incarnation) from error
                if isinstance(error, AuthenticationFailed):
                    raise error from None  # the peer is closing: not worth a retry
                found = self._current(peer_name)
                if found is not None:  # the manager kept the other connection
                    return found
                last = error
            delay = next(delays)
            logger.debug(
                "connect to %s at %s failed (attempt %d): %s; retrying in %.3fs",
                peer_name, address, attempt, last, delay,
            )  # fmt: skip
            if loop.time() + delay >= deadline:
                break
            await asyncio.sleep(delay)  # backoff between attempts, not synchronisation
        raise NodeDown(peer_name, f"could not connect to {address}: {last}")
