"""The GenServer behaviour: what users write.

Failure rules, decided once in the process loop (``process.py``) and stated
here, on the hooks, where users look:

- One message at a time: a process runs one hook at a time, in mailbox order.
- Let it crash: if ``init`` or any handler raises (other than ``BadRequest``
  and ``Stop``), the process exits with a :class:`~shoal.Crash` reason. The
  caller being served gets :class:`~shoal.CallError` carrying the exception's
  type, message and traceback text. Callers still queued get
  :class:`~shoal.NoSuchProcess` (their request never started, so a group call
  retries them elsewhere). Linked processes get the crash as an exit signal.
  ``sys.exit()`` in a hook is such a crash too: it ends this process only,
  as it ends only its thread in a threaded program, never the node.
- Before anything else runs on the node, an exiting process is out of every
  group (G1). ``terminate`` runs after that; it need not leave groups.
- ``terminate(reason)`` runs on every exit except a kill (``node.kill`` or
  an exit signal ``"kill"``): a return, a crash, ``Stop``, an exit signal,
  node shutdown. It has ``shutdown_timeout`` seconds (default 5) before the
  process is killed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from shoal.errors import BadRequest
from shoal.pid import Global, Pid, Reason
from shoal.runtime.notices import UNSET, Ref, Stop
from shoal.runtime.process import Behaviour

if TYPE_CHECKING:
    from shoal.runtime.node import Node
    from shoal.runtime.process import Caller

__all__ = ["GenServer"]


class GenServer(Behaviour):
    """Base class of every process behaviour. Override the hooks you need.

    Class attributes (override in a subclass, or per process with
    ``Node.spawn_opt``):

    - ``mailbox_size``: bound of the mailbox (``None``: unbounded). A call,
      cast or send to a full mailbox raises :class:`~shoal.Overloaded`
      instead of queueing; monitor, link and group notices are never refused.
    - ``shutdown_timeout``: seconds ``terminate`` may take before the process
      is killed.
    - ``version``: any value naming this version of the code (default
      None). A hot reload (``Node.reload``) hands the OLD class's
      ``version`` to the new class's ``code_change``.
    """

    mailbox_size: ClassVar[int | None] = None
    shutdown_timeout: ClassVar[float] = 5.0
    version: ClassVar[Any] = None

    # -- hooks --------------------------------------------------------------------

    async def init(self, *args: Any, **kwargs: Any) -> None:
        """Set up state. Receives the arguments given to ``spawn``.

        ``spawn`` returns only after ``init`` returned; if ``init`` raises,
        ``spawn`` raises :class:`~shoal.CallError` and the process never
        existed for anyone else.
        """

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        """Answer a call. Return the reply, or return :data:`~shoal.NOREPLY`
        and keep ``caller`` to answer later with ``caller.reply(value)``
        (from any hook, any time before the caller's deadline).

        Raise :class:`~shoal.BadRequest` to reject the request without
        crashing. The default rejects every request.
        """
        raise BadRequest(request, f"{type(self).__name__} does not handle calls")

    async def handle_cast(self, request: Any) -> None:
        """Handle a cast (no reply). The default ignores it."""

    async def handle_info(self, message: Any) -> None:
        """Handle a plain message (``send``), a :class:`~shoal.Down` from a
        monitor, an :class:`~shoal.Exit` from a link while trapping exits, or
        a :class:`~shoal.GroupEvent` from a subscription. The default ignores
        it."""

    async def terminate(self, reason: Reason) -> None:
        """Clean up; called on every exit except a kill. The process
        has already left its groups. Exceptions here are logged, not raised."""

    async def code_change(self, old_version: Any, extra: Any) -> None:
        """Migrate state to this (new) class's code; the state is the
        instance's attributes. The default keeps them as they are.

        ``await node.reload("myapp.workers", extra)`` calls it on each live
        process of the module's classes, between two messages (never during
        a handler), once ``self`` is already an instance of the new class;
        ``old_version`` is the old class's ``version``. If it raises, the
        process goes back to its old class and to its attributes as they
        were before the call (rebound attributes are restored; objects
        changed in place are not, so build new values rather than mutate),
        the failure is reported for its pid, and it keeps running.

        ``await node.code_change(pid, old_version, extra)`` calls it directly,
        in line with the mailbox too; there, raising crashes the process.
        """

    # -- helpers available inside hooks -------------------------------------------

    @property
    def pid(self) -> Pid:
        """This process's pid."""
        return self._process.pid

    @property
    def node(self) -> Node:
        """The node hosting this process."""
        # The process keeps its node untyped: process.py is below node.py.
        return cast("Node", self._process.node)

    @property
    def trap_exit(self) -> bool:
        """Whether exit signals from links arrive as :class:`~shoal.Exit`
        messages instead of stopping this process (``"kill"`` always kills).

        An exit signal from the process's *parent* (the process that spawned
        it linked: its supervisor) stops it even when it traps exits, as
        OTP's gen_server does: it arrives in line with the other messages,
        never reaches ``handle_info``, and ``terminate`` runs with its
        reason. So a :class:`~shoal.Supervisor` (which traps exits to hear of
        its children's exits) stops a child with the exit signal
        ``"shutdown"`` whether or not the child traps exits; a child still
        busy when its spec's ``shutdown`` seconds have passed is killed."""
        return self._process.trap_exit

    @trap_exit.setter
    def trap_exit(self, value: bool) -> None:
        self._process.trap_exit = bool(value)

    @property
    def backlog(self) -> int:
        """Requests this process holds beyond its mailbox (default 0): calls
        it answered ``NOREPLY`` to and has not replied to yet, or work it
        queued itself. Set it whenever that changes; the process's queue
        length is its mailbox plus this, which is what ``least_loaded``
        compares (here, and on other nodes through the length each reply
        reports). A process that forwards its calls elsewhere and replies
        later (the gateway's member proxies) would otherwise look idle."""
        return self._process.backlog

    @backlog.setter
    def backlog(self, value: int) -> None:
        self._process.backlog = max(0, int(value))

    def stop(self, reason: Reason = "normal", *, reply: Any = UNSET) -> None:
        """Stop this process after the current hook: raises :class:`~shoal.Stop`."""
        raise Stop(reason, reply=reply)

    async def call(self, pid: Pid | str | Global, request: Any, timeout: float = 5.0) -> Any:
        """``Node.call`` from this process."""
        return await self.node.call(pid, request, timeout)

    def cast(self, pid: Pid | str | Global, request: Any) -> None:
        """``Node.cast`` from this process."""
        self.node.cast(pid, request)

    def send(self, pid: Pid | str | Global, message: Any) -> None:
        """``Node.send`` from this process."""
        self.node.send(pid, message)

    def monitor(self, pid: Pid | str | Global) -> Ref:
        """Monitor ``pid``; a :class:`~shoal.Down` arrives in ``handle_info``."""
        return self.node.monitor(pid, watcher=self._process.pid)

    def demonitor(self, ref: Ref) -> None:
        """Drop a monitor; no Down for it arrives afterwards."""
        self.node.demonitor(ref)

    def link(self, pid: Pid | str | Global) -> None:
        """Link this process with ``pid``: an abnormal exit of either one
        stops the other (or reaches it as :class:`~shoal.Exit` if trapping)."""
        self.node.link(self._process.pid, pid)

    def unlink(self, pid: Pid | str | Global) -> None:
        """Remove the link with ``pid``."""
        self.node.unlink(self._process.pid, pid)

    async def spawn(self, behaviour: type[GenServer], *args: Any, **kwargs: Any) -> Pid:
        """Spawn a child linked to this process (stopped before its parent)."""
        return await self.node.spawn_opt(
            behaviour, args=args, kwargs=kwargs, link=True, parent=self._process.pid
        )

    def monitor_group(self, group: str, *, scope: str = "default") -> tuple[Ref, list[Pid]]:
        """Subscribe this process to a group's joins and leaves; returns the
        subscription's ref and the current members."""
        return self.node.scope(scope).monitor(str(group), watcher=self._process.pid)
