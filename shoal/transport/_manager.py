"""The connection manager: one authenticated connection per peer node.

Owns: the listener, outbound dialling with backoff, and the decision of
which connection to keep for a peer, with the callbacks that report it.

Rules (each one decided in exactly one place, named here):

1. One connection per peer name (``_peers``). ``connect`` returns the
   existing one, or joins a dial already in flight, or dials.
2. Incarnations only move forward (``_vet`` and ``connection_established``): a peer
   whose creation is below the highest seen for its name is refused
   (``stale``); a higher creation replaces the current connection, and the
   old incarnation is reported down *before* the new one is reported up.
   With a ``PeerAdmission`` (the runtime's view of the store), the store
   decides which incarnations exist: an accepted peer is admitted only if
   the view shows the creation it claims. A claim the view does not show
   yet (an unlisted name, or newer than the view) waits, up to
   ``admission_timeout``, for the view to catch up (a real new incarnation
   registers before it dials, so its watch event is milliseconds away),
   touching nothing meanwhile; then it is refused ``stale`` (the word an
   old incarnation gets: the peer learns no more than that), logged once
   at WARNING with the claim and the address. A claim the view already
   shows is admitted at once, in the same step as before (``_vet``). Only
   a confirmed creation replaces a live connection or raises ``_highest``,
   so a peer that knows the secret cannot evict a live node nor make its
   real incarnation look old. The wait runs in ``_admitting`` (one task
   per accepted connection in the handshake, so bounded by rule 7;
   cancelled when that connection is lost), and its end re-runs ``_vet``
   and establishes in one step, so rule 3 sees dials made meanwhile.
3. Simultaneous connect (``_vet``, acceptor side, once the initiator has
   proven itself and before the acceptor's own proof): when this node is
   dialling a peer that dials it, both sides keep the connection initiated
   by the node whose ``(name, creation)`` sorts lower and refuse the other
   with ``duplicate``. Both sides compute the same answer from the same two
   identities, and decide before either end of the refused connection is
   established, so no message is ever written on it. Admission waits for
   the proof (wire rule 6) so that a stranger learns nothing from it.
4. If two connections with the same incarnation do get established,
   ``connection_established`` applies the same order and closes the loser with BYE
   ``duplicate``. A crossing never gets here: an acceptor's vet and its
   end's establishment happen in one step (at the proof), a node admits no
   crossing connection while it dials (rule 3), and it dials only while it
   has no connection (rule 1); so this stays a guard (docs/decisions.md,
   "Crossing first calls"). A silent current connection always yields to a
   fresh one: the peer dialled because its side is gone.
5. An inbound dial from a peer we believe connected and responsive is a
   ``duplicate``; the peer's ``connect`` then waits for the existing
   connection to show up rather than failing.
6. A failed handshake or protocol error closes that connection only, and is
   logged with the address; the listener keeps serving.
7. Accepted connections still in the handshake are capped
   (``max_handshakes``; ``_handshaking.py`` counts them, and logs refusals
   and failed handshakes at most once per interval).

Dials live in ``_dialling.py``: failures are retried with the one jittered
backoff, within ``connect_timeout`` and ``max_connect_attempts``; a peer
that refuses this node (wrong secret, other cluster, TLS either way) is not
retried, and is held for a while (``_refusals.py``): a wrong secret does not
fix itself, and redialling it in a loop would only fill logs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any

from shoal.errors import NodeDown
from shoal.transport._config import TransportConfig
from shoal.transport._dialling import Dialler
from shoal.transport._handler import PeerAdmission, PeerHandler
from shoal.transport._handshaking import HandshakeCap
from shoal.transport._peer import PeerConnection
from shoal.wire import PENDING, Connection, Message, Pending

__all__ = ["ConnectionManager"]

logger = logging.getLogger("shoal.transport")


class ConnectionManager:
    """Listens, dials, and keeps one authenticated connection per peer node.

    Use as ``async with ConnectionManager(config, handler) as manager:``, or
    call :meth:`start` and :meth:`close`.

    Args:
        config: identity, secret, timeouts and limits.
        handler: receives messages and peer up/down/silent/alive events.
        admission: says which incarnations exist (rule 2); None admits
            every peer that proved the secret.
        random_bytes: nonce source for handshakes (tests may fix it).
        rng: random source for backoff jitter.
    """

    def __init__(
        self,
        config: TransportConfig,
        handler: PeerHandler,
        *,
        admission: PeerAdmission | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.handler = handler
        self._admission = admission
        # Invariant: one task per accepted connection whose admission waits
        # for the store's view (rule 2); removed when it ends or the
        # connection is lost, so at most max_handshakes.
        self._admitting: dict[PeerConnection, asyncio.Task[None]] = {}
        self._hs_config = config.handshake_config()
        self._random_bytes = random_bytes
        self._rng = rng or random.Random()
        self._server: asyncio.Server | None = None
        # Invariant: every value is registered, open or closing, and is the
        # only connection whose on_peer_up was reported and not yet followed
        # by on_peer_down.
        self._peers: dict[str, PeerConnection] = {}
        # Invariant: highest creation ever established per peer name.
        self._highest: dict[str, int] = {}
        # Outbound dials, the names being dialled, holds on refusing peers.
        self._dialler = Dialler(config, self._rng, self.get,
                                lambda name: self._new_protocol(initiator=True, expect=name))
        # One dialling task per peer name; concurrent connect() calls share it.
        self._connecting: dict[str, asyncio.Task[PeerConnection]] = {}
        self._all: set[PeerConnection] = set()
        self._closing = False
        # Accepted connections not yet established nor lost (rule 7).
        self._handshaking: HandshakeCap[PeerConnection] = HandshakeCap(
            config.max_handshakes, time.monotonic)

    async def __aenter__(self) -> ConnectionManager:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- public API ---------------------------------------------------

    async def start(self) -> tuple[str, int]:
        """Start listening on ``config.host:config.port``.

        Returns:
            The bound ``(host, port)``.

        Raises:
            OSError: the address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: self._new_protocol(initiator=False),
            self.config.host,
            self.config.port,
            ssl=self.config.server_ssl,
            ssl_handshake_timeout=self.config.handshake_timeout if self.config.server_ssl else None,
        )
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)`` of the listener.

        Raises:
            NodeDown: the listener is not running.
        """
        if self._server is None or not self._server.sockets:
            raise NodeDown(self.config.node, "listener not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def handshaking(self) -> int:
        """Accepted connections still in the handshake (at most ``max_handshakes``)."""
        return len(self._handshaking)

    def handshake_failed(self, conn: PeerConnection, error: object) -> None:
        """Log that ``conn`` failed its handshake: our own dial at once, an
        accepted connection per interval (rule 7; ``_handshaking.py`` rule 4)."""
        if conn.initiator:
            logger.warning("closing connection with %s (node unauthenticated): %s",
                           conn.peer_address, error)
        else:
            self._handshaking.failed(conn.peer_address, error)

    def get(self, peer_name: str) -> PeerConnection | None:
        """The current connection to a peer, if one is up.

        Args:
            peer_name: the peer's node name.

        Returns:
            The connection, or None.
        """
        conn = self._peers.get(peer_name)
        return conn if conn is not None and conn.is_open else None

    def peers(self) -> dict[str, PeerConnection]:
        """A copy of the peers currently up, by name.

        Returns:
            ``{peer_name: connection}``.
        """
        return {name: conn for name, conn in self._peers.items() if conn.is_open}

    def send(self, peer_name: str, msg: Message) -> None:
        """Queue a message for a connected peer.

        Args:
            peer_name: the peer's node name.
            msg: the message.

        Raises:
            NodeDown: no open connection to that peer (nothing was sent).
            BadArgument: the message holds an unencodable term.
        """
        conn = self.get(peer_name)
        if conn is None:
            raise NodeDown(peer_name, "not connected")
        conn.send(msg)

    async def connect(
        self,
        peer_name: str,
        address: tuple[str, int],
        *,
        timeout: float | None = None,
        retry_refused: bool = True,
        incarnation: int | None = None,
    ) -> PeerConnection:
        """Return the connection to a peer, dialling it if needed.

        Args:
            peer_name: the node name expected at ``address``; a different
                node answering there is refused.
            address: ``(host, port)`` of the peer's listener.
            timeout: total seconds for this call, retries included (default
                ``config.connect_timeout``).
            retry_refused: retry when nothing listens at ``address``
                (default). False makes a refused TCP connect fail at once:
                for a caller that knows the peer listened there before it
                announced itself, a refusal means the peer is gone.
            incarnation: the peer's creation the caller expects (from the
                store); a peer that refused another incarnation's dial is
                dialled anyway (it may have restarted with the right secret).

        Returns:
            The open, authenticated connection.

        Raises:
            AuthenticationFailed: the peer refused us, failed to prove the
                secret, or the TLS handshake failed either way (not retried,
                and raised at once for a while after: ``_refusals.py``).
            NodeDown: no connection within the timeout or attempts
                (``not_started=True``: nothing was sent).
        """
        current = self.get(peer_name)
        if current is not None:
            return current
        if self._closing:
            raise NodeDown(peer_name, "this node is shutting down")
        budget = self.config.connect_timeout if timeout is None else timeout
        task = self._connecting.get(peer_name)
        if task is None:
            task = asyncio.create_task(
                self._dialler.connect_loop(peer_name, address, budget, retry_refused,
                                           incarnation)
            )
            self._connecting[peer_name] = task
            task.add_done_callback(lambda _: self._connecting.pop(peer_name, None))
        try:
            return await asyncio.wait_for(asyncio.shield(task), budget)
        except TimeoutError:
            raise NodeDown(peer_name, f"no connection within {budget:g}s") from None

    async def close(self, reason: str = "shutdown", *, timeout: float = 5.0) -> None:
        """Stop listening and close every connection with BYE.

        Args:
            reason: sent to each peer in BYE.
            timeout: seconds to wait for connections to close before
                aborting the rest.
        """
        self._closing = True
        if self._server is not None:
            self._server.close()
        dials = [*self._connecting.values(), *self._admitting.values()]
        for task in dials:
            task.cancel()
        # A dial is this manager's task: it has ended when close returns.
        await asyncio.gather(*dials, return_exceptions=True)
        conns = list(self._all)
        for conn in conns:
            conn.close(reason)
        if conns:
            waiters = [asyncio.ensure_future(c.wait_closed()) for c in conns]
            _, pending = await asyncio.wait(waiters, timeout=timeout)
            for waiter in pending:
                waiter.cancel()
            for conn in conns:
                if conn.close_reason is not None and conn in self._all:
                    conn.abort(conn.close_reason)
        if self._server is not None:
            await self._server.wait_closed()

    # --- dialling -----------------------------------------------------

    def _new_protocol(self, *, initiator: bool, expect: str | None = None) -> PeerConnection:
        wire = Connection(
            self._hs_config,
            initiator=initiator,
            max_frame=self.config.max_frame,
            random_bytes=self._random_bytes,
            vet_peer=self._vet_outbound if initiator else self._vet,
            expect_node=expect,
        )
        return PeerConnection(self, wire, initiator=initiator)

    # --- decisions (rules 2-5) ----------------------------------------

    def _vet(self, node: str, creation: int) -> str | Pending | None:
        """Acceptor side, once the peer's PROOF verified and before ours."""
        if self._closing:
            return "closing"
        if creation < self._highest.get(node, -1):
            return "stale"
        current = self._peers.get(node)
        if current is not None and current.peer_creation == creation and not current.silent:
            return "duplicate"  # rule 5
        # Rule 3: both are dialling. Keep the dial of the lower identity.
        if (
            current is None
            and node in self._dialler.dialling
            and (self.config.node, self.config.creation) < (node, creation)
        ):
            return "duplicate"
        if not self._confirmed(node, creation):
            return PENDING  # rule 2: admission_pending asks the store's view
        return None

    def _confirmed(self, node: str, creation: int) -> bool:
        return self._admission is None or self._admission.admit_now(node, creation) is True

    def admission_pending(self, conn: PeerConnection, node: str, creation: int) -> None:
        """``conn``'s peer proved the secret with a claim the store's view
        does not show (yet): decide within ``admission_timeout`` (rule 2)."""
        if conn not in self._admitting:
            self._admitting[conn] = asyncio.get_running_loop().create_task(
                self._admit_later(conn, node, creation), name=f"shoal admit {node}")

    async def _admit_later(self, conn: PeerConnection, node: str, creation: int) -> None:
        assert self._admission is not None
        wait = min(self.config.admission_timeout, self.config.handshake_timeout / 2)
        try:
            admitted = await self._admission.wait_admitted(node, creation, wait)
        finally:
            self._admitting.pop(conn, None)
        # Rule 3 in one step with the establishment: what changed meanwhile
        # (a dial of ours to that peer, a connection that came up) counts.
        word = self._vet(node, creation) if admitted else "stale"
        if word is PENDING or not admitted:
            word = "stale"
            logger.warning(
                "refused node %r (creation %d) at %s: it proved the cluster secret, but "
                "the store does not show that incarnation of the name (waited up to %gs)",
                node, creation, conn.peer_address, wait)
        elif word is not None:
            logger.info("refused node %r (creation %d) at %s: %s",
                        node, creation, conn.peer_address, word)
        assert not isinstance(word, Pending)
        conn.decide_admission(word)

    def _vet_outbound(self, node: str, creation: int) -> str | None:
        """Initiator side, once the acceptor's PROOF verified."""
        if creation < self._highest.get(node, -1):
            return "stale"
        return None

    def connection_established(self, conn: PeerConnection) -> str | None:
        """Register a connection that completed its handshake, or refuse it.

        Returns None when kept, or the reason to close it with.
        """
        self._handshaking.release(conn)
        name, creation = conn.peer_node, conn.peer_creation
        assert name is not None and creation is not None
        if self._closing:
            return "shutdown"
        if creation < self._highest.get(name, -1):
            return "stale"
        current = self._peers.get(name)
        confirmed = self._confirmed(name, creation)
        if current is not None and current.peer_creation != creation and not confirmed:
            return "stale"  # rule 2: only the store's incarnation replaces a live one
        if current is not None:
            # Rule 4: same incarnation twice; keep the lower initiator's.
            if (
                current.peer_creation == creation
                and not current.silent
                and self._initiator_id(current) <= self._initiator_id(conn)
            ):
                return "duplicate"
            old_creation = current.peer_creation
            assert old_creation is not None
            why = (
                f"replaced by creation {creation}"
                if creation > old_creation
                else "replaced by a new connection"
            )
            self._unregister(current, why)
            current.close(why)
        self._peers[name] = conn
        if confirmed:  # rule 2
            self._highest[name] = max(creation, self._highest.get(name, -1))
        self._notify(self.handler.on_peer_up, name, creation, conn)
        self._dialler.peer_up(name)
        return None

    def close_idle(self, conn: PeerConnection, reason: str, linger: float) -> None:
        """Close ``conn`` in order with BYE ``reason``, forgotten at once (a
        new connection to its peer is not a duplicate of it) and lingering
        until the peer closes, at most ``linger`` seconds."""
        if conn.peer_node is not None and conn.peer_creation is not None:
            self._unregister(conn, reason)
        conn.close(reason, linger=linger)

    def _initiator_id(self, conn: PeerConnection) -> tuple[str, int]:
        if conn.initiator:
            return (self.config.node, self.config.creation)
        assert conn.peer_node is not None and conn.peer_creation is not None
        return (conn.peer_node, conn.peer_creation)

    def _unregister(self, conn: PeerConnection, reason: str) -> None:
        name, creation = conn.peer_node, conn.peer_creation
        if name is None or creation is None or self._peers.get(name) is not conn:
            return
        del self._peers[name]
        conn.registered = False
        self._notify(self.handler.on_peer_down, name, creation, reason)

    # --- PeerOwner: called by PeerConnection only, not by applications ---

    def connection_made(self, conn: PeerConnection) -> str | None:
        """Track a connection once its socket (and TLS session) is up.

        Not at protocol creation: with TLS, a protocol whose TLS handshake
        fails never sees ``connection_made`` nor ``connection_lost``.
        Returns None, or why the connection must go at once: this node is
        closing, or too many accepted connections are in the handshake.
        """
        if self._closing:
            return "this node is shutting down"
        if not conn.initiator:
            refusal = self._handshaking.admit(conn, conn.peer_address)
            if refusal is not None:
                return refusal
        self._all.add(conn)
        return None

    def connection_lost(self, conn: PeerConnection) -> None:
        admitting = self._admitting.pop(conn, None)
        if admitting is not None:
            admitting.cancel()
        self._handshaking.release(conn)
        self._all.discard(conn)
        self._unregister(conn, conn.close_reason or "connection lost")

    def _deliver(self, conn: PeerConnection, msg: Message) -> None:
        self._notify(self.handler.on_message, conn, msg)

    def peer_silent(self, conn: PeerConnection) -> None:
        if conn.registered and conn.peer_node is not None:
            logger.info("peer %s at %s is silent", conn.peer_node, conn.peer_address)
            self._notify(self.handler.on_peer_silent, conn.peer_node, conn.peer_creation)

    def peer_alive(self, conn: PeerConnection) -> None:
        if conn.registered and conn.peer_node is not None:
            self._notify(self.handler.on_peer_alive, conn.peer_node, conn.peer_creation)

    @staticmethod
    def _notify(callback: Callable[..., Any], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            logger.exception("transport callback %s failed", getattr(callback, "__name__", "?"))
