"""The public process API of a Node: one-line delegations to its components.

:class:`~shoal.runtime.node.Node` derives from :class:`NodeAPI`; this part
holds what users call on a node about processes (spawn, call, cast, send,
monitors and links, registered names, code reload) so that ``node.py``
keeps the wiring and the G4 start/stop order. Each method delegates to the
component that owns the state (``processes.py``, ``messaging.py``,
``signals.py``, ``names.py``, ``reload.py``) and documents where to look;
none keeps state of its own.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from shoal.errors import BadArgument
from shoal.pid import Global, Pid, Reason
from shoal.runtime.messaging import DEFAULT_TIMEOUT, Messaging
from shoal.runtime.names import Names
from shoal.runtime.notices import Ref
from shoal.runtime.process import Behaviour, Process
from shoal.runtime.processes import ProcessTable
from shoal.runtime.reload import Reloader, ReloadResult
from shoal.runtime.signals import Signals

__all__ = ["NodeAPI"]


class NodeAPI:
    """What a node offers about processes (see the module header)."""

    # Set by Node.__init__ (the components this part delegates to).
    _processes: ProcessTable
    _signals: Signals
    _messaging: Messaging
    _reloader: Reloader
    _names: Names

    # -- processes ------------------------------------------------------------------

    async def spawn(self, behaviour: type[Behaviour], *args: Any, **kwargs: Any) -> Pid:
        """Start a process running ``behaviour``; ``args`` and ``kwargs`` go
        to its ``init``. Returns once ``init`` returned.

        Raises:
            BadArgument: ``behaviour`` is not a GenServer subclass.
            CallError: ``init`` raised (the process never became visible).
            ShoalError: the node is not running.
        """
        return await self.spawn_opt(behaviour, args=args, kwargs=kwargs)

    async def spawn_opt(
        self,
        behaviour: type[Behaviour],
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        link: bool = False,
        mailbox_size: int | None = -1,
        trap_exit: bool = False,
        shutdown_timeout: float | None = None,
        parent: Pid | None = None,
    ) -> Pid:
        """``spawn`` with options.

        Args:
            behaviour: a GenServer subclass.
            args, kwargs: passed to ``init``.
            link: link the new process with the calling process (or ``parent``)
                before ``init`` runs.
            mailbox_size: bound of the mailbox; ``None`` unbounded; default:
                the behaviour's ``mailbox_size``, else the node's.
            trap_exit: start trapping exits (``init`` may also set it).
            shutdown_timeout: seconds ``terminate`` may take; default: the
                behaviour's ``shutdown_timeout``.
            parent: the process to link with when ``link`` is set.

        Raises:
            BadArgument: a bad option, named.
            CallError: ``init`` raised.
        """
        if not (isinstance(behaviour, type) and issubclass(behaviour, Behaviour)):
            raise BadArgument("behaviour", behaviour, "a subclass of shoal.GenServer")
        return await self._processes.spawn(
            self, behaviour, self._signals, self._signals.link, args=args, kwargs=kwargs,
            link=link, mailbox_size=mailbox_size, trap_exit=trap_exit,
            shutdown_timeout=shutdown_timeout, parent=parent)

    def processes(self) -> list[Pid]:
        """Pids of every live local process, oldest first."""
        return self._processes.pids()

    async def wait_exit(self, pid: Pid, timeout: float = DEFAULT_TIMEOUT) -> Reason:
        """Wait until a local process is dead; return its exit reason
        (``"noproc"`` if it was not alive).

        Raises:
            CallTimeout: it is still alive after ``timeout`` seconds.
        """
        return await self._processes.wait_exit(pid, timeout)

    # -- messages (messaging.py) -------------------------------------------------------

    def call(self, pid: Pid | str | Global, request: Any,
             timeout: float = DEFAULT_TIMEOUT) -> Coroutine[Any, Any, Any]:
        """See :meth:`Messaging.call <shoal.runtime.messaging.Messaging.call>`; await it.

        A node's ``call`` attribute is that method itself (bound in
        ``Node.__init__``, so a call pays no frame of this one); this
        definition is what the class documents and what ``NodeAPI.call``
        runs when reached through the class."""
        return self._messaging.call(pid, request, timeout)

    def cast(self, pid: Pid | str | Global, request: Any) -> None:
        """See :meth:`Messaging.cast <shoal.runtime.messaging.Messaging.cast>`."""
        self._messaging.cast(pid, request)

    def send(self, pid: Pid | str | Global, message: Any) -> None:
        """See :meth:`Messaging.send <shoal.runtime.messaging.Messaging.send>`."""
        self._messaging.send(pid, message)

    async def code_change(self, pid: Pid, old_version: Any = None, extra: Any = None, *,
                          timeout: float = DEFAULT_TIMEOUT) -> None:
        """See :meth:`Messaging.code_change <shoal.runtime.messaging.Messaging.code_change>`."""
        await self._messaging.code_change(pid, old_version, extra, timeout=timeout)

    async def reload(self, module: str, extra: Any = None, *,
                     timeout: float = DEFAULT_TIMEOUT) -> ReloadResult:
        """See :meth:`Reloader.reload <shoal.runtime.reload.Reloader.reload>`."""
        return await self._reloader.reload(module, extra, timeout=timeout)

    def is_alive(self, pid: Pid) -> bool:
        """See :meth:`Messaging.is_alive <shoal.runtime.messaging.Messaging.is_alive>`."""
        return self._messaging.is_alive(pid)

    async def ask_alive(self, pid: Pid, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """See :meth:`Messaging.ask_alive <shoal.runtime.messaging.Messaging.ask_alive>`."""
        return await self._messaging.ask_alive(pid, timeout)

    # -- signals (signals.py) ---------------------------------------------------------

    def monitor(self, pid: Pid | str | Global, *, watcher: Pid | None = None) -> Ref:
        """See :meth:`Signals.monitor <shoal.runtime.signals.Signals.monitor>`."""
        return self._signals.monitor(pid, watcher=watcher)

    def demonitor(self, ref: Ref) -> None:
        """See :meth:`Signals.demonitor <shoal.runtime.signals.Signals.demonitor>`."""
        self._signals.demonitor(ref)

    def link(self, a: Pid | str | Global, b: Pid | str | Global) -> None:
        """See :meth:`Signals.link <shoal.runtime.signals.Signals.link>`."""
        self._signals.link(a, b)

    def unlink(self, a: Pid | str | Global, b: Pid | str | Global) -> None:
        """See :meth:`Signals.unlink <shoal.runtime.signals.Signals.unlink>`."""
        self._signals.unlink(a, b)

    def exit(self, pid: Pid, reason: Reason) -> None:
        """See :meth:`Signals.exit <shoal.runtime.signals.Signals.exit>`."""
        self._signals.exit(pid, reason)

    def kill(self, pid: Pid) -> None:
        """``exit(pid, "kill")``: stop it now, skipping ``terminate``."""
        self._signals.kill(pid)

    def make_ref(self) -> Ref:
        """A new unique reference."""
        return self._signals.make_ref()

    def local_process(self, pid: Pid) -> Process | None:
        """The live local process for ``pid``, if any (internal; a debug hook)."""
        return self._processes.live(pid)

    # -- registered names (names.py) -------------------------------------------------

    def register(self, name: str, pid: Pid) -> None:
        """See :meth:`Names.register <shoal.runtime.names.Names.register>`."""
        self._names.register(name, pid)

    def unregister(self, name: str) -> None:
        """See :meth:`Names.unregister <shoal.runtime.names.Names.unregister>`."""
        self._names.unregister(name)

    def whereis(self, name: str) -> Pid | None:
        """See :meth:`Names.whereis <shoal.runtime.names.Names.whereis>`."""
        return self._names.whereis(name)

    def registered(self) -> list[str]:
        """See :meth:`Names.registered <shoal.runtime.names.Names.registered>`."""
        return self._names.registered()

    async def register_global(self, name: str, pid: Pid) -> None:
        """See :meth:`GlobalNames.register <shoal.runtime.global_names.GlobalNames.register>`."""
        await self._names.global_names.register(name, pid)

    async def unregister_global(self, name: str) -> None:
        """See :meth:`shoal.runtime.global_names.GlobalNames.unregister`."""
        await self._names.global_names.unregister(name)

    def registered_global(self) -> list[str]:
        """Every cluster-wide name in this node's view of the store, sorted."""
        return self._names.global_names.registered()

    def whereis_global(self, name: str) -> Pid | None:
        """See :meth:`GlobalNames.whereis <shoal.runtime.global_names.GlobalNames.whereis>`."""
        return self._names.global_names.whereis(name)
