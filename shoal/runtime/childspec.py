"""Child specs and supervisor flags: the data a supervisor is configured from.

Owns the values of supervision, none of its behaviour (``supervisor.py``):
what a child is (:class:`ChildSpec`), how a supervisor restarts its children
(:class:`SupervisorSpec`), and what its API answers (:class:`ChildInfo`,
:class:`ChildCounts`) or logs (:class:`SupervisorLog`).

Rules:

- Rule 1: every field is checked when the value is built, and a bad one
  raises :class:`~shoal.BadArgument` naming it: a supervisor never discovers
  a malformed spec at restart time, when nobody is there to read the error.
- Rule 2: defaults are OTP's: ``restart="permanent"``; ``shutdown`` 5 s for
  a worker, ``"infinity"`` for a supervisor; ``type`` from the class (a
  :class:`~shoal.Supervisor` subclass is a supervisor); strategy
  ``one_for_one``, at most ``intensity=1`` restart in ``period=5`` seconds.
- Rule 3: a spec keeps the class it was given; the supervisor asks
  ``codeload.current_class`` at each start, so children started after a hot
  reload run the new code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal, NamedTuple

from shoal.errors import BadArgument
from shoal.pid import Global, Pid, Reason, check_registered_name
from shoal.runtime.checks import check_int, check_name, check_timeout
from shoal.runtime.process import Behaviour

__all__ = [
    "DEFAULT_WORKER_SHUTDOWN",
    "RESTARTS",
    "SHUTDOWNS",
    "STRATEGIES",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "Restart",
    "Shutdown",
    "Strategy",
    "SupervisorLog",
    "SupervisorSpec",
    "class_name",
]

Restart = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"]
Shutdown = float | Literal["brutal_kill", "infinity"]

RESTARTS: tuple[str, ...] = ("permanent", "transient", "temporary")
"""The restart types: ``permanent`` is always restarted; ``transient`` only
after an abnormal exit (not ``"normal"`` nor ``"shutdown"``); ``temporary``
never (and its spec is forgotten when it exits)."""
STRATEGIES: tuple[str, ...] = ("one_for_one", "one_for_all", "rest_for_one",
                               "simple_one_for_one")
"""The restart strategies, as OTP's supervisor."""
SHUTDOWNS: tuple[str, ...] = ("brutal_kill", "infinity")
"""The shutdown values that are not a number of seconds."""
DEFAULT_WORKER_SHUTDOWN = 5.0
"""Seconds a worker's ``terminate`` is given by default (OTP: 5000 ms)."""


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One child of a supervisor, as OTP's child specification.

    Args:
        id: the child's name within its supervisor (a non-empty str).
        cls: the GenServer subclass the child runs.
        args, kwargs: given to its ``init`` (for ``simple_one_for_one``, the
            arguments of ``start_child`` are appended to ``args``).
        restart: ``"permanent"`` (always restarted, the default),
            ``"transient"`` (restarted after an abnormal exit: a reason other
            than ``"normal"`` and ``"shutdown"``) or ``"temporary"`` (never
            restarted; forgotten when it exits).
        shutdown: how the supervisor stops it: seconds to wait after the
            exit signal ``"shutdown"`` (its ``terminate`` runs) before killing
            it, ``"brutal_kill"`` (killed at once, no ``terminate``) or
            ``"infinity"`` (wait as long as it takes; meant for supervisors).
            Default: 5 for a worker, ``"infinity"`` for a supervisor.
        type: ``"worker"`` or ``"supervisor"``; default from ``cls``.
        groups: (scope, group) pairs the child joins each time it starts,
            before it counts as started; it leaves them in its exit path, as
            every process does (G1).
        name: a name the child is registered under each time it starts,
            before it counts as started: a ``str`` on its node
            (``node.register``), or ``shoal.Global(name)`` cluster-wide
            (``node.register_global``). Its exit path releases it; a restart
            registers the new process. Not for ``simple_one_for_one``.

    Raises:
        BadArgument: a field is malformed, named.
    """

    id: str
    cls: type[Behaviour]
    _: KW_ONLY
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    restart: Restart = "permanent"
    shutdown: Shutdown | None = None
    type: Literal["worker", "supervisor"] | None = None
    groups: Sequence[tuple[str, str]] = ()
    name: str | Global | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise BadArgument("id", self.id, "a non-empty str")
        if not (isinstance(self.cls, type) and issubclass(self.cls, Behaviour)):
            raise BadArgument("cls", self.cls, "a subclass of shoal.GenServer")
        if not isinstance(self.args, (tuple, list)):
            raise BadArgument("args", self.args, "a tuple")
        if not isinstance(self.kwargs, Mapping) or not all(isinstance(k, str)
                                                           for k in self.kwargs):
            raise BadArgument("kwargs", self.kwargs, "a mapping of str keys")
        if self.restart not in RESTARTS:
            raise BadArgument("restart", self.restart, " or ".join(RESTARTS))
        kind = self.type
        if kind is None:
            kind = "supervisor" if getattr(self.cls, "is_supervisor", False) else "worker"
        elif kind not in ("worker", "supervisor"):
            raise BadArgument("type", kind, "'worker' or 'supervisor'")
        shutdown = self.shutdown
        if shutdown is None:
            shutdown = "infinity" if kind == "supervisor" else DEFAULT_WORKER_SHUTDOWN
        elif shutdown not in SHUTDOWNS:
            shutdown = check_timeout(shutdown, "shutdown")
        groups = self.groups
        if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence):
            raise BadArgument("groups", groups, "a list of (scope, group) pairs")
        pairs = []
        for pair in groups:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise BadArgument("groups", pair, "a (scope, group) pair")
            scope, group = pair
            check_name("scope", scope)
            if not isinstance(group, str) or not group:
                raise BadArgument("group", group, "a non-empty str")
            pairs.append((scope, group))
        if self.name is not None and not isinstance(self.name, Global):
            check_registered_name("name", self.name)
        # Normalised once here (Rule 1): a frozen dataclass sets through object.
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        object.__setattr__(self, "type", kind)
        object.__setattr__(self, "shutdown", shutdown)
        object.__setattr__(self, "groups", tuple(pairs))


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorSpec:
    """A supervisor configured from data: its flags and its children.

    Start one with ``await node.spawn(shoal.Supervisor, spec)``, or make it a
    child of another supervisor with
    ``ChildSpec("id", shoal.Supervisor, args=(spec,))``.

    Args:
        children: the child specs, started in this order and stopped in the
            reverse order. For ``simple_one_for_one``: exactly one, the
            template of every child ``start_child`` starts.
        strategy: which children are restarted when one exits to be
            restarted: ``"one_for_one"`` (that child), ``"one_for_all"``
            (all of them: the others are stopped first, in reverse order),
            ``"rest_for_one"`` (that child and those started after it), or
            ``"simple_one_for_one"`` (as one_for_one, for children started
            dynamically from one template).
        intensity, period: more than ``intensity`` restarts within
            ``period`` seconds and the supervisor gives up: it stops its
            children and exits with reason ``"shutdown"`` (OTP's defaults:
            1 in 5 seconds).

    Raises:
        BadArgument: a bad field, named; two children with one id; a
            ``simple_one_for_one`` without exactly one child spec.
    """

    children: Sequence[ChildSpec] = ()
    strategy: Strategy = "one_for_one"
    intensity: int = 1
    period: float = 5.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise BadArgument("strategy", self.strategy, " or ".join(STRATEGIES))
        check_int("intensity", self.intensity, 0)
        check_timeout(self.period, "period")
        children = self.children
        if isinstance(children, (str, bytes)) or not isinstance(children, Sequence):
            raise BadArgument("children", children, "a list of shoal.ChildSpec")
        seen: set[str] = set()
        for spec in children:
            if not isinstance(spec, ChildSpec):
                raise BadArgument("children", spec, "a shoal.ChildSpec")
            if spec.id in seen:
                raise BadArgument("children", spec.id, "child ids that are unique")
            seen.add(spec.id)
        if self.strategy == "simple_one_for_one" and len(children) != 1:
            raise BadArgument("children", len(children),
                              "exactly one child spec (the template) for simple_one_for_one")
        if self.strategy == "simple_one_for_one" and children[0].name is not None:
            raise BadArgument("name", children[0].name, "no name for the template of a "
                              "simple_one_for_one (its children would share it)")
        object.__setattr__(self, "children", tuple(children))
        object.__setattr__(self, "period", float(self.period))


class ChildInfo(NamedTuple):
    """One child, as ``which_children`` lists it (OTP's ``{Id, Child, Type,
    Modules}``)."""

    id: str | None
    """The child's id; None for a child of a ``simple_one_for_one``."""
    pid: Pid | None
    """Its pid while it runs; None while it is not running (OTP's ``undefined``).
    A supervisor restarts a child before it answers anything else, so a
    child being restarted is never seen (OTP's ``restarting``)."""
    type: str
    """``"worker"`` or ``"supervisor"``."""
    cls: str
    """The qualified name of its class (``module.Class``, as a crash report names it)."""


class ChildCounts(NamedTuple):
    """What ``count_children`` answers (OTP's specs, active, supervisors, workers)."""

    specs: int
    """Child specs the supervisor holds (running or not)."""
    active: int
    """Children running now."""
    supervisors: int
    """Specs of type supervisor, running or not."""
    workers: int
    """Specs of type worker, running or not."""


class SupervisorLog(NamedTuple):
    """``record.shoal_supervisor`` of a supervisor report (one log record per
    restart, at WARNING, and one when the supervisor gives up, at ERROR), so
    a log pipeline can tell them apart without parsing the message."""

    supervisor: Pid
    """The supervisor that restarted the child or gave up."""
    event: Literal["restarted", "restart_failed", "gave_up"]
    """What happened: the child was started again; starting it again
    failed (it is tried again, counting one more restart); or the restart
    intensity was exceeded and the supervisor is shutting down."""
    child_id: str | None
    """The id of the child that exited (None under simple_one_for_one)."""
    reason: Reason
    """The reason the child exited (or its start failed)."""
    restarts: int
    """Restarts of this supervisor within the last ``period``, this one included."""
    pid: Pid | None = None
    """The restarted child's new pid, for ``restarted``."""


def class_name(cls: type) -> str:
    """``module.Qualname`` of a class, as ``which_children`` shows it."""
    return f"{cls.__module__}.{cls.__qualname__}"
