"""Answers to remote calls, both ways: wire FAIL kinds to errors and back.

``ReplySlot`` stands in for the caller's future on the callee's node;
``fail_message`` turns the error a call ended with into the FAIL sent back,
``fail_error`` turns a received FAIL into the error the caller raises. The
two mappings are each other's inverse; keep them side by side.

``wire_reason`` is the one place an exit reason is made fit to send: the
exit path (DOWN and EXIT to other nodes) and FAIL ``exited`` use it, and it
never raises (a reason that cannot travel becomes a stated stand-in).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from shoal.errors import (
    BadArgument,
    BadRequest,
    CallError,
    CallTimeout,
    NodeDown,
    NoSuchProcess,
    Overloaded,
    ProcessExited,
    ShoalError,
)
from shoal.pid import Crash, Pid, Reason
from shoal.transport import PeerConnection
from shoal.wire import Fail, pack_term

if TYPE_CHECKING:
    from shoal.runtime.process import Process

__all__ = [
    "MAX_REASON_BYTES",
    "UNSENDABLE_REASON",
    "ReplySlot",
    "fail_error",
    "fail_message",
    "reply_slot",
    "stand_in_reason",
    "wire_reason",
]


def fail_error(msg: Fail) -> ShoalError:
    kind, pid, detail = msg.kind, msg.pid, msg.detail
    if kind == "noproc":
        return NoSuchProcess(pid)
    if kind == "overloaded":
        return Overloaded(pid, detail if type(detail) is int else 0)
    if kind == "badrequest":
        return BadRequest(None, str(detail))
    if kind == "crash":
        if isinstance(detail, Crash):
            return CallError(pid, detail.type, detail.message, detail.traceback)
        parts = [str(x) for x in detail] if isinstance(detail, list) else [str(detail)]
        parts += [""] * (3 - len(parts))
        return CallError(pid, parts[0], parts[1], parts[2])
    return ProcessExited(pid, detail if isinstance(detail, (str, Crash)) else str(detail))


def _nothing() -> None:
    """A slot's busy-poll poke when the node polls not (tests' slots)."""


class ReplySlot:
    """Where the answer to a caller on another node goes (a ``process.Answer``,
    as the caller's future is for a local one): setting it sends the answer
    at once. A future plus a done-callback would cost an extra turn of the
    event loop on every remote call."""

    __slots__ = ("_done", "_poke", "_time", "callee", "deadline", "peer", "pid", "ref")

    def __init__(self, peer: PeerConnection, ref: int, pid: Pid, callee: Process,
                 deadline: float, time: Callable[[], float],
                 poke: Callable[[], None] = _nothing) -> None:
        self.peer = peer
        self.ref = ref
        self.pid = pid
        # Its queue length goes with the answer (``least_loaded`` on the caller's node).
        self.callee = callee
        # Invariant: 0.0 means no deadline; else the caller's, on this loop's clock.
        self.deadline = deadline
        self._time = time
        self._done = False
        # The node's busy poll (spin.py), poked when the answer is sent: the
        # caller's next call is read without a wake-up.
        self._poke = poke

    def done(self) -> bool:
        """Whether it was answered, or the caller's deadline passed."""
        clock = self._time  # a local: 3.11 specializes its call (set_result too)
        if not self._done and self.deadline and clock() > self.deadline:
            self._finish()  # the caller gave up: nobody is listening
        return self._done

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self.peer.serving -= 1  # counted by Inbound when it read the CALL (idle.py)

    def set_result(self, value: Any) -> None:
        """Send the reply (or a FAIL when the reply cannot be encoded); once
        done (answered, or past the caller's deadline) it sends nothing."""
        if self._done:
            return
        deadline = self.deadline
        clock, poke = self._time, self._poke
        if deadline and clock() > deadline:  # done(), inlined (the hot path)
            self._finish()  # the caller gave up: nobody is listening
            return
        callee = self.callee
        try:
            try:
                # The reply first (the caller waits for it), then the bookkeeping.
                # callee.queue_len(), inlined (the hot path)
                self.peer.send_reply(self.ref, value, len(callee.mailbox) + callee.backlog)
                poke()
            except BadArgument as bad:
                self.peer.send(Fail(ref=self.ref, kind="crash", pid=self.pid,
                                    queue_len=self.callee.queue_len(),
                                    detail=["shoal.BadArgument",
                                            f"reply not encodable: {bad}", ""]))
        except NodeDown:
            pass  # the caller's node is gone: nobody is listening
        finally:
            if not self._done:  # _finish, inlined: the hot path
                self._done = True
                self.peer.serving -= 1

    def set_exception(self, exc: BaseException) -> None:
        """Send the failure, unless it is the caller's own timeout."""
        self._finish()
        if isinstance(exc, CallTimeout):
            return  # the caller's own deadline passed: it is not listening
        with contextlib.suppress(NodeDown):  # the caller's node is gone
            self.peer.send(fail_message(self.ref, self.pid, exc, self.callee.queue_len()))


_new_slot = object.__new__


def reply_slot(peer: PeerConnection, ref: int, pid: Pid, callee: Process,
               deadline: float, time: Callable[[], float],
               poke: Callable[[], None] = _nothing) -> ReplySlot:
    """``ReplySlot(...)`` without its ``__init__`` frame, which a class call
    enters from C (~600 instructions): one per remote call served. Sets
    every slot ``__init__`` sets; keep the two in step."""
    slot = _new_slot(ReplySlot)
    slot.peer = peer
    slot.ref = ref
    slot.pid = pid
    slot.callee = callee
    slot.deadline = deadline
    slot._time = time  # noqa: SLF001 - this module's own class
    slot._done = False  # noqa: SLF001
    slot._poke = poke  # noqa: SLF001
    return slot


UNSENDABLE_REASON: Final = "shoal.UnsendableReason"
"""The ``type`` of the :class:`~shoal.pid.Crash` sent in place of an exit
reason that cannot travel: not a term, nested deeper than the wire allows,
or larger than :data:`MAX_REASON_BYTES` encoded."""

MAX_REASON_BYTES: Final = 64 * 1024
"""Largest exit reason sent as is (encoded); a larger one is replaced."""


def wire_reason(reason: Reason) -> Reason:
    """The exit reason as it goes on the wire: a Crash without its exception,
    or, for a reason that cannot travel, a stand-in ``Crash`` of type
    :data:`UNSENDABLE_REASON` whose message says why. Never raises: the exit
    path calls it, and the exit path must never fail."""
    if type(reason) is str and len(reason) <= MAX_REASON_BYTES // 4:
        return reason  # the common case: a short str always travels
    if isinstance(reason, Crash):
        reason = Crash(type=reason.type, message=reason.message, traceback=reason.traceback)
    try:
        size = len(pack_term(reason, argument="reason"))
    except BadArgument as bad:
        return stand_in_reason(str(bad))
    if size <= MAX_REASON_BYTES:
        return reason
    if isinstance(reason, Crash) and len(reason.type) < 1024:
        # Keep what the crash was; shorten what it said.
        budget = MAX_REASON_BYTES // 8
        return Crash(type=reason.type, message=reason.message[:budget],
                     traceback="[...]\n" + reason.traceback[-budget:])
    return stand_in_reason(f"{size} bytes encoded, more than {MAX_REASON_BYTES}")


def stand_in_reason(why: str) -> Crash:
    """The stand-in for an exit reason that cannot be sent (see :func:`wire_reason`)."""
    return Crash(type=UNSENDABLE_REASON, message=f"the exit reason cannot be sent: {why}",
                 traceback="")


def fail_message(ref: int, pid: Pid, exc: BaseException, queue_len: int) -> Fail:
    if isinstance(exc, CallError):
        return Fail(ref=ref, kind="crash", pid=pid, queue_len=queue_len,
                    detail=[exc.remote_type, exc.remote_message, exc.remote_traceback])
    if isinstance(exc, BadRequest):
        return Fail(ref=ref, kind="badrequest", pid=pid, detail=str(exc), queue_len=queue_len)
    if isinstance(exc, NoSuchProcess):
        return Fail(ref=ref, kind="noproc", pid=pid, detail=None, queue_len=queue_len)
    if isinstance(exc, Overloaded):
        return Fail(ref=ref, kind="overloaded", pid=pid, detail=exc.limit, queue_len=queue_len)
    if isinstance(exc, ProcessExited):
        return Fail(ref=ref, kind="exited", pid=pid, detail=wire_reason(exc.reason),
                    queue_len=queue_len)
    crash = Crash.from_exception(exc)
    return Fail(ref=ref, kind="crash", pid=pid, queue_len=queue_len,
                detail=[crash.type, crash.message, crash.traceback])
