"""Hot code reload: re-import a module, move its live processes to the new code.

``Reloader`` is a component of :class:`~shoal.runtime.node.Node`, which
delegates ``reload`` to it. ``await node.reload("myapp.workers")`` is
Erlang's ``l(Module)`` followed by a ``code_change`` of every process
running that module's code, on this node only.

Owns: a lock that runs one reload at a time on its node, and nothing that
outlives a reload.

Rules:

- Rule 1: nothing changes unless the new code imports. ``importlib.reload``
  re-executes the module in the SAME module dict, so an exception half-way
  (a ``SyntaxError``, or anything raised at import) would leave a
  half-updated module: the dict is copied first and, on failure, put back
  as it was (and ``sys.modules`` points at the same module object again).
  The error is returned with its traceback text; no process is touched.
- Rule 2: a process moves between two of its messages, never in the middle
  of a handler: the move is a system message (``process.py``'s
  ``SystemOp``) queued behind what its mailbox holds. It snapshots the
  instance's ``__dict__``, sets ``__class__`` to the class of the same
  qualified name in the re-imported module, and runs the NEW class's
  ``code_change(old_version, extra)``, ``old_version`` being the old
  class's ``version`` attribute (None if absent).
- Rule 3: if ``code_change`` raises (or the class cannot be swapped), the
  process goes back to its old class and to its attributes as they were
  (the snapshot is shallow: an attribute rebound is restored, an object
  mutated in place is not), the failure is reported for that pid with its
  traceback, and the process keeps running the old code.
- Rule 4: a process still busy ``timeout`` seconds after the reload asked
  (a handler that does not return) is reported as not moved and is not
  killed; its move is dropped unrun when its turn comes. A ``code_change``
  that runs longer than ``timeout`` is cut short and handled as Rule 3.
- Rule 5: what moves is a live process whose class was defined in the
  module (its ``__module__``). A class defined elsewhere, even one deriving
  from a class of the module, keeps its code; names other modules imported
  from it (``from myapp.workers import Worker``) keep the old objects, as
  with any ``importlib.reload``. Whatever starts processes later asks
  :func:`shoal.runtime.codeload.current_class`, which answers the new class.
- Rule 6: shoal's own modules and modules not loaded from a source file
  (built-in, frozen) are refused with ``BadArgument``; so is a module that
  is not imported.

Every reload is logged once, at INFO, with what moved and what failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any

from shoal.errors import BadArgument, CallTimeout, NoSuchProcess, ProcessExited, ShoalError
from shoal.pid import Pid
from shoal.runtime.checks import check_timeout
from shoal.runtime.process import Behaviour

if TYPE_CHECKING:
    from shoal.runtime.messaging import Messaging
    from shoal.runtime.processes import ProcessTable

__all__ = ["ReloadResult", "Reloader"]

log = logging.getLogger("shoal")

_LOGGED_PIDS = 20  # pids named in the reload's log line; the rest are counted


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadResult:
    """What ``Node.reload`` did.

    Attributes:
        module: the module's name.
        moved: the processes now running the new classes (their
            ``code_change`` returned).
        failed: per pid, why it still runs the old class: the traceback
            text of its ``code_change``, or a line saying it was busy past
            the timeout, exited first, or has no class of that name in the
            new code.
        error: the traceback text of the import when the module failed to
            import (then nothing changed and ``moved``/``failed`` are
            empty), else None.
    """

    module: str
    moved: tuple[Pid, ...] = ()
    failed: Mapping[Pid, str] = field(default_factory=lambda: MappingProxyType({}))
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the module imported and every process moved."""
        return self.error is None and not self.failed


class _Move:
    """The system message that moves one process (Rules 2 to 4)."""

    def __init__(self, module: ModuleType, extra: Any, limit: float) -> None:
        self.module = module
        self.extra = extra
        self.limit = limit
        # Invariant: set when the process starts the move; after ``expired``
        # is set it never starts (the move is dropped).
        self.started = asyncio.get_running_loop().create_future()
        self.expired = False

    async def __call__(self, server: Behaviour) -> str | None:
        if self.expired:
            return "timeout"  # its sender gave up: the move is dropped (Rule 4)
        self.started.set_result(None)
        old = type(server)
        new = _same_class(self.module, old)
        if new is None:
            return (f"no class {old.__qualname__} deriving from Behaviour in the new "
                    f"{self.module.__name__}; it runs the old class")
        saved = dict(server.__dict__)
        try:
            server.__class__ = new
            async with asyncio.timeout(self.limit):
                await server.code_change(getattr(old, "version", None), self.extra)
        except BaseException as exc:
            server.__class__ = old
            server.__dict__.clear()
            server.__dict__.update(saved)
            if not isinstance(exc, Exception):
                raise  # killed mid-move: dies on its old class
            if isinstance(exc, TimeoutError):
                return (f"code_change did not return within {self.limit:g}s; it runs "
                        f"the old class")
            return traceback.format_exc()
        return None

    def __repr__(self) -> str:
        return f"reload({self.module.__name__!r}, extra={self.extra!r})"


def _same_class(module: ModuleType, old: type) -> type[Behaviour] | None:
    found: Any = module
    for part in old.__qualname__.split("."):
        found = getattr(found, part, None)
    if isinstance(found, type) and issubclass(found, Behaviour) and found is not old:
        return found
    return None


def _check_module(name: Any) -> ModuleType:
    if not isinstance(name, str) or not name:
        raise BadArgument("module", name, "a module name (str), e.g. 'myapp.workers'")
    if name == "shoal" or name.startswith("shoal."):
        raise BadArgument("module", name, "a module of the application: shoal's own "
                                          "modules are not reloaded")
    module = sys.modules.get(name)
    if module is None:
        raise BadArgument("module", name, "a module already imported")
    if name in sys.builtin_module_names or getattr(module, "__file__", None) is None:
        raise BadArgument("module", name, "a module loaded from a source file, not a "
                                          "built-in or frozen one")
    return module


def _reimport(module: ModuleType) -> tuple[ModuleType, str | None]:
    """Re-execute ``module``; on failure put it back as it was (Rule 1)."""
    name = module.__name__
    saved = dict(module.__dict__)
    cached = saved.get("__cached__")
    if isinstance(cached, str):
        # Bytecode is trusted when the source's size and whole-second mtime
        # match it: an edit of the same size within the second would run the
        # old code. Removing it makes the import compile the source.
        with contextlib.suppress(OSError):
            os.remove(cached)
    importlib.invalidate_caches()
    try:
        return importlib.reload(module), None
    except (Exception, SystemExit):
        error = traceback.format_exc()
        module.__dict__.clear()
        module.__dict__.update(saved)
        sys.modules[name] = module
        return module, error


class Reloader:
    """``Node.reload`` (see the module header).

    Args:
        processes: the node's process table (whose processes move).
        messaging: what queues each move as a system message.
    """

    def __init__(self, processes: ProcessTable, messaging: Messaging) -> None:
        self._processes = processes
        self._messaging = messaging
        self._lock = asyncio.Lock()

    async def reload(self, module: str, extra: Any = None, *,
                     timeout: float = 5.0) -> ReloadResult:
        """Re-import ``module`` and move this node's live processes whose
        class it defines to the new class, each between two of its messages,
        running the new class's ``code_change(old_version, extra)``.

        Args:
            module: the module's name, e.g. ``"myapp.workers"``.
            extra: passed to every ``code_change``.
            timeout: seconds each process has to reach the move (a handler
                in progress finishes first), and then for its
                ``code_change``; a process past it is reported, not killed.

        Returns:
            A :class:`ReloadResult`: the pids moved, the pids that failed
            (each still on its old class) and why, or the import's error.

        Raises:
            BadArgument: ``module`` is not imported, is one of shoal's own,
                is built-in or frozen, or ``timeout`` is not a number > 0.
        """
        seconds = check_timeout(timeout)
        old_module = _check_module(module)
        async with self._lock:
            new_module, error = _reimport(old_module)
            if error is not None:
                log.info("reload of %s failed to import; nothing changed:\n%s",
                         module, error.rstrip())
                return ReloadResult(module=module, error=error)
            targets = [proc.pid for proc in self._processes.all()
                       if proc.alive and type(proc.server).__module__ == module]
            outcomes = await asyncio.gather(
                *(self._move(pid, new_module, extra, seconds) for pid in targets))
        moved = tuple(pid for pid, why in zip(targets, outcomes, strict=True) if why is None)
        failed = {pid: why for pid, why in zip(targets, outcomes, strict=True)
                  if why is not None}
        _log_result(module, moved, failed)
        return ReloadResult(module=module, moved=moved, failed=MappingProxyType(failed))

    async def _move(self, pid: Pid, module: ModuleType, extra: Any,
                    seconds: float) -> str | None:
        move = _Move(module, extra, seconds)
        # Bounded: the wait for its turn (``seconds``), then its code_change
        # (``seconds``, cut by the move itself).
        sent = asyncio.ensure_future(
            self._messaging.system(pid, move, timeout=seconds + seconds + 1.0))
        try:
            await asyncio.wait([sent, move.started], timeout=seconds,
                               return_when=asyncio.FIRST_COMPLETED)
            if not move.started.done() and not sent.done():
                move.expired = True  # Rule 4: it never starts now
                return (f"timeout: busy for more than {seconds:g}s; not moved, it runs "
                        f"the old class")
            result: str | None = await sent
            return result
        except NoSuchProcess:
            return "exited before it could move"
        except ProcessExited:
            return "exited while moving (killed during its code_change)"
        except CallTimeout:
            return f"timeout: its move did not finish within {seconds + seconds + 1.0:g}s"
        except ShoalError as exc:  # the process is gone in some other way
            return f"not moved: {exc}"
        finally:
            if not sent.done():
                sent.cancel()


def _log_result(module: str, moved: tuple[Pid, ...], failed: dict[Pid, str]) -> None:
    def some(pids: list[str]) -> str:
        more = len(pids) - _LOGGED_PIDS
        return ", ".join(pids[:_LOGGED_PIDS]) + (f" and {more} more" if more > 0 else "")

    failures = [f"{pid} ({why.strip().splitlines()[-1]})" for pid, why in failed.items()]
    log.info("reloaded %s: %d process(es) moved%s; %d failed%s", module, len(moved),
             f" [{some([str(pid) for pid in moved])}]" if moved else "", len(failed),
             f" [{some(failures)}]" if failed else "")
