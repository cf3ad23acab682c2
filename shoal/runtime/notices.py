"""Notices a process receives in ``handle_info``, and the handler controls.

``Down`` comes from a monitor, ``Exit`` from a link when the process traps
exits, ``GroupEvent`` from a group or scope subscription. ``Stop`` and
``NOREPLY`` are what handlers use to steer their own process.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Final, Literal

from shoal.pid import NORMAL, Pid, Reason

__all__ = ["NOREPLY", "Down", "Exit", "GroupEvent", "Ref", "Stop"]


class _NoReply:
    __slots__ = ()

    def __repr__(self) -> str:
        return "shoal.NOREPLY"


NOREPLY: Final = _NoReply()
"""Return this from ``handle_call`` to reply later through ``caller.reply``."""


@dataclass(frozen=True, slots=True)
class Ref:
    """A unique reference naming one monitor or subscription."""

    node: str
    creation: int
    serial: int

    def __str__(self) -> str:
        return f"#Ref<{self.node}.{self.creation}.{self.serial}>"


@dataclass(frozen=True, slots=True, kw_only=True)
class Down:
    """A monitored process exited (or was already dead: reason ``"noproc"``,
    or its node was lost: reason ``"noconnection"``)."""

    ref: Ref
    pid: Pid
    reason: Reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Exit:
    """A linked process exited; delivered only while the receiver traps exits."""

    pid: Pid
    reason: Reason


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupEvent:
    """Members joined or left a subscribed group.

    Attributes:
        ref: the subscription's reference.
        scope, group: where it happened.
        kind: ``"join"`` or ``"leave"``.
        pids: the pids, once per join.
        reason: for a leave, ``"left"`` (left on purpose) or the exit reason
            of the pid; ``None`` for a join.
    """

    ref: Ref
    scope: str
    group: Hashable
    kind: Literal["join", "leave"]
    pids: tuple[Pid, ...]
    reason: Reason | None = None


UNSET: Final = object()
"""``Stop``'s reply when none was given (``None`` is a reply like any other)."""


class Stop(Exception):
    """Raise from any handler to stop the process cleanly.

    ``terminate(reason)`` runs, links and monitors see ``reason``. Raised
    from ``handle_call`` with ``reply=...``, the caller first gets that reply;
    without it the caller gets :class:`~shoal.errors.ProcessExited`.
    """

    def __init__(self, reason: Reason = NORMAL, *, reply: Any = UNSET) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply

    @property
    def has_reply(self) -> bool:
        return self.reply is not UNSET
