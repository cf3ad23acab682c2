"""Registered names: a process reached by a name instead of its pid.

``Names`` is a component of :class:`~shoal.runtime.node.Node`, which
delegates ``register``, ``unregister``, ``whereis`` and ``registered`` to it
(Erlang's ``register/2``, ``unregister/1``, ``whereis/1``, ``registered/0``).
It also turns what a caller gave where a pid is expected into a pid
(:meth:`Names.resolve`): a ``Pid`` as is, a ``str`` as a name registered on
this node (OTP's ``{local, Name}``), a :class:`~shoal.Global` as a
cluster-wide name (``{global, Name}``, through its ``GlobalNames``, which it owns).

Owns: ``_pids`` (name -> pid) and ``_names`` (pid -> name), the local
registry (they always hold the same pairs), and ``global_names``, the
node's :class:`~shoal.runtime.global_names.GlobalNames` (cluster-wide
names; the node starts and stops it with its store session).

Rules:

- Rule 1: a name names at most one process and a process has at most one
  name; only a live process of this node is registered (Erlang's
  ``badarg`` cases, as :class:`~shoal.NameInUse`, :class:`~shoal.BadArgument`
  and :class:`~shoal.NoSuchProcess`).
- Rule 2: a name dies with its process, in the synchronous half of the exit
  path (``process_exiting``, called from the node's exit hook next to
  leaving the groups: G1), so ``whereis`` never answers a pid that is
  exiting or dead, and the name may be registered again at once; the
  process's global names go in the same step (``global_names.py``).
- Rule 3: a name that names no process raises ``NoSuchProcess`` naming the
  name, for calls and for casts, sends, monitors and links alike (Erlang's
  ``noproc`` for calls and ``badarg`` for ``Name ! Msg``): nothing is sent.
  A plain ``Pid`` never reaches the registry (callers test ``type(x) is
  Pid`` first), so calls by pid pay nothing for names.
- Bounds: one entry per live registered process, dropped in its exit path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.errors import BadArgument, NameInUse, NoSuchProcess
from shoal.pid import Global, Pid, check_registered_name
from shoal.runtime.checks import check_live_local_pid
from shoal.runtime.global_names import GlobalNames

if TYPE_CHECKING:
    from shoal.runtime.processes import ProcessTable

__all__ = ["TARGET", "Names"]

TARGET = "a shoal.Pid, a registered name (str) or a shoal.Global"
"""What every API taking a process accepts, as error messages word it."""


class Names:
    """The node's registered names (see the module header).

    Args:
        processes: the node's process table (who is alive and local).
    """

    def __init__(self, processes: ProcessTable) -> None:
        self.node = processes.name
        self.creation = processes.creation
        self._processes = processes
        self.global_names = GlobalNames(processes)
        # Invariant: _pids and _names hold the same pairs, each pid a live
        # local process (Rule 2 removes a pair in its process's exit path).
        self._pids: dict[str, Pid] = {}
        self._names: dict[Pid, str] = {}

    def register(self, name: str, pid: Pid) -> None:
        """Register ``pid`` under ``name`` on this node (Erlang's ``register/2``).

        The name names the process until it exits (the name goes in its exit
        path) or ``unregister(name)``; ``call(name, ...)``, ``cast``,
        ``send``, ``monitor`` and ``link`` accept it where a pid goes.

        Args:
            name: a non-empty str of at most 255 characters, without ``/``.
            pid: a live process of this node.

        Raises:
            BadArgument: ``name`` is not such a str; ``pid`` is not a Pid, is
                another node's, or already has a name (the message names it).
            NoSuchProcess: ``pid`` is not alive.
            NameInUse: ``name`` names a live process (the message names it).
        """
        check_registered_name("name", name)
        check_live_local_pid(pid, self.node, self._processes.live,
                             "register a process of another node on its own node, or globally")
        holder = self._pids.get(name)
        if holder is not None:
            raise NameInUse(name, str(holder), kind="registered name")
        other = self._names.get(pid)
        if other is not None:
            raise BadArgument("pid", pid, f"a process without a registered name "
                              f"(it is registered as {other!r})")
        self._pids[name] = pid
        self._names[pid] = name

    def unregister(self, name: str) -> None:
        """Remove the registered name ``name``; the process keeps running
        (Erlang's ``unregister/1``).

        Raises:
            BadArgument: ``name`` is not a str, or names no process.
        """
        pid = self._pids.pop(name, None) if type(name) is str else None
        if pid is None:
            raise BadArgument("name", name, "a name registered on this node")
        del self._names[pid]

    def whereis(self, name: str) -> Pid | None:
        """The live process registered as ``name`` on this node, or None
        (Erlang's ``whereis/1``); never an exiting or dead one (Rule 2).

        Raises:
            BadArgument: ``name`` is not a str.
        """
        if type(name) is not str:
            raise BadArgument("name", name, "a str")
        return self._pids.get(name)

    def registered(self) -> list[str]:
        """Every name registered on this node, sorted."""
        return sorted(self._pids)

    def name_of(self, pid: Pid) -> str | None:
        """The name ``pid`` is registered under on this node, or None."""
        return self._names.get(pid)

    def process_exiting(self, pid: Pid) -> None:
        """Called in the synchronous half of ``pid``'s exit path: its name goes (Rule 2)."""
        name = self._names.pop(pid, None)
        if name is not None:
            del self._pids[name]
        self.global_names.process_exiting(pid)

    def resolve(self, target: Any, argument: str = "pid") -> Pid:
        """The pid ``target`` stands for (see the module header).

        Raises:
            BadArgument: ``target`` is none of a Pid, a str or a Global.
            NoSuchProcess: ``target`` is a name that names no process (Rule 3).
        """
        kind = type(target)
        if kind is Pid:
            return target  # type: ignore[no-any-return]
        if kind is str:
            pid = self._pids.get(target)
        elif kind is Global:
            pid = self.global_names.whereis(target.name)
        else:
            raise BadArgument(argument, target, TARGET)
        if pid is None:
            raise NoSuchProcess(target)
        return pid
