"""Process identifiers and exit reasons: the values every layer shares.

A pid is ``(node, creation, serial)``. ``creation`` changes every time a node
starts, and ``serial`` never repeats within one incarnation, so a pid is never
reused: a pid of an earlier incarnation is dead by definition (DESIGN.md).

``Pid`` is a ``NamedTuple`` rather than a dataclass on purpose: pids are dict
keys on every call and every membership operation, and a tuple hashes and
compares in C. It is immutable and validated when built through ``Pid.of``.

Exit reasons are plain strings for the well-known ones (``"normal"``,
``"shutdown"``, ``"killed"``, ``"noconnection"``, ``"noproc"``) or a
:class:`Crash` carrying the exception that ended the process. Any other
string is a user-chosen reason, as ``exit(Pid, Reason)`` allows in Erlang.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from shoal._usage_errors import BadArgument

__all__ = [
    "KILLED",
    "NOCONNECTION",
    "NOPROC",
    "NORMAL",
    "SHUTDOWN",
    "Crash",
    "Global",
    "Pid",
    "Reason",
    "check_registered_name",
    "is_abnormal",
]

NORMAL = "normal"
"""The process returned or was stopped on purpose; links do not propagate it."""
SHUTDOWN = "shutdown"
"""The process was stopped by its node or supervisor; ``terminate`` ran."""
KILLED = "killed"
"""The process was killed; it cannot trap this and ``terminate`` did not run."""
NOCONNECTION = "noconnection"
"""The node hosting the process was lost (connection broke or went silent)."""
NOPROC = "noproc"
"""The process was already dead when the monitor or link was set up."""

MAX_NAME_LENGTH = 255


class Pid(NamedTuple):
    """The address of one process, valid across the cluster and never reused.

    Attributes:
        node: name of the node hosting the process.
        creation: the incarnation number of that node (changes every start).
        serial: the process's number within that incarnation.
    """

    node: str
    creation: int
    serial: int

    @classmethod
    def of(cls, node: str, creation: int, serial: int) -> Pid:
        """Build a pid, checking every field.

        Raises:
            BadArgument: a field has the wrong type or is out of range.
        """
        if not isinstance(node, str) or not node or len(node) > MAX_NAME_LENGTH:
            raise BadArgument("node", node, f"a non-empty str of at most {MAX_NAME_LENGTH} chars")
        for name, value in (("creation", creation), ("serial", serial)):
            if type(value) is not int or value < 0 or value >= 1 << 63:
                raise BadArgument(name, value, "an int in [0, 2**63)")
        return cls(node, creation, serial)

    @classmethod
    def parse(cls, text: str) -> Pid:
        """The pid ``str(pid)`` printed: ``<node.creation.serial>`` (the
        angle brackets may be left out; the node name may contain dots).

        Raises:
            BadArgument: ``text`` is not a pid in that form.
        """
        body = text.strip() if isinstance(text, str) else ""
        if body.startswith("<") or body.endswith(">"):
            body = body[1:-1] if body.startswith("<") and body.endswith(">") else ""
        node, _, rest = body.rpartition(".")
        node, _, creation = node.rpartition(".")
        if not node or not creation.isdigit() or not rest.isdigit():
            raise BadArgument("pid", text, "a pid as printed, <node.creation.serial>")
        return cls.of(node, int(creation), int(rest))

    def __str__(self) -> str:
        return f"<{self.node}.{self.creation}.{self.serial}>"


def check_registered_name(argument: str, value: object) -> str:
    """A registered name: a non-empty str of at most 255 characters,
    without ``/`` or control characters (it is part of a store key).

    Raises:
        BadArgument: ``value`` is not such a str.
    """
    if (not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH
            or "/" in value or any(ord(c) < 32 for c in value)):
        raise BadArgument(argument, value,
                          f"a non-empty str of at most {MAX_NAME_LENGTH} chars, without '/'")
    return value


@dataclass(frozen=True, slots=True)
class Global:
    """A cluster-wide registered name, where a pid is accepted: ``node.call(
    shoal.Global("billing"), req)`` (OTP's ``{global, Name}``). A plain
    ``str`` there is a name registered on the calling node (``{local, Name}``).

    Attributes:
        name: the name, as given to ``node.register_global``.

    Raises:
        BadArgument: ``name`` is not a non-empty str of at most 255
            characters without ``/`` or control characters.
    """

    name: str

    def __post_init__(self) -> None:
        check_registered_name("name", self.name)

    def __str__(self) -> str:
        return f"Global({self.name!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Crash:
    """Exit reason of a process whose handler raised.

    Attributes:
        type: qualified name of the exception's class, e.g. ``"builtins.KeyError"``.
        message: ``str()`` of the exception.
        traceback: the formatted traceback text, as the crashing node saw it.
        exception: the exception object itself when the crash happened on this
            node; ``None`` when the reason came over the network (exceptions
            are never unpickled, G7).
    """

    type: str
    message: str
    traceback: str = ""
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_exception(cls, exc: BaseException) -> Crash:
        import traceback

        kind = type(exc)
        return cls(
            type=f"{kind.__module__}.{kind.__qualname__}",
            message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
            exception=exc,
        )

    def __str__(self) -> str:
        return f"crash {self.type}: {self.message}"


Reason = str | Crash
"""An exit reason: one of the constants above, a user string, or a Crash."""


def is_abnormal(reason: Reason) -> bool:
    """Whether an exit with this reason propagates over links (Erlang's rule)."""
    return reason != NORMAL
