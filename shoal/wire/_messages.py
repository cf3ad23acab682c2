"""Messages: every shape that crosses the wire, as validated values.

Owns: the message classes, their integer type codes and their field order
on the wire (docs/protocol.md is the byte-level copy of this module).

Rules:

1. A message is a frozen, slotted, keyword-only dataclass, validated when
   built: a wrong field raises ``BadArgument`` naming it. The decoder builds
   messages through the same constructors and turns that ``BadArgument``
   into a ``ProtocolError``, so one set of checks guards both directions.
2. On the wire a message is a msgpack array ``[code, field1, field2, ...]``
   in the order the fields are declared here; ``wire_array`` returns that array.
   Arity is exact for a given protocol version.
3. Term fields (``request``, ``value``, ``message``, ``reason``, ``detail``)
   are not walked when built (that would tax every call); they are checked
   when encoded, and an unencodable one raises ``BadArgument`` at the sender.
   Exit reasons are the exception: a reason (DOWN, EXIT, FAIL ``exited``)
   is bounded when built, so one nested deeper than ``MAX_DEPTH`` is refused
   when it arrives (``ProtocolError``) rather than accepted and found
   unsendable when the runtime passes it on. Reasons are rare and small.
4. Validation is cheap on purpose: ``type(x) is int`` and range checks, no
   walking. A remote call's budget is tens of microseconds.

Codes: 1-4 handshake, 16-29 version 1 messages, 64-127 reserved for
messages an older peer may ignore (see ``_codec``); everything else unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

from shoal.errors import BadArgument
from shoal.pid import Pid
from shoal.wire._terms import check_term

__all__ = [
    "FAIL_KINDS",
    "Bye",
    "Call",
    "Cast",
    "Demonitor",
    "Down",
    "Exit",
    "Fail",
    "FailKind",
    "Link",
    "Message",
    "Monitor",
    "Ping",
    "Pong",
    "Reply",
    "Send",
    "Unlink",
]

_LIMIT: Final = 1 << 63

FailKind = Literal["noproc", "crash", "exited", "overloaded", "badrequest"]
FAIL_KINDS: Final[frozenset[str]] = frozenset(
    {"noproc", "crash", "exited", "overloaded", "badrequest"}
)
"""The values of :attr:`Fail.kind`."""


def _bad_int(name: str, value: Any) -> BadArgument:
    return BadArgument(name, value, "an int in [0, 2**63)")


def _bad_pid(name: str, value: Any) -> BadArgument:
    return BadArgument(name, value, "a shoal.pid.Pid")


class Message:
    """Base of every message exchanged after the handshake.

    Attributes:
        code: the integer message type sent first in the body.
    """

    __slots__ = ()
    code: ClassVar[int]
    term_fields: ClassVar[tuple[str, ...]] = ()
    """Fields holding user terms, checked when the message is encoded."""

    def wire_array(self) -> list[Any]:
        """The msgpack array sent for this message: code, then the fields."""
        # Every concrete message overrides this; the base is never sent.
        raise TypeError(f"{type(self).__name__} is not a concrete wire message")


@dataclass(frozen=True, slots=True, kw_only=True)
class Call(Message):
    """A gen_server call: ``request`` for ``to``, answered by Reply or Fail.

    Attributes:
        ref: the caller's reference, echoed in the answer; unique per caller node.
        sender: the calling process, or None for a call from outside a process.
        to: the callee.
        request: the request term.
        timeout_ms: the caller's remaining deadline in milliseconds; the callee
            may drop a request whose deadline has passed.
    """

    code: ClassVar[int] = 16
    term_fields: ClassVar[tuple[str, ...]] = ("request",)
    ref: int
    sender: Pid | None
    to: Pid
    request: Any
    timeout_ms: int

    def __post_init__(self) -> None:
        if type(self.ref) is not int or not 0 <= self.ref < _LIMIT:
            raise _bad_int("ref", self.ref)
        if self.sender is not None and type(self.sender) is not Pid:
            raise BadArgument("sender", self.sender, "a shoal.pid.Pid or None")
        if type(self.to) is not Pid:
            raise _bad_pid("to", self.to)
        if type(self.timeout_ms) is not int or not 0 <= self.timeout_ms < _LIMIT:
            raise _bad_int("timeout_ms", self.timeout_ms)

    def wire_array(self) -> list[Any]:
        return [16, self.ref, self.sender, self.to, self.request, self.timeout_ms]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply(Message):
    """The successful answer to a Call.

    Attributes:
        ref: the Call's ref.
        value: the reply term.
        queue_len: the callee's mailbox length after taking the call
            (``least_loaded`` routing uses it).
    """

    code: ClassVar[int] = 17
    term_fields: ClassVar[tuple[str, ...]] = ("value",)
    ref: int
    value: Any
    queue_len: int

    def __post_init__(self) -> None:
        if type(self.ref) is not int or not 0 <= self.ref < _LIMIT:
            raise _bad_int("ref", self.ref)
        if type(self.queue_len) is not int or not 0 <= self.queue_len < _LIMIT:
            raise _bad_int("queue_len", self.queue_len)

    def wire_array(self) -> list[Any]:
        return [17, self.ref, self.value, self.queue_len]


@dataclass(frozen=True, slots=True, kw_only=True)
class Fail(Message):
    """The failed answer to a Call.

    ``detail`` depends on ``kind``: ``"noproc"`` → None; ``"crash"`` →
    ``[type, message, traceback]`` (three str); ``"exited"`` → the exit
    reason term; ``"overloaded"`` → the mailbox limit (int); ``"badrequest"``
    → the rejection message (str).

    Attributes:
        ref: the Call's ref.
        kind: one of :data:`FAIL_KINDS`.
        pid: the callee.
        detail: see above.
        queue_len: the callee's mailbox length (0 for noproc).
    """

    code: ClassVar[int] = 18
    term_fields: ClassVar[tuple[str, ...]] = ("detail",)
    ref: int
    kind: FailKind
    pid: Pid
    detail: Any
    queue_len: int

    def __post_init__(self) -> None:
        if type(self.ref) is not int or not 0 <= self.ref < _LIMIT:
            raise _bad_int("ref", self.ref)
        # The type first: a list or map is unhashable and must not reach ``in``.
        if type(self.kind) is not str or self.kind not in FAIL_KINDS:
            raise BadArgument("kind", self.kind, f"one of {sorted(FAIL_KINDS)}")
        if type(self.pid) is not Pid:
            raise _bad_pid("pid", self.pid)
        if type(self.queue_len) is not int or not 0 <= self.queue_len < _LIMIT:
            raise _bad_int("queue_len", self.queue_len)
        kind, detail = self.kind, self.detail
        if kind == "crash":
            if (
                not isinstance(detail, (list, tuple))
                or len(detail) != 3
                or not all(type(part) is str for part in detail)
            ):
                raise BadArgument("detail", detail, "[type, message, traceback] of str")
            if type(detail) is not list:
                object.__setattr__(self, "detail", list(detail))
        elif kind == "noproc" and detail is not None:
            raise BadArgument("detail", detail, "None for kind 'noproc'")
        elif kind == "overloaded" and (type(detail) is not int or not 0 <= detail < _LIMIT):
            raise BadArgument("detail", detail, "the mailbox limit, an int >= 0")
        elif kind == "badrequest" and type(detail) is not str:
            raise BadArgument("detail", detail, "a str for kind 'badrequest'")
        elif kind == "exited":
            check_term(detail, "detail")  # an exit reason: bounded (rule 3)

    def wire_array(self) -> list[Any]:
        return [18, self.ref, self.kind, self.pid, self.detail, self.queue_len]


@dataclass(frozen=True, slots=True, kw_only=True)
class Cast(Message):
    """A gen_server cast: ``request`` for ``to``, no answer.

    Attributes:
        to: the target process.
        request: the request term.
    """

    code: ClassVar[int] = 19
    term_fields: ClassVar[tuple[str, ...]] = ("request",)
    to: Pid
    request: Any

    def __post_init__(self) -> None:
        if type(self.to) is not Pid:
            raise _bad_pid("to", self.to)

    def wire_array(self) -> list[Any]:
        return [19, self.to, self.request]


@dataclass(frozen=True, slots=True, kw_only=True)
class Send(Message):
    """A plain message for ``to``'s mailbox (``handle_info``).

    Attributes:
        to: the target process.
        message: the message term.
    """

    code: ClassVar[int] = 20
    term_fields: ClassVar[tuple[str, ...]] = ("message",)
    to: Pid
    message: Any

    def __post_init__(self) -> None:
        if type(self.to) is not Pid:
            raise _bad_pid("to", self.to)

    def wire_array(self) -> list[Any]:
        return [20, self.to, self.message]


@dataclass(frozen=True, slots=True, kw_only=True)
class _RefWatch(Message):
    ref: int
    watcher: Pid
    target: Pid

    def __post_init__(self) -> None:
        if type(self.ref) is not int or not 0 <= self.ref < _LIMIT:
            raise _bad_int("ref", self.ref)
        if type(self.watcher) is not Pid:
            raise _bad_pid("watcher", self.watcher)
        if type(self.target) is not Pid:
            raise _bad_pid("target", self.target)

    def wire_array(self) -> list[Any]:
        return [self.code, self.ref, self.watcher, self.target]


@dataclass(frozen=True, slots=True, kw_only=True)
class Monitor(_RefWatch):
    """``watcher`` starts monitoring ``target`` (on the receiving node).

    If ``target`` is already dead the receiver answers at once with
    ``Down(reason="noproc")``.

    Attributes:
        ref: the monitor reference, chosen by the watcher's node.
        watcher: the monitoring process.
        target: the monitored process.
    """

    code: ClassVar[int] = 21


@dataclass(frozen=True, slots=True, kw_only=True)
class Demonitor(_RefWatch):
    """Cancel the monitor ``ref``; no Down follows for it.

    Attributes:
        ref: the monitor reference.
        watcher: the monitoring process.
        target: the monitored process.
    """

    code: ClassVar[int] = 22


@dataclass(frozen=True, slots=True, kw_only=True)
class Down(Message):
    """The monitored ``target`` exited with ``reason``.

    Attributes:
        ref: the monitor reference.
        target: the process that exited.
        watcher: the monitoring process to notify.
        reason: the exit reason term.
    """

    code: ClassVar[int] = 23
    term_fields: ClassVar[tuple[str, ...]] = ("reason",)
    ref: int
    target: Pid
    watcher: Pid
    reason: Any

    def __post_init__(self) -> None:
        if type(self.ref) is not int or not 0 <= self.ref < _LIMIT:
            raise _bad_int("ref", self.ref)
        if type(self.target) is not Pid:
            raise _bad_pid("target", self.target)
        if type(self.watcher) is not Pid:
            raise _bad_pid("watcher", self.watcher)
        check_term(self.reason, "reason")  # rule 3

    def wire_array(self) -> list[Any]:
        return [23, self.ref, self.target, self.watcher, self.reason]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pair(Message):
    a: Pid
    b: Pid

    def __post_init__(self) -> None:
        if type(self.a) is not Pid:
            raise _bad_pid("a", self.a)
        if type(self.b) is not Pid:
            raise _bad_pid("b", self.b)

    def wire_array(self) -> list[Any]:
        return [self.code, self.a, self.b]


@dataclass(frozen=True, slots=True, kw_only=True)
class Link(_Pair):
    """Link ``a`` (on the sending node) with ``b`` (on the receiving node).

    If ``b`` is already dead the receiver answers with
    ``Exit(sender=b, to=a, reason="noproc")``.

    Attributes:
        a: the linking process.
        b: the linked process.
    """

    code: ClassVar[int] = 24


@dataclass(frozen=True, slots=True, kw_only=True)
class Unlink(_Pair):
    """Remove the link between ``a`` and ``b``.

    Attributes:
        a: the unlinking process.
        b: the other end.
    """

    code: ClassVar[int] = 25


@dataclass(frozen=True, slots=True, kw_only=True)
class Exit(Message):
    """An exit signal: ``sender`` exited (or signals) with ``reason``.

    Attributes:
        sender: the process the signal comes from.
        to: the process it is for.
        reason: the exit reason term.
    """

    code: ClassVar[int] = 26
    term_fields: ClassVar[tuple[str, ...]] = ("reason",)
    sender: Pid
    to: Pid
    reason: Any

    def __post_init__(self) -> None:
        if type(self.sender) is not Pid:
            raise _bad_pid("sender", self.sender)
        if type(self.to) is not Pid:
            raise _bad_pid("to", self.to)
        check_term(self.reason, "reason")  # rule 3

    def wire_array(self) -> list[Any]:
        return [26, self.sender, self.to, self.reason]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Seq(Message):
    seq: int

    def __post_init__(self) -> None:
        if type(self.seq) is not int or not 0 <= self.seq < _LIMIT:
            raise _bad_int("seq", self.seq)

    def wire_array(self) -> list[Any]:
        return [self.code, self.seq]


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(_Seq):
    """Heartbeat, sent when a connection has been idle; answered by Pong.

    Attributes:
        seq: echoed in the Pong.
    """

    code: ClassVar[int] = 27


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(_Seq):
    """The answer to a Ping.

    Attributes:
        seq: the Ping's seq.
    """

    code: ClassVar[int] = 28


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye(Message):
    """Orderly close: the sender is shutting down the connection (usually
    its node is stopping), so the receiver may mark it down at once.

    Attributes:
        reason: a short human-readable reason, e.g. ``"shutdown"``.
    """

    code: ClassVar[int] = 29
    reason: str

    def __post_init__(self) -> None:
        if type(self.reason) is not str:
            raise BadArgument("reason", self.reason, "a str")

    def wire_array(self) -> list[Any]:
        return [29, self.reason]
