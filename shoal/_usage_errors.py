"""The root of shoal's error hierarchy and the caller's errors.

Owns :class:`ShoalError`, :class:`UsageError`, :class:`BadArgument` and
:class:`ConfigError`. They sit below ``shoal.pid``, which raises
:class:`BadArgument` for a malformed pid, while ``shoal.errors`` (whose
errors carry pids) sits above it; so ``pid`` and ``errors`` do not import
each other.

Rule: users import these from :mod:`shoal.errors` (or ``shoal``), never from
here; each sets ``__module__`` to ``"shoal.errors"`` so that tracebacks and
reprs name them as before.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["BadArgument", "ConfigError", "ShoalError", "UsageError", "short_repr"]


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ShoalError(Exception):
    """Base of every error shoal raises."""

    __module__ = "shoal.errors"

    not_started: ClassVar[bool] = False
    """True when the failed request provably never started on the callee."""


# --- the caller's fault ----------------------------------------------------


class UsageError(ShoalError):
    """The caller used the API wrongly. Retrying the same call cannot help."""

    __module__ = "shoal.errors"


class BadArgument(UsageError, ValueError):
    """An argument to a public function has the wrong type or value.

    Raised before anything is done, so nothing needs undoing. Not retryable.

    Attributes:
        argument: the parameter's name.
        value: what was passed.
        expected: a short description of what is accepted.
    """

    __module__ = "shoal.errors"

    not_started = True

    def __init__(self, argument: str, value: Any, expected: str) -> None:
        self.argument = argument
        self.value = value
        self.expected = expected
        super().__init__(f"bad argument {argument}={short_repr(value)}: expected {expected}")


class ConfigError(UsageError):
    """Node or cluster configuration is invalid or unsafe (for instance a
    world-readable secret file). Raised at start-up; fix the configuration."""

    __module__ = "shoal.errors"
