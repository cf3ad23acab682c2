"""Argument checks shared by the public API: one place, one wording.

Every public entry point checks its arguments before doing anything, so a
bad argument raises :class:`~shoal.BadArgument` naming the parameter and
nothing needs undoing.
"""

from __future__ import annotations

import math
from typing import Any

from shoal.errors import BadArgument
from shoal.pid import Pid

__all__ = ["check_group", "check_int", "check_name", "check_pid", "check_pids", "check_timeout"]

MAX_NAME = 255


def check_pid(argument: str, value: Any) -> Pid:
    """Return ``value`` if it is a Pid, else raise BadArgument."""
    if type(value) is not Pid:
        raise BadArgument(argument, value, "a shoal.Pid")
    return value


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
    """A finite number of seconds > 0 (every call has a deadline: G6)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadArgument(argument, value, "a number of seconds > 0")
    if not (value > 0 and math.isfinite(value)):
        raise BadArgument(argument, value, "a finite number of seconds > 0")
    return float(value)


def check_int(argument: str, value: Any, minimum: int) -> int:
    """An int (not a bool) of at least ``minimum``."""
    if type(value) is not int or value < minimum:
        raise BadArgument(argument, value, f"an int >= {minimum}")
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
