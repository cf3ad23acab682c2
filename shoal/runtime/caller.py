"""The other end of one call: ``Caller``, and the ``Answer`` it writes to.

Owns nothing beyond one call: a ``Caller`` holds the calling pid and where
the answer goes, the caller's ``asyncio.Future`` on this node or a
``replies.ReplySlot`` that sends it to a caller on another node. Both are an
``Answer``; a late or second answer is dropped (``done()`` is true once the
caller was answered or stopped waiting).
"""

from __future__ import annotations

from typing import Any, Protocol

from shoal.pid import Pid

__all__ = ["Answer", "Caller"]


class Answer(Protocol):
    """Where a call's answer goes: the caller's ``asyncio.Future`` on this
    node, or a ``replies.ReplySlot`` that sends it to a caller on another."""

    def done(self) -> bool:
        """Whether an answer was given, or nobody listens any more."""

    def set_result(self, value: Any, /) -> None:
        """Answer with ``value``. Once done, a future raises
        ``asyncio.InvalidStateError`` and a reply slot sends nothing."""

    def set_exception(self, exception: BaseException, /) -> None:
        """Answer with an error the caller raises."""



class Caller:
    """The other end of one call; ``handle_call`` receives it.

    Keep it and call :meth:`reply` later to answer after returning
    :data:`~shoal.NOREPLY`. Replying twice, or after the caller gave up, does
    nothing (a late reply is discarded, never leaked).

    Attributes:
        pid: the calling process, or ``None`` for code outside any process.
        timeout: the caller's timeout in seconds, counted from when the call
            reached this node (``0.0``: none given). A handler that replies
            later (``NOREPLY``) knows from it when the caller gives up: read
            it in ``handle_call`` (the time the call waited in the mailbox is
            not subtracted: stamping every call with the clock would cost
            each call a clock read).
    """

    __slots__ = ("answer", "pid", "timeout")

    def __init__(self, pid: Pid | None, answer: Answer, timeout: float = 0.0) -> None:
        self.pid = pid
        self.timeout = timeout
        # Internal: where the answer goes (the caller's future, or the reply
        # slot of a caller on another node). Use reply() and fail().
        self.answer = answer

    def reply(self, value: Any) -> None:
        """Send the reply (at most once; later replies are ignored)."""
        if not self.answer.done():
            self.answer.set_result(value)

    def fail(self, error: BaseException) -> None:
        """Answer with an error the caller will raise."""
        if not self.answer.done():
            self.answer.set_exception(error)

    @property
    def gave_up(self) -> bool:
        """Whether the caller stopped waiting (answered, timed out, cancelled)."""
        return self.answer.done()

    def __repr__(self) -> str:
        return f"<Caller from {self.pid}>"
