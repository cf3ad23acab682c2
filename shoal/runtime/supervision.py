"""The supervision API: asking a supervisor about its children, by pid.

Available as ``shoal.supervisor`` (``await shoal.supervisor.which_children(node,
sup)``). Each function is one call to the supervisor process
(``supervisor.py`` answers it), so it works from any node that can call the
supervisor's pid, and is ordered with the supervisor's own restarts. The
supervisor answers ``["ok", value]`` or ``["error", problem, child, detail]``
(OTP's ``{error, ...}``, which travels as plain terms); this module turns an
error answer into the matching exception and rebuilds the named tuples a
reply from another node brings back as lists.

Rules:

- Rule 1: a :class:`~shoal.ChildSpec` holds a class, which never travels
  between nodes (G7): ``start_child`` with a spec works on the
  supervisor's own node only (elsewhere it raises ``BadArgument`` before
  sending anything). The arguments of a ``simple_one_for_one`` child, ids
  and pids travel like any other term.
- Rule 2: the default timeout is generous (:data:`SUPERVISOR_TIMEOUT`):
  a supervisor answers after it finished what it was doing, a restart or a
  child's start, which may take a child's whole ``init``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.errors import (
    BadArgument,
    ChildError,
    ChildExists,
    ChildRunning,
    ChildStartFailed,
    NoSuchChild,
)
from shoal.pid import Pid
from shoal.runtime.checks import check_pid
from shoal.runtime.childspec import (
    ChildCounts,
    ChildInfo,
    ChildSpec,
    SupervisorLog,
    SupervisorSpec,
)
from shoal.runtime.supervisor import REQUEST_TAG, Supervisor

if TYPE_CHECKING:
    from shoal.runtime.node import Node

__all__ = [
    "SUPERVISOR_TIMEOUT",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "Supervisor",
    "SupervisorLog",
    "SupervisorSpec",
    "count_children",
    "delete_child",
    "restart_child",
    "start_child",
    "terminate_child",
    "which_children",
]

SUPERVISOR_TIMEOUT = 30.0
"""Default seconds the supervision API waits for the supervisor's answer."""


async def _ask(node: Node, sup: Pid, op: str, *args: Any, timeout: float) -> Any:
    answer = await node.call(check_pid("sup", sup), [REQUEST_TAG, op, *args], timeout)
    if not isinstance(answer, (list, tuple)) or not answer:
        raise BadArgument("sup", sup, "the pid of a shoal.Supervisor")
    if answer[0] == "ok" and len(answer) == 2:
        return answer[1]
    _, problem, child, detail = answer
    if problem == "not_found":
        raise NoSuchChild(sup, child, problem)
    if problem == "running":
        raise ChildRunning(sup, child, problem)
    if problem in ("already_started", "already_present"):
        raise ChildExists(sup, child, problem, detail if isinstance(detail, Pid) else None)
    if problem == "start_failed":
        raise ChildStartFailed(sup, child, str(detail))
    raise ChildError(sup, child, str(problem), str(detail or ""))


async def start_child(node: Node, sup: Pid, child: ChildSpec | tuple[Any, ...] | list[Any],
                      *, timeout: float = SUPERVISOR_TIMEOUT) -> Pid:
    """Start a new child under ``sup`` and return its pid, once it started
    and joined its groups (OTP's ``supervisor:start_child``).

    Args:
        node: the node to call from.
        sup: the supervisor's pid.
        child: a :class:`~shoal.ChildSpec` (added after the other children;
            on the supervisor's node only), or, for a ``simple_one_for_one``
            supervisor, a tuple of arguments appended to the template's
            ``args``.
        timeout: seconds to wait for the supervisor's answer.

    Raises:
        ChildExists: a child with that id exists (``pid`` set if it runs).
        ChildStartFailed: the child's ``init`` failed; the spec is not kept.
        ChildError: a spec given to a ``simple_one_for_one`` supervisor, or
            arguments to another (``problem`` says which).
        BadArgument: ``sup`` is not a pid, or a spec was given for a
            supervisor on another node.
        NoSuchProcess, CallTimeout, NodeDown: as any call to ``sup``.
    """
    if isinstance(child, ChildSpec) and check_pid("sup", sup).node != node.name:
        raise BadArgument("child", child, "arguments, not a ChildSpec, for a supervisor on "
                                          "another node (a class never travels)")
    value = list(child) if isinstance(child, tuple) else child
    pid: Pid = await _ask(node, sup, "start_child", value, timeout=timeout)
    return pid


async def terminate_child(node: Node, sup: Pid, child: str | Pid, *,
                          timeout: float = SUPERVISOR_TIMEOUT) -> None:
    """Stop a child as the supervisor stops it (its ``shutdown``), without
    restarting it. Its spec is kept, so ``restart_child`` starts it again,
    except for a temporary child (forgotten) and under ``simple_one_for_one``,
    where ``child`` is the child's pid and it is forgotten.

    Raises:
        NoSuchChild: no such id (or pid, under simple_one_for_one).
        ChildError: an id given to a ``simple_one_for_one`` supervisor.
        NoSuchProcess, CallTimeout, NodeDown: as any call to ``sup``.
    """
    await _ask(node, sup, "terminate_child", child, timeout=timeout)


async def restart_child(node: Node, sup: Pid, child_id: str, *,
                        timeout: float = SUPERVISOR_TIMEOUT) -> Pid:
    """Start again a child whose spec is kept but that is not running
    (terminated with ``terminate_child``, or a transient child that ended
    normally); returns its new pid.

    Raises:
        NoSuchChild: no such id.
        ChildRunning: it runs.
        ChildStartFailed: its ``init`` failed (the spec is kept).
        ChildError: ``problem == "simple_one_for_one"``: not offered there.
        NoSuchProcess, CallTimeout, NodeDown: as any call to ``sup``.
    """
    pid: Pid = await _ask(node, sup, "restart_child", child_id, timeout=timeout)
    return pid


async def delete_child(node: Node, sup: Pid, child_id: str, *,
                       timeout: float = SUPERVISOR_TIMEOUT) -> None:
    """Forget the spec of a child that is not running.

    Raises:
        NoSuchChild: no such id.
        ChildRunning: it runs (``terminate_child`` it first).
        ChildError: ``problem == "simple_one_for_one"``: not offered there.
        NoSuchProcess, CallTimeout, NodeDown: as any call to ``sup``.
    """
    await _ask(node, sup, "delete_child", child_id, timeout=timeout)


async def which_children(node: Node, sup: Pid, *,
                         timeout: float = SUPERVISOR_TIMEOUT) -> list[ChildInfo]:
    """Every child of ``sup``, in start order, as :class:`~shoal.ChildInfo`
    (id, pid or None when not running, type, class).

    Raises:
        NoSuchProcess, CallTimeout, NodeDown: as any call to ``sup``.
    """
    found = await _ask(node, sup, "which_children", timeout=timeout)
    return [ChildInfo(*entry) for entry in found]


async def count_children(node: Node, sup: Pid, *,
                         timeout: float = SUPERVISOR_TIMEOUT) -> ChildCounts:
    """How many child specs ``sup`` holds, how many run, and how many are
    supervisors and workers (:class:`~shoal.ChildCounts`).

    Raises:
        NoSuchProcess, CallTimeout, NodeDown: as any call to ``sup``.
    """
    return ChildCounts(*await _ask(node, sup, "count_children", timeout=timeout))
