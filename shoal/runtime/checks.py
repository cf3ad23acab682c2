"""Argument checks shared by the public API: one place, one wording.

Every public entry point checks its arguments before doing anything, so a
bad argument raises :class:`~shoal.BadArgument` naming the parameter and
nothing needs undoing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from shoal.errors import BadArgument, NoSuchProcess
from shoal.pid import Pid

__all__ = [
    "MAX_TIMEOUT",
    "check_group",
    "check_int",
    "check_live_local_pid",
    "check_name",
    "check_pid",
    "check_pids",
    "check_timeout",
    "env_float",
    "env_int",
]

MAX_NAME = 255
MAX_TIMEOUT = 365 * 24 * 3600.0
"""The longest timeout any API accepts: one year, in seconds. Far beyond
any real deadline, and small enough for every place a deadline goes (the
event loop's timers, the milliseconds a CALL carries on the wire)."""


def check_pid(argument: str, value: Any) -> Pid:
    """Return ``value`` if it is a Pid, else raise BadArgument."""
    if type(value) is not Pid:
        raise BadArgument(argument, value, "a shoal.Pid")
    return value


def check_live_local_pid(pid: Any, node: str, live: Callable[[Pid], object | None],
                         elsewhere: str) -> Pid:
    """``pid`` if it is a live process of ``node``; ``elsewhere`` tells what
    to do with another node's pid (registering a name, say).

    Raises:
        BadArgument: ``pid`` is not a Pid, or belongs to another node.
        NoSuchProcess: it is not alive.
    """
    if type(pid) is not Pid:
        raise BadArgument("pid", pid, "a shoal.Pid")
    if pid.node != node:
        raise BadArgument("pid", pid, f"a pid of this node ({node!r}); {elsewhere}")
    if live(pid) is None:
        raise NoSuchProcess(pid)
    return pid


def check_pids(argument: str, value: Any) -> list[Pid]:
    """A pid or a list/tuple of pids, as a list."""
    if type(value) is Pid:
        return [value]
    if isinstance(value, (list, tuple)):
        for item in value:
            if type(item) is not Pid:
                raise BadArgument(argument, value, "a shoal.Pid or a list of them")
        return list(value)
    raise BadArgument(argument, value, "a shoal.Pid or a list of them")


def check_timeout(value: Any, argument: str = "timeout") -> float:
    """A number of seconds > 0 and at most :data:`MAX_TIMEOUT` (one year):
    every call has a deadline (G6); inf, nan and larger values are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadArgument(argument, value, "a number of seconds > 0")
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    if not 0 < seconds <= MAX_TIMEOUT:  # also false for nan
        raise BadArgument(argument, value,
                          f"a number of seconds > 0 and at most {int(MAX_TIMEOUT)} (one year)")
    return seconds


def check_int(argument: str, value: Any, minimum: int) -> int:
    """An int (not a bool) of at least ``minimum``."""
    if type(value) is not int or value < minimum:
        raise BadArgument(argument, value, f"an int >= {minimum}")
    return value


def env_int(name: str, default: int, minimum: int, maximum: int | None = None,
            expected: str | None = None) -> int:
    """The environment variable ``name`` as an int in [minimum, maximum];
    ``default`` when it is unset or blank.

    Raises:
        BadArgument: (naming the variable) anything else; ``expected`` says
            what is accepted, else "an int >= minimum" (or "in min..max").
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum or (maximum is not None and value > maximum):
        raise BadArgument(name, raw, expected or (
            f"an int >= {minimum}" if maximum is None else f"an int in {minimum}..{maximum}"))
    return value


def env_float(name: str, default: float, minimum: float) -> float:
    """The environment variable ``name`` as a finite number >= ``minimum``;
    ``default`` when it is unset or blank.

    Raises:
        BadArgument: (naming the variable) anything else.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= minimum):
        raise BadArgument(name, raw, f"a number >= {minimum:g}")
    return value


def check_name(argument: str, value: Any) -> str:
    """A non-empty str of at most 255 characters without '/' or control chars."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_NAME
        or "/" in value
        or any(ord(c) < 32 for c in value)
    ):
        raise BadArgument(
            argument, value, f"a non-empty str of at most {MAX_NAME} chars, without '/'"
        )
    return value


def check_group(value: Any, argument: str = "group") -> str:
    """Group names are non-empty strings (they are store keys and CLI words)."""
    if not isinstance(value, str) or not value or len(value) > 1024 or "\x00" in value:
        raise BadArgument(argument, value, "a non-empty str of at most 1024 chars")
    return value
