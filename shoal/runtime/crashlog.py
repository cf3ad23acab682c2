"""A process's crash report: one structured log record per crash.

A crash (a handler of a running process raised) is logged once by the
process loop (``process.py``), at ERROR on the ``shoal`` logger, as ONE
record: a message line, then the traceback. The record carries
``record.shoal_crash``, a :class:`CrashLog`, so a log pipeline or a filter
reads the pid, the behaviour's class, the reason and the message being
handled from the record's attributes instead of parsing its text; records
that are not crash reports have no such attribute.

Rules:

- Rule 1: the message being handled is kept only as a bounded repr:
  at most :data:`MAX_MESSAGE_REPR` (500) characters, cut with ``...``, so a
  huge request cannot make a huge log record. A payload whose ``repr``
  raises is shown as ``<TYPE instance at 0x...>``: the report is never lost.
- Rule 2: ``init`` raising is not a crash report (``spawn`` raises
  :class:`~shoal.CallError` to its caller instead), so ``kind`` is always
  one of ``"call"``, ``"cast"``, ``"info"``, ``"system"``.
"""

from __future__ import annotations

import reprlib
from typing import Any, NamedTuple

from shoal.pid import Crash, Pid

__all__ = ["KIND_NAMES", "MAX_MESSAGE_REPR", "CrashLog", "bounded_repr", "crash_log"]

MAX_MESSAGE_REPR = 500
"""Longest repr of the message being handled that a crash report keeps."""

KIND_NAMES = ("call", "cast", "info", "system")
"""The mailbox kinds of ``process.py`` (CALL, CAST, INFO, SYSTEM), by value."""

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = MAX_MESSAGE_REPR


class CrashLog(NamedTuple):
    """``record.shoal_crash`` of a crash report (see the module header).

    Attributes:
        pid: the process that crashed.
        reason: the :class:`~shoal.Crash` it exited with (exception type,
            message, traceback text).
        behaviour: the qualified name of its GenServer class,
            ``module.QualName``.
        kind: what it was handling: ``"call"``, ``"cast"``, ``"info"`` (a
            ``send`` or a notice) or ``"system"`` (a code change).
        message: the bounded repr of that message (Rule 1).
    """

    pid: Pid
    reason: Crash
    behaviour: str
    kind: str
    message: str

    def line(self) -> str:
        """The report's first line, without the traceback."""
        return (f"process {self.pid} crashed: {self.reason} "
                f"({self.behaviour}, handling {self.kind} {self.message})")


def bounded_repr(payload: Any) -> str:
    """``repr(payload)`` cut to :data:`MAX_MESSAGE_REPR` characters (Rule 1)."""
    try:
        text = _REPR.repr(payload)
    except Exception:
        return f"<unrepresentable {type(payload).__qualname__}>"
    if len(text) > MAX_MESSAGE_REPR:
        text = text[:MAX_MESSAGE_REPR - 3] + "..."
    return text


def crash_log(pid: Pid, reason: Crash, server: object, kind: int, payload: Any) -> CrashLog:
    """The structured record of ``server``'s crash while handling ``payload``."""
    cls = type(server)
    return CrashLog(pid, reason, f"{cls.__module__}.{cls.__qualname__}",
                    KIND_NAMES[kind] if 0 <= kind < len(KIND_NAMES) else str(kind),
                    bounded_repr(payload))
