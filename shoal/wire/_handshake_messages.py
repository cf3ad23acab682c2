"""The four handshake messages: HELLO, CHALLENGE, PROOF, REFUSE (sans-IO).

Owns: their fields and the checks each field passes when a message is
built (so a message that exists is well formed, as every wire message).
The state machine that exchanges them, and the bytes fed to HMAC, are
``_handshake.py``'s; docs/protocol.md section 4 specifies the encodings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from shoal.errors import BadArgument
from shoal.wire._messages import Message
from shoal.wire._terms import check_name

__all__ = ["NONCE_SIZE", "Challenge", "Hello", "Proof", "Refuse", "check_creation", "check_version"]

NONCE_SIZE: Final = 32
"""Bytes in each side's random challenge."""
_VERSION_LIMIT: Final = 1 << 31
_LIMIT: Final = 1 << 63


def check_version(name: str, value: Any) -> None:
    if type(value) is not int or not 1 <= value < _VERSION_LIMIT:
        raise BadArgument(name, value, "an int in [1, 2**31)")


def check_creation(value: Any) -> None:
    if type(value) is not int or not 0 <= value < _LIMIT:
        raise BadArgument("creation", value, "an int in [0, 2**63)")


def _check_bin(name: str, value: Any, size: int) -> None:
    if type(value) is not bytes or len(value) != size:
        raise BadArgument(name, value, f"{size} bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Message):
    """Handshake step 1, initiator → acceptor: who I am, what I speak.

    Attributes:
        min_version, max_version: the protocol versions the initiator accepts.
        cluster: the cluster name. node: the initiator's node name.
        creation: the initiator's incarnation. nonce: its 32 random bytes.
    """

    code: ClassVar[int] = 1
    min_version: int
    max_version: int
    cluster: str
    node: str
    creation: int
    nonce: bytes

    def __post_init__(self) -> None:
        check_version("min_version", self.min_version)
        check_version("max_version", self.max_version)
        if self.max_version < self.min_version:
            raise BadArgument("max_version", self.max_version, "at least min_version")
        check_name(self.cluster, "cluster")
        check_name(self.node, "node")
        check_creation(self.creation)
        _check_bin("nonce", self.nonce, NONCE_SIZE)

    def wire_array(self) -> list[Any]:
        return [1, self.min_version, self.max_version, self.cluster, self.node,
                self.creation, self.nonce]  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge(Message):
    """Handshake step 2, acceptor → initiator: the chosen version and a challenge.

    Attributes:
        version: the highest version in both ranges. cluster, node, creation:
            the acceptor's identity. nonce: its 32 random bytes.
    """

    code: ClassVar[int] = 2
    version: int
    cluster: str
    node: str
    creation: int
    nonce: bytes

    def __post_init__(self) -> None:
        check_version("version", self.version)
        check_name(self.cluster, "cluster")
        check_name(self.node, "node")
        check_creation(self.creation)
        _check_bin("nonce", self.nonce, NONCE_SIZE)

    def wire_array(self) -> list[Any]:
        return [2, self.version, self.cluster, self.node, self.creation, self.nonce]


@dataclass(frozen=True, slots=True, kw_only=True)
class Proof(Message):
    """Handshake steps 3 and 4: an HMAC-SHA256 digest of the transcript.

    Attributes:
        digest: 32 bytes, see :func:`proof_digest`.
    """

    code: ClassVar[int] = 3
    digest: bytes

    def __post_init__(self) -> None:
        _check_bin("digest", self.digest, hashlib.sha256().digest_size)

    def wire_array(self) -> list[Any]:
        return [3, self.digest]


@dataclass(frozen=True, slots=True, kw_only=True)
class Refuse(Message):
    """Sent instead of the next handshake step: why the connection is refused.

    Attributes:
        reason: one word: ``auth``, ``cluster``, ``version``, ``self``,
            ``name``, ``reflected``, or a word from the node's vetting
            (``duplicate``, ``stale``).
    """

    code: ClassVar[int] = 4
    reason: str

    def __post_init__(self) -> None:
        if type(self.reason) is not str or len(self.reason) > 64:
            raise BadArgument("reason", self.reason, "a str of at most 64 chars")

    def wire_array(self) -> list[Any]:
        return [4, self.reason]
