"""Peers that refused this node: what a failed dial means, and the hold after it.

Owns: the reading of a failed outbound handshake (is it a refusal of this
node's credentials or identity, which no retry can fix?) and the *hold*
that follows one, during which ``connect`` to that peer fails at once
without dialling.

Rules:

1. A refusal is the peer's REFUSE (``auth``: the secrets differ;
   ``cluster``, ``version``, ``stale``, ``self``, ``name``), this node's
   own refusal of the peer's proof, a TLS handshake that failed (a
   certificate one side does not trust), or a peer that closed the
   connection during the handshake twice in a row without a word (it speaks
   TLS and this node does not, or it rejected this node's certificate). A
   peer that is ``closing``, a ``duplicate`` and a single unexplained close
   are not refusals: they pass with time.
2. A refusal ends the dial in progress (not retried) and holds the peer at
   that address: ``connect`` raises the same ``AuthenticationFailed`` at
   once until the hold ends, so calls and redials do not redial it in a
   tight loop. Holds grow with each refusal in a row (the one backoff, 1 s
   up to 30 s) and end when a handshake with that peer succeeds. A hold
   names the incarnation the caller expected, if it said: a dial meant for
   another incarnation (the node was restarted, perhaps with the right
   secret) is not held.
3. One WARNING per refusal that starts or renews a hold; nothing while held.
4. Bounded: at most ``MAX_HELD`` peers; holds expired for longer than the
   longest hold are pruned on every refusal recorded, and past the bound the
   oldest goes.
"""

from __future__ import annotations

import logging
import random
import ssl
from collections.abc import Callable, Iterator

from shoal._backoff import backoff_delays
from shoal.errors import AuthenticationFailed

__all__ = ["MAX_HELD", "Refusals", "Refused", "explain"]

logger = logging.getLogger("shoal.transport")

MAX_HELD = 1024
HOLD_FIRST, HOLD_MAX = 1.0, 30.0  # seconds, before jitter

_NOT_REFUSALS = frozenset({"closing", "duplicate", "shutdown"})
_WORDS = {
    "auth": "it refused this node's proof: the cluster secrets differ",
    "cluster": "it belongs to another cluster",
    "version": "it speaks no protocol version this node speaks",
    "stale": ("it does not take this node for the current incarnation of its name "
              "(it saw a newer one, or its view of the store does not show this one)"),
    "self": "it has this node's own name",
}
_SILENT_CLOSE = ("it closed the connection during the handshake twice without a word: it "
                 "may use TLS where this node does not, or not trust this node's "
                 "certificate (or it is shutting down, or has too many connections in "
                 "the handshake)")

Address = tuple[str, int]


def explain(exc: BaseException, peer_word: str | None, closes: int) -> str | None:
    """Why a failed dial is a refusal (rule 1), or None when it is not.

    Args:
        exc: what the dial raised.
        peer_word: the word of the peer's REFUSE, if it sent one.
        closes: how many dials in a row (this one included) the peer closed
            during the handshake without a word.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, "verify_message", None) or exc
        return (f"TLS: its certificate is not trusted here ({detail}): are both nodes' "
                "certificates from the CA the other trusts?")
    if isinstance(exc, ssl.SSLError):
        detail = getattr(exc, "reason", None) or exc
        return (f"TLS handshake failed ({detail}): it may not trust this node's "
                "certificate, or not use TLS")
    if isinstance(exc, AuthenticationFailed):
        if peer_word in _NOT_REFUSALS:
            return None
        if peer_word in _WORDS:
            return f"{_WORDS[peer_word]} (REFUSE {peer_word})"
        return str(exc)
    if closes >= 2:
        return _SILENT_CLOSE
    return None


class Refused(AuthenticationFailed):
    """A peer refused this node (rule 1); raised by ``connect`` for the
    refused dial and, without dialling, while the peer is held.

    Attributes:
        peer: the peer's node name.
        why: what the refusal means, in words.
    """

    def __init__(self, peer: str, address: Address, why: str) -> None:
        self.peer = peer
        self.why = why
        super().__init__(
            f"authentication refused by node {peer!r} at {address[0]}:{address[1]}: {why}")


class _Hold:
    __slots__ = ("delays", "error", "incarnation", "until")

    def __init__(self, delays: Iterator[float]) -> None:
        self.delays = delays
        self.error: Refused | None = None
        self.incarnation: int | None = None
        self.until = 0.0


class Refusals:
    """Holds on peers that refused this node (rules 2-4).

    Args:
        clock: monotonic seconds.
        rng: random source for the hold's jitter.
    """

    def __init__(self, clock: Callable[[], float], rng: random.Random) -> None:
        self._clock = clock
        self._rng = rng
        # Invariant: at most MAX_HELD entries, oldest first; an entry whose
        # `until` passed is kept (its delays remember the refusals in a row)
        # until pruned or the peer's handshake succeeds.
        self._held: dict[tuple[str, Address], _Hold] = {}

    def __len__(self) -> int:
        return len(self._held)

    def check(self, name: str, address: Address,
              incarnation: int | None = None) -> Refused | None:
        """The refusal that holds ``name`` at ``address`` now, if any: none
        when it was recorded for another incarnation than ``incarnation``."""
        hold = self._held.get((name, address))
        if hold is None or self._clock() >= hold.until:
            return None
        if None not in (incarnation, hold.incarnation) and incarnation != hold.incarnation:
            return None
        return hold.error

    def record(self, name: str, address: Address, why: str,
               incarnation: int | None = None) -> Refused:
        """A dial to ``name`` at ``address`` (meant for ``incarnation``, if
        known) was refused: hold it, log it once.

        Returns:
            The error to raise, naming the peer and why.
        """
        now = self._clock()
        key = (name, address)
        hold = self._held.pop(key, None)
        for stale in [k for k, h in self._held.items() if now >= h.until + HOLD_MAX]:
            del self._held[stale]
        while len(self._held) >= MAX_HELD:
            del self._held[next(iter(self._held))]
        if hold is None:
            hold = _Hold(backoff_delays(initial=HOLD_FIRST, maximum=HOLD_MAX, rng=self._rng))
        delay = next(hold.delays)
        hold.until = now + delay
        hold.error = error = Refused(name, address, why)
        hold.incarnation = incarnation
        self._held[key] = hold
        logger.warning("%s; not dialling it again for %.1fs", error, delay)
        return error

    def clear(self, name: str) -> None:
        """A handshake with ``name`` succeeded: its holds end."""
        for key in [k for k in self._held if k[0] == name]:
            del self._held[key]
