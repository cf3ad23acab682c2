"""shoal: Erlang/OTP-style processes, process groups and supervision for Python.

Everything a user needs is re-exported here::

    import shoal

    class Counter(shoal.GenServer):
        async def init(self, start: int = 0) -> None:
            self.n = start

        async def handle_call(self, request, caller):
            self.n += 1
            return self.n

    async with shoal.Node("api-1") as node:
        pid = await node.spawn(Counter, start=5)
        await node.groups.join("counters", pid)
        n = await node.groups.call("counters", "incr", timeout=1.0)
"""

import logging as _logging

from shoal._version import __version__
from shoal.errors import (
    AuthenticationFailed,
    BadArgument,
    BadRequest,
    CalleeError,
    CallError,
    CallTimeout,
    ChildError,
    ChildExists,
    ChildRunning,
    ChildStartFailed,
    ConfigError,
    NameInUse,
    NodeDown,
    NoMembers,
    NoSuchChild,
    NoSuchProcess,
    Overloaded,
    ProcessExited,
    ProtocolError,
    SessionEnded,
    ShoalError,
    StoreError,
    StoreUnavailable,
    TargetError,
    UsageError,
)
from shoal.pid import KILLED, NOCONNECTION, NOPROC, NORMAL, SHUTDOWN, Crash, Global, Pid, Reason
from shoal.runtime import supervision as supervisor
from shoal.runtime.caller import Caller
from shoal.runtime.childspec import ChildCounts, ChildInfo, ChildSpec, SupervisorLog, SupervisorSpec
from shoal.runtime.crashlog import CrashLog
from shoal.runtime.genserver import GenServer
from shoal.runtime.groups import Groups
from shoal.runtime.node import Node, NodeStatistics
from shoal.runtime.notices import NOREPLY, Down, Exit, GroupEvent, Ref, Stop
from shoal.runtime.reload import ReloadResult
from shoal.runtime.subscriptions import Subscription, SubscriptionOverflow
from shoal.runtime.supervisor import Supervisor

__all__ = [
    "KILLED",
    "NOCONNECTION",
    "NOPROC",
    "NOREPLY",
    "NORMAL",
    "SHUTDOWN",
    "AuthenticationFailed",
    "BadArgument",
    "BadRequest",
    "CallError",
    "CallTimeout",
    "CalleeError",
    "Caller",
    "ChildCounts",
    "ChildError",
    "ChildExists",
    "ChildInfo",
    "ChildRunning",
    "ChildSpec",
    "ChildStartFailed",
    "ConfigError",
    "Crash",
    "CrashLog",
    "Down",
    "Exit",
    "GenServer",
    "Global",
    "GroupEvent",
    "Groups",
    "NameInUse",
    "NoMembers",
    "NoSuchChild",
    "NoSuchProcess",
    "Node",
    "NodeDown",
    "NodeStatistics",
    "Overloaded",
    "Pid",
    "ProcessExited",
    "ProtocolError",
    "Reason",
    "Ref",
    "ReloadResult",
    "SessionEnded",
    "ShoalError",
    "Stop",
    "StoreError",
    "StoreUnavailable",
    "Subscription",
    "SubscriptionOverflow",
    "Supervisor",
    "SupervisorLog",
    "SupervisorSpec",
    "TargetError",
    "UsageError",
    "__version__",
    "build_info",
    "supervisor",
]


def build_info() -> dict[str, str]:
    """Which build of shoal runs in this process.

    Returns:
        ``{"version": ..., "wire": "c" | "python", "wire_reason": ...}``:
        ``"c"`` when the wire protocol's hot loops run in the optional C
        extension (built by ``pip install`` where a C compiler and Python's
        headers are found), ``"python"`` when they run in the pure-Python
        code, which is the reference and behaves the same; ``wire_reason``
        says why (``SHOAL_PURE_PYTHON=1`` forces ``"python"``).
    """
    from shoal.wire import _native

    return {"version": __version__, "wire": _native.WIRE, "wire_reason": _native.WIRE_REASON}


_logging.getLogger("shoal").addHandler(_logging.NullHandler())
