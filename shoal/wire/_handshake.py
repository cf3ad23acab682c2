"""The handshake: both peers prove they know the cluster secret (sans-IO).

Owns: the per-connection state machine and the exact bytes fed to HMAC
(docs/protocol.md repeats them for other implementations). The four
messages it exchanges are ``_handshake_messages.py``'s.

Exchange (the initiator opened the TCP connection)::

    initiator                                   acceptor
      HELLO(min_v, max_v, cluster, node, creation, nonce_i)  -->
                                                checks versions
      <--  CHALLENGE(version, cluster, node, creation, nonce_a)
      checks cluster, version, expected name
      PROOF(HMAC(secret, transcript("initiator")))  -->
                                                verifies, admits the peer, established
      <--  PROOF(HMAC(secret, transcript("acceptor")))
      verifies, admits the peer, established

Rules:

1. The secret never crosses the wire; only HMAC-SHA256 digests do, compared
   with ``hmac.compare_digest``.
2. The acceptor proves itself only after the initiator has, so an
   unauthenticated stranger never obtains a digest computed over its choice
   of nonce (no oracle). Each digest covers both nonces, a role label, the
   chosen version, the initiator's offered range and both identities, so a
   digest from one connection or role is useless on another (reflection and
   replay fail); a peer echoing our own nonce or name is refused outright.
3. The highest version both ranges contain is used; none → refused.
4. Any failure raises ``AuthenticationFailed`` (or ``ProtocolError`` for a
   message out of order); :attr:`Handshake.refusal` is then the REFUSE
   message to send before closing, telling the peer why in one word.
5. Randomness is injected (``random_bytes``) so tests build exact vectors.
6. Admission is decided only once the peer has proven it knows the secret:
   its cluster and name, and ``vet_peer`` (the node's policy: a stale
   incarnation, a duplicate connection, a node shutting down) are judged
   after its PROOF verified. Before that, the only refusals depend on the
   HELLO or CHALLENGE alone (``version``, ``reflected``, and the initiator's
   own ``cluster`` and ``name`` checks of the node it reached), so a
   stranger learns nothing about which nodes exist or are connected: every
   node answers any HELLO it can with a CHALLENGE, and a wrong PROOF with
   ``auth``.
7. On the acceptor, ``vet_peer`` may defer its answer (:data:`PENDING`):
   the handshake then holds its own PROOF, sends nothing and accepts
   nothing more, until :meth:`Handshake.decide` admits or refuses the peer
   (the transport asks the store whether that incarnation exists, which
   may take a moment). An initiator never waits: its peer is already
   established.

Not a goal: confidentiality or integrity after the handshake; a relay in the
middle can still forward a whole exchange. Use TLS on untrusted networks.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from shoal.errors import AuthenticationFailed, BadArgument, ProtocolError
from shoal.wire._handshake_messages import (
    NONCE_SIZE,
    Challenge,
    Hello,
    Proof,
    Refuse,
    check_creation,
    check_version,
)
from shoal.wire._messages import Message
from shoal.wire._terms import check_name

__all__ = [
    "NONCE_SIZE",
    "PENDING",
    "PROTOCOL_VERSION",
    "Challenge",
    "Handshake",
    "HandshakeConfig",
    "HandshakeResult",
    "Hello",
    "Pending",
    "Proof",
    "Refuse",
    "VetPeer",
    "proof_digest",
    "transcript",
]

PROTOCOL_VERSION: Final = 1
"""The protocol version this implementation speaks."""



class Pending:
    """The type of :data:`PENDING`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PENDING"


PENDING: Final = Pending()
"""What ``vet_peer`` returns on the acceptor to decide later (rule 7)."""

VetPeer = Callable[[str, int], "str | Pending | None"]
"""``vet_peer(node, creation)`` → None to go on, a one-word refusal reason,
or (acceptor only) :data:`PENDING` to decide later with ``decide``."""

Role = Literal["initiator", "acceptor"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeConfig:
    """This node's side of every handshake.

    Attributes:
        cluster: the cluster name; peers of other clusters are refused.
        node: this node's name.
        creation: this node's incarnation number.
        secret: the cluster secret (HMAC key), never sent.
        min_version, max_version: the protocol versions accepted.

    Raises:
        BadArgument: a field is invalid (empty secret, bad name, bad range).
    """

    cluster: str
    node: str
    creation: int
    secret: bytes = field(repr=False)
    min_version: int = PROTOCOL_VERSION
    max_version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        check_name(self.cluster, "cluster")
        check_name(self.node, "node")
        check_creation(self.creation)
        if type(self.secret) is not bytes or not self.secret:
            raise BadArgument("secret", "<hidden>", "non-empty bytes")
        check_version("min_version", self.min_version)
        check_version("max_version", self.max_version)
        if self.max_version < self.min_version:
            raise BadArgument("max_version", self.max_version, "at least min_version")


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeResult:
    """What a completed handshake established.

    Attributes:
        version: the protocol version in use.
        node, creation: the authenticated peer's identity.
        initiator: True when this side opened the connection.
    """

    version: int
    node: str
    creation: int
    initiator: bool


def _lp(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def transcript(
    role: Role,
    *,
    version: int,
    min_version: int,
    max_version: int,
    cluster: str,
    initiator: tuple[str, int],
    acceptor: tuple[str, int],
    initiator_nonce: bytes,
    acceptor_nonce: bytes,
) -> bytes:
    """The exact bytes a PROOF digest covers (docs/protocol.md, "HMAC input").

    Args:
        role: whose proof: ``"initiator"`` or ``"acceptor"``.
        version: the version the acceptor chose.
        min_version, max_version: the range the initiator offered in HELLO.
        cluster: the cluster name.
        initiator, acceptor: each side's ``(node, creation)``.
        initiator_nonce, acceptor_nonce: the two 32-byte challenges.

    Returns:
        ``"shoal-handshake" 0x00 role 0x00 u32(version) u32(min) u32(max)
        lp(cluster) lp(init node) u64(init creation) lp(acc node)
        u64(acc creation) nonce_i nonce_a`` where ``lp`` is a u16 length and
        UTF-8 bytes; integers are big-endian.
    """
    return b"".join(
        (
            b"shoal-handshake\x00",
            role.encode(),
            b"\x00",
            struct.pack(">III", version, min_version, max_version),
            _lp(cluster),
            _lp(initiator[0]),
            struct.pack(">Q", initiator[1]),
            _lp(acceptor[0]),
            struct.pack(">Q", acceptor[1]),
            initiator_nonce,
            acceptor_nonce,
        )
    )


def proof_digest(secret: bytes, role: Role, **fields: Any) -> bytes:
    """HMAC-SHA256 of :func:`transcript` under the cluster secret.

    Args:
        secret: the cluster secret.
        role: whose proof.
        **fields: the keyword arguments of :func:`transcript`.

    Returns:
        The 32-byte digest.
    """
    return hmac.new(secret, transcript(role, **fields), hashlib.sha256).digest()


class Handshake:
    """One side of one handshake, as a state machine over message objects.

    Args:
        config: this node's identity and secret.
        initiator: True on the side that opened the connection.
        random_bytes: source of the nonce, ``random_bytes(32) -> bytes``.
        vet_peer: asked once the peer has proven it knows the secret (rule
            6): on the acceptor before it sends its own PROOF, on the
            initiator before it considers the connection established;
            returns None to go on or a refusal word (the transport uses it
            for duplicate and stale-incarnation connections), or on the
            acceptor :data:`PENDING` to decide later (rule 7).
        expect_node: on the initiator, the node name it meant to reach.
    """

    def __init__(
        self,
        config: HandshakeConfig,
        *,
        initiator: bool,
        random_bytes: Callable[[int], bytes] = os.urandom,
        vet_peer: VetPeer | None = None,
        expect_node: str | None = None,
    ) -> None:
        self._config = config
        self._initiator = initiator
        self._random = random_bytes
        self._vet = vet_peer
        self._expect = expect_node
        self._nonce = b""
        self._hello: Hello | None = None
        self._challenge: Challenge | None = None
        # Invariant: the next message class accepted; None once done or failed.
        self._expecting: type[Message] | None = Challenge if initiator else Hello
        self.result: HandshakeResult | None = None
        """Set when the handshake has completed."""
        self.refusal: Refuse | None = None
        """Set when this side refused: the message to send before closing."""
        self.peer_refusal: str | None = None
        """Set when the peer refused us: the word from its REFUSE."""
        self.pending: tuple[str, int] | None = None
        """Set on the acceptor while ``vet_peer`` deferred its decision
        (rule 7): the proven peer's ``(node, creation)``."""

    def _new_nonce(self) -> bytes:
        nonce = self._random(NONCE_SIZE)
        if type(nonce) is not bytes or len(nonce) != NONCE_SIZE:
            raise BadArgument("random_bytes", nonce, f"a callable returning {NONCE_SIZE} bytes")
        return nonce

    def start(self) -> list[Message]:
        """Begin: the initiator's HELLO, nothing for the acceptor.

        Returns:
            Messages to send.

        Raises:
            BadArgument: ``random_bytes`` returned something other than 32 bytes.
        """
        if not self._initiator or self._hello is not None:
            return []
        cfg = self._config
        self._nonce = self._new_nonce()
        self._hello = Hello(
            min_version=cfg.min_version, max_version=cfg.max_version, cluster=cfg.cluster,
            node=cfg.node, creation=cfg.creation, nonce=self._nonce,
        )  # fmt: skip
        return [self._hello]

    def _refuse(self, reason: str, detail: str) -> AuthenticationFailed:
        self._expecting = None
        self.refusal = Refuse(reason=reason)
        return AuthenticationFailed(f"handshake refused ({reason}): {detail}")

    def _digest(self, role: Role) -> bytes:
        hello, challenge = self._hello, self._challenge
        assert hello is not None and challenge is not None
        return proof_digest(
            self._config.secret, role, version=challenge.version,
            min_version=hello.min_version, max_version=hello.max_version,
            cluster=hello.cluster, initiator=(hello.node, hello.creation),
            acceptor=(challenge.node, challenge.creation),
            initiator_nonce=hello.nonce, acceptor_nonce=challenge.nonce,
        )  # fmt: skip

    def _admit(self, cluster: str, node: str, creation: int) -> bool:
        """Rule 6: judge a peer that has proven it knows the secret; False
        when ``vet_peer`` deferred the decision (rule 7)."""
        if cluster != self._config.cluster:
            raise self._refuse("cluster", f"peer is in cluster {cluster!r}")
        if node == self._config.node:
            raise self._refuse("self", f"peer claims this node's own name {node!r}")
        if self._vet is not None:
            word = self._vet(node, creation)
            if word is PENDING:
                if self._initiator:
                    raise BadArgument("vet_peer", word, "None or a word on the initiator")
                return False
            if isinstance(word, str):
                raise self._refuse(word, f"peer {node!r} (creation {creation}) not accepted")
        return True

    def decide(self, word: str | None) -> list[Message]:
        """End an admission ``vet_peer`` deferred (rule 7).

        Args:
            word: None admits the peer; a one-word reason refuses it.

        Returns:
            The messages to send: this side's PROOF when admitted.

        Raises:
            AuthenticationFailed: ``word`` refuses the peer (:attr:`refusal`
                then holds the REFUSE to send).
            BadArgument: no admission is pending.
        """
        if self.pending is None:
            raise BadArgument("word", word, "a decision while an admission is pending")
        node, creation = self.pending
        self.pending = None
        if word is not None:
            raise self._refuse(word, f"peer {node!r} (creation {creation}) not accepted")
        assert self._challenge is not None
        self.result = HandshakeResult(version=self._challenge.version, node=node,
                                      creation=creation, initiator=False)
        return [Proof(digest=self._digest("acceptor"))]

    def receive(self, msg: Message) -> list[Message]:
        """Take the peer's next handshake message.

        Args:
            msg: a decoded message.

        Returns:
            Messages to send in answer (possibly none).

        Raises:
            AuthenticationFailed: the peer refused us, or we refuse it (then
                :attr:`refusal` holds the REFUSE to send).
            ProtocolError: the message is not the handshake step expected now.
        """
        if type(msg) is Refuse:
            self._expecting = None
            self.peer_refusal = msg.reason
            raise AuthenticationFailed(f"peer refused the handshake: {msg.reason}")
        if self._expecting is None or type(msg) is not self._expecting:
            expected = self._expecting.__name__ if self._expecting else "nothing"
            self._expecting = None
            raise ProtocolError(f"handshake expected {expected}, got {type(msg).__name__}")
        cfg = self._config
        if type(msg) is Hello:
            # Rule 6: nothing about the peer is judged yet, only whether a
            # CHALLENGE can be built for this HELLO.
            self._hello = msg
            low = max(msg.min_version, cfg.min_version)
            high = min(msg.max_version, cfg.max_version)
            if low > high:
                raise self._refuse(
                    "version",
                    f"peer speaks {msg.min_version}..{msg.max_version}, "
                    f"this node {cfg.min_version}..{cfg.max_version}",
                )
            self._nonce = self._new_nonce()
            if self._nonce == msg.nonce:
                raise self._refuse("reflected", "peer sent this node's own challenge")
            self._challenge = Challenge(
                version=high, cluster=cfg.cluster, node=cfg.node,
                creation=cfg.creation, nonce=self._nonce,
            )  # fmt: skip
            self._expecting = Proof
            return [self._challenge]
        if type(msg) is Challenge:
            self._challenge = msg
            if msg.cluster != cfg.cluster:
                raise self._refuse("cluster", f"peer is in cluster {msg.cluster!r}")
            if not cfg.min_version <= msg.version <= cfg.max_version:
                raise self._refuse("version", f"peer chose version {msg.version}")
            if self._expect is not None and msg.node != self._expect:
                raise self._refuse("name", f"expected node {self._expect!r}, reached {msg.node!r}")
            if msg.nonce == self._nonce:
                raise self._refuse("reflected", "peer sent this node's own challenge")
            self._expecting = Proof
            return [Proof(digest=self._digest("initiator"))]
        assert type(msg) is Proof
        theirs: Role = "acceptor" if self._initiator else "initiator"
        if not hmac.compare_digest(msg.digest, self._digest(theirs)):
            raise self._refuse("auth", "peer's proof does not match the cluster secret")
        self._expecting = None
        peer = self._challenge if self._initiator else self._hello
        assert peer is not None and self._challenge is not None
        if not self._admit(peer.cluster, peer.node, peer.creation):
            self.pending = (peer.node, peer.creation)
            return []  # rule 7: our PROOF waits for decide()
        self.result = HandshakeResult(
            version=self._challenge.version, node=peer.node, creation=peer.creation,
            initiator=self._initiator,
        )  # fmt: skip
        # The acceptor proves itself last, only to a peer that proved first.
        return [] if self._initiator else [Proof(digest=self._digest("acceptor"))]
