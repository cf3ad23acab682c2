"""Monitors, links and exit signals: how one process learns of another's exit.

``Signals`` is a component of :class:`~shoal.runtime.node.Node` (which
delegates ``monitor``, ``demonitor``, ``link``, ``unlink``, ``exit`` and
``kill`` to it); it owns the node's half of Erlang's signal rules, for local
and remote pids alike, and the exit-path hooks every ``Process`` calls
(``process_exiting``, ``process_dead``: the ``ExitHooks`` of ``process.py``).

Owns: ``_monitors`` (every live monitor a local watcher set up: ref ->
(watcher, target); an entry goes when the monitor fires, is removed, or its
watcher exits) and ``_halting``. The per-process
halves (``Process.monitoring``, ``monitored_by``, ``links``) live on each
process and are changed only here and by ``Remote`` for remote peers.

Rules:

- Rule 1: a monitor of a dead pid gives an immediate ``Down`` with
  ``"noproc"``; a link to a dead pid sends the live side an exit signal
  ``"noproc"`` (Erlang's behaviour).
- Rule 2: ``"kill"`` is untrappable and skips ``terminate``; any other
  abnormal reason stops a process unless it traps exits, in which case it
  becomes an ``Exit`` message; ``"normal"`` does not propagate.
- Rule 3: the exit path calls ``process_exiting`` from its synchronous half
  (the process leaves every group there, through the ``exiting`` callback
  it is given: G1), then ``process_dead`` once ``terminate`` returned (Down
  to monitors, exit signals to links, out of the process table).
- Rule 4: while the node itself stops every process, newest first, links do
  not propagate ``"shutdown"``: a child's stop must not stop its parent
  before the parent's other children.
- Rule 5: the exit path never raises. A reason that cannot be sent to
  another node travels as a stand-in crash (``replies.wire_reason``), and
  ``Process`` sets ``done`` even if telling monitors and links failed.
- Rule 6: ``monitor``, ``link`` and ``unlink`` take a registered name
  (``str`` or ``shoal.Global``) where a pid goes, turned into its pid when
  called (``resolve``, the node's ``Names``): a monitor or link is on the
  process the name names now, and an unknown name raises ``NoSuchProcess``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shoal.errors import BadArgument, NoSuchProcess
from shoal.pid import NOPROC, SHUTDOWN, Global, Pid, Reason
from shoal.runtime.checks import check_pid
from shoal.runtime.notices import Down, Ref
from shoal.runtime.process import INFO, Process, current_process
from shoal.runtime.processes import ProcessTable

if TYPE_CHECKING:
    from shoal.runtime.remote import Remote

__all__ = ["Signals"]


class Signals:
    """Monitors, links and exit signals of one node (see the module header).

    Args:
        processes: the node's process table.
        remote: cross-node messaging, for monitors and links on other nodes.
        exiting: called from a process's synchronous exit half with its pid
            and reason: it leaves every group and subscription there (G1).
        dead: called once a process is dead, with its pid: per-callee
            figures about it are dropped.
        resolve: turns a registered name into its pid (Rule 6).
    """

    def __init__(self, processes: ProcessTable, remote: Remote, *,
                 exiting: Callable[[Pid, Reason], None],
                 dead: Callable[[Pid], None],
                 resolve: Callable[[Any, str], Pid]) -> None:
        self.name = processes.name
        self.creation = processes.creation
        self.self_pid = Pid(self.name, self.creation, 0)
        self._procs = processes
        self.remote = remote
        self._exiting = exiting
        self._dead = dead
        self._resolve = resolve
        # Invariant: every live monitor set up by a local watcher: ref -> (watcher, target).
        self._monitors: dict[Ref, tuple[Pid, Pid]] = {}
        # Invariant: True while the node's stop terminates processes one by
        # one; exit signals over links are not sent then (Rule 4).
        self._halting = False

    def halt(self) -> None:
        """The node now stops every process itself, newest first (Rule 4)."""
        self._halting = True

    # -- monitors and links -------------------------------------------------------------

    def make_ref(self) -> Ref:
        """A new unique reference."""
        return self._procs.new_ref()

    def watcher(self, watcher: Pid | None) -> Process:
        """The live process that watches: ``watcher``, else the calling one.

        Raises:
            BadArgument: ``watcher`` is not a Pid, or None outside a process.
            NoSuchProcess: ``watcher`` is not alive.
        """
        if watcher is None:
            me = current_process.get()
            if me is None:
                raise BadArgument("watcher", None, "a pid, or a call from inside a process")
            return me
        proc = self._procs.get(check_pid("watcher", watcher))
        if proc is None or not proc.alive:
            raise NoSuchProcess(watcher)
        return proc

    def monitor(self, pid: Pid | str | Global, *, watcher: Pid | None = None) -> Ref:
        """Monitor ``pid``: when it exits, the watcher (the calling process by
        default) gets ``Down(ref, pid, reason)`` in ``handle_info``. A dead
        pid gives an immediate Down with reason ``"noproc"``. A registered
        name (``str``, ``shoal.Global``) monitors the process it names now.

        Raises:
            BadArgument: ``pid`` is not a Pid or a name, or no watcher
                (outside a process).
            NoSuchProcess: ``watcher`` is dead, or ``pid`` is a name that
                names no process.
        """
        if type(pid) is not Pid:
            pid = self._resolve(pid, "pid")
        me = self.watcher(watcher)
        ref = self.make_ref()
        if pid.node != self.name:
            me.monitoring[ref] = pid
            self._monitors[ref] = (me.pid, pid)
            self.remote.monitor(ref, me.pid, pid)
            return ref
        target = self._procs.get(pid)
        if target is None or not target.alive:
            me.notify(Down(ref=ref, pid=pid, reason=NOPROC))
            return ref
        target.monitored_by[ref] = me.pid
        me.monitoring[ref] = pid
        self._monitors[ref] = (me.pid, pid)
        return ref

    def demonitor(self, ref: Ref) -> None:
        """Remove a monitor; no Down for it is delivered afterwards (one
        already queued is removed as well). Unknown refs are ignored."""
        if not isinstance(ref, Ref):
            raise BadArgument("ref", ref, "a shoal.Ref")
        pair = self._monitors.pop(ref, None)
        if pair is None:
            # The target already exited: its exit path dropped the monitor
            # and queued the Down in the watcher's mailbox. The watcher is
            # the calling process (GenServer.demonitor); purge it there.
            me = current_process.get()
            if me is not None:
                _purge(me, lambda m: isinstance(m, Down) and m.ref == ref)
            return
        watcher, target = pair
        if target.node != self.name:
            self.remote.demonitor(ref)
        owner = self._procs.get(target)
        if owner is not None:
            owner.monitored_by.pop(ref, None)
        proc = self._procs.get(watcher)
        if proc is not None:
            proc.monitoring.pop(ref, None)
            _purge(proc, lambda m: isinstance(m, Down) and m.ref == ref)

    def link(self, a: Pid | str | Global, b: Pid | str | Global) -> None:
        """Link two processes: when one exits abnormally the other gets an
        exit signal (it stops too, unless it traps exits and gets ``Exit``).
        Linking to a dead pid sends the live side an exit signal ``"noproc"``.
        A registered name (``str``, ``shoal.Global``) links the process it
        names now.

        Raises:
            BadArgument: an argument is not a Pid or a name.
            NoSuchProcess: an argument is a name that names no process.
        """
        a, b = self._resolve(a, "a"), self._resolve(b, "b")
        pa = self._procs.get(check_pid("a", a))
        pb = self._procs.get(check_pid("b", b))
        if a == b:
            return
        if a.node != self.name or b.node != self.name:
            if a.node != self.name and b.node != self.name:
                raise BadArgument("a", a, "a pid of this node (one side must be local)")
            local, other = (a, b) if a.node == self.name else (b, a)
            if self._procs.live(local) is not None:
                self.remote.link(local, other)
            return
        if pa is None or not pa.alive or pb is None or not pb.alive:
            live, dead = (pa, b) if pa is not None and pa.alive else (pb, a)
            if live is not None and live.alive:
                self.exit_signal(live, dead, NOPROC)
            return
        pa.links.add(b)
        pb.links.add(a)

    def unlink(self, a: Pid | str | Global, b: Pid | str | Global) -> None:
        """Remove the link between ``a`` and ``b`` (no error if absent).

        Raises:
            BadArgument: an argument is not a Pid or a name.
            NoSuchProcess: an argument is a name that names no process.
        """
        a, b = self._resolve(a, "a"), self._resolve(b, "b")
        for x, y in ((check_pid("a", a), check_pid("b", b)), (b, a)):
            proc = self._procs.get(x)
            if proc is not None:
                proc.links.discard(y)
                if y.node != self.name:
                    self.remote.holds.drop_link(x, y)
                    self.remote.unlink(x, y)

    def exit(self, pid: Pid, reason: Reason) -> None:
        """Send an exit signal to ``pid`` from the calling process (or from
        the node itself). ``"kill"`` kills it unconditionally, without
        ``terminate``; other reasons stop it (running ``terminate``) unless it
        traps exits, in which case it gets ``Exit``; ``"normal"`` is ignored
        by a process that does not trap exits.

        Raises:
            BadArgument: ``pid`` is not a Pid or ``reason`` is not a str.
        """
        proc = self._procs.get(check_pid("pid", pid))
        if not isinstance(reason, str) or not reason:
            raise BadArgument("reason", reason, "a non-empty str")
        me = current_process.get()
        sender = me.pid if me is not None else self.self_pid
        if proc is not None:
            self.exit_signal(proc, sender, reason)
        elif pid.node != self.name:
            self.remote.exit(sender, pid, reason)

    def kill(self, pid: Pid) -> None:
        """``exit(pid, "kill")``: stop it now, skipping ``terminate``."""
        self.exit(pid, "kill")

    def exit_signal(self, proc: Process, sender: Pid, reason: Reason) -> None:
        """Apply Erlang's exit-signal rules to a local process (Rule 2)."""
        proc.exit_signal(sender, reason)

    # -- exit path hooks (called by Process) ------------------------------------------------

    def process_exiting(self, proc: Process, reason: Reason) -> None:
        """The synchronous half's hook (Rule 3): out of every group (G1),
        its own monitors dropped."""
        self._exiting(proc.pid, reason)
        for ref, target in proc.monitoring.items():
            self._monitors.pop(ref, None)
            owner = self._procs.get(target)
            if owner is not None:
                owner.monitored_by.pop(ref, None)
        proc.monitoring.clear()

    def process_dead(self, proc: Process, reason: Reason) -> None:
        """The hook once ``terminate`` returned (Rule 3): out of the
        process table; Down to monitors, exit signals to links."""
        self._procs.discard(proc.pid)
        self._dead(proc.pid)
        for ref, watcher in proc.monitored_by.items():
            self._monitors.pop(ref, None)
            other = self._procs.get(watcher)
            if other is not None:
                other.monitoring.pop(ref, None)
                other.notify(Down(ref=ref, pid=proc.pid, reason=reason))
        remote_watchers = [(r, w) for r, w in proc.monitored_by.items() if w.node != self.name]
        remote_links = [p for p in proc.links if p.node != self.name]
        holds = self.remote.holds
        for ref, _ in remote_watchers:
            holds.drop_monitor(proc.pid, ref)
        for linked_pid in remote_links:
            holds.drop_link(proc.pid, linked_pid)
        if remote_watchers or remote_links:
            self.remote.process_dead(proc.pid, reason, remote_watchers,
                                     [] if self._halting and reason == SHUTDOWN
                                     else remote_links)
        proc.monitored_by.clear()
        for linked in proc.links:
            other = self._procs.get(linked)
            if other is not None:
                other.links.discard(proc.pid)
                # While the node stops every process itself, newest first, a
                # child's "shutdown" must not stop its parent through their
                # link: the parent would terminate before its other children.
                if not self._halting:
                    self.exit_signal(other, proc.pid, reason)
        proc.links.clear()


def _purge(proc: Process, match: Callable[[Any], bool]) -> None:
    kept = [item for item in proc.mailbox if not (item[0] == INFO and match(item[1]))]
    proc.mailbox.clear()
    proc.mailbox.extend(kept)
