"""``shoal run``: host a node in this OS process until told to stop.

The application is named ``module:attribute``, and is one of:

- an async function, awaited with the started node: it sets the node up
  (spawns processes, joins groups);
- a :class:`shoal.Supervisor` subclass, or a plain function returning one
  or a :class:`shoal.SupervisorSpec` (called once, before the node starts):
  the node starts it as its top supervisor, which starts the application's
  children in order. When the top supervisor gives up (its restart
  intensity was exceeded, after every level below it gave up) or exits for
  any other reason, the node stops and the command exits with
  :data:`EXIT_SUPERVISOR`, so the OS-level supervisor (systemd,
  Kubernetes) sees the failure and decides what to do.

The node then serves until SIGTERM or SIGINT (or ``shoal drain NODE``, which
exits 0 as a signal does), and stops in the order of G4: leave
every group and wait until the store shows it, drain calls in flight, run
every ``terminate``, end the store session. SIGUSR1 logs a dump of the
node's processes and asyncio tasks, without stopping anything.

A node that fences itself (its store session ended and a newer incarnation
holds its name: it must never serve again) stops at once and the command
exits with :data:`EXIT_FENCED`; whether to start it again is the
supervisor's decision.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import shoal
from shoal.cli.watch import SourceWatcher
from shoal.runtime.checks import MAX_TIMEOUT

__all__ = ["EXIT_FENCED", "EXIT_SUPERVISOR", "App", "dump_node", "load_app", "run_node"]

log = logging.getLogger("shoal")

EXIT_FENCED = 3
"""Exit status of ``shoal run`` when the node fenced itself."""
EXIT_SUPERVISOR = 4
"""Exit status of ``shoal run`` when the application's top supervisor exited
(it gave up: too many restarts)."""

App = Callable[[shoal.Node], Awaitable[shoal.Pid | None]]
"""What :func:`load_app` returns: sets the node up; returns the top
supervisor's pid, or None for a setup function."""


def load_app(spec: str) -> App:
    """Resolve ``module:attribute`` to what sets a node up (module header).

    Raises:
        BadArgument: (argument ``app``) the spec is malformed, the module
            cannot be imported, it has no such attribute, the attribute is
            none of the accepted kinds, or a factory returned something else
            than a supervisor; the message says which.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise shoal.BadArgument("app", spec, "'module:function', e.g. 'myapp:setup'")
    if "" not in sys.path:
        sys.path.insert(0, "")  # as `python -m` does: the working directory first
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise shoal.BadArgument("app", spec, f"an importable module ({exc})") from None
    func = getattr(module, attr, None)
    if func is None:
        raise shoal.BadArgument("app", spec, f"a function of the module: no function {attr} "
                                             f"in {module_name}")
    if inspect.iscoroutinefunction(func):
        async def setup(node: shoal.Node) -> None:
            await func(node)
        return setup
    wrong = shoal.BadArgument("app", spec, f"an async function taking the node, a "
                                           f"shoal.Supervisor subclass, or a function without "
                                           f"arguments returning one or a shoal.SupervisorSpec: "
                                           f"{attr} in {module_name} is not one")
    top: Any = func
    if callable(top) and not isinstance(top, type):
        if _required_arguments(top):
            raise wrong
        try:
            top = top()
        except Exception as exc:
            raise shoal.BadArgument("app", spec, f"a factory that returns a supervisor: "
                                                 f"{attr}() raised {exc!r}") from exc
    if isinstance(top, type) and issubclass(top, shoal.Supervisor):
        tree: type[shoal.Supervisor] = top
        args: tuple[Any, ...] = ()
    elif isinstance(top, shoal.SupervisorSpec):
        tree, args = shoal.Supervisor, (top,)
    else:
        raise wrong

    async def start_tree(node: shoal.Node) -> shoal.Pid:
        return await node.spawn(tree, *args)
    return start_tree


def _required_arguments(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False  # a builtin without a signature: calling it tells
    return any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                                   p.KEYWORD_ONLY) for p in params)


def dump_node(node: shoal.Node) -> str:
    """A text dump of a node's processes and the event loop's tasks."""
    lines = [f"node {node.name} (creation {node.creation}): {node.statistics()}"]
    for pid in node.processes():
        proc = node.local_process(pid)
        if proc is not None:
            lines.append(f"  {pid} {type(proc.server).__name__} queued={len(proc.mailbox)} "
                         f"links={len(proc.links)} groups={node.groups_of(pid)}")
    for task in asyncio.all_tasks():
        lines.append(f"  task {task.get_name()}: {task.get_coro()}")
    return "\n".join(lines)


async def run_node(spec: str, *, reload: bool = False, **node_options: Any) -> int:
    """Start a node, run the app's setup, serve until SIGTERM/SIGINT (or a
    ``shoal drain`` of it), stop. With ``reload``, the app's changed modules
    are reloaded in place while it serves (``shoal/cli/watch.py``).

    Returns:
        0 after a clean stop (a signal or a drain), 1 if the app's setup raised (or its top
        supervisor failed to start), :data:`EXIT_FENCED` if the node fenced
        itself, :data:`EXIT_SUPERVISOR` if the top supervisor exited.
    """
    app = load_app(spec)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    async with shoal.Node(**node_options) as node:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: log.info("%s", dump_node(node)))
        try:
            top = await app(node)
        except Exception:
            log.exception("the application's setup %s raised; stopping", spec)
            return 1
        node.set_ready()  # /readyz: 200 from now on while it serves
        host, port = node.address or ("-", 0)
        print(f"shoal node {node.name} ready on {host}:{port} "
              f"(creation {node.creation})", flush=True)
        waits = [loop.create_task(stop.wait()), loop.create_task(node.wait_fenced()),
                 loop.create_task(node.wait_stopped())]
        if top is not None:
            waits.append(loop.create_task(node.wait_exit(top, MAX_TIMEOUT)))
        if reload:
            watcher = SourceWatcher(spec.partition(":")[0])
            waits.append(loop.create_task(watcher.run(node), name="shoal-reload-watcher"))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if node.fenced is not None:
            return EXIT_FENCED  # the reason is logged, in one line, by the fence
        if node.stopping and not stop.is_set():
            log.info("node %s stopping (drained)", node.name)  # the drain logged by whom
            return 0
        if top is not None and not stop.is_set() and not node.is_alive(top):
            # The supervisor logged why it gave up; this says what follows.
            log.error("node %s stopping: its top supervisor %s exited", node.name, top)
            return EXIT_SUPERVISOR
        log.info("node %s stopping (signal)", node.name)
    return 0
