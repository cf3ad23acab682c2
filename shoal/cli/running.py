"""``shoal run``: host a node in this OS process until told to stop.

The application is named ``module:function``; the function is awaited with
the started node and sets it up (spawns processes, joins groups). The node
then serves until SIGTERM or SIGINT, and stops in the order of G4: leave
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

__all__ = ["EXIT_FENCED", "dump_node", "load_app", "run_node"]

log = logging.getLogger("shoal")

EXIT_FENCED = 3
"""Exit status of ``shoal run`` when the node fenced itself."""


def load_app(spec: str) -> Callable[[shoal.Node], Awaitable[Any]]:
    """Resolve ``module:function`` to an async function taking a Node.

    Raises:
        BadArgument: (argument ``app``) the spec is malformed, the module
            cannot be imported, it has no such function, or the function is
            not async; the message says which.
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
    if not inspect.iscoroutinefunction(func):
        raise shoal.BadArgument("app", spec, f"an async function taking the node: {attr} in "
                                             f"{module_name} is not one")
    return func  # type: ignore[no-any-return]


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


async def run_node(spec: str, **node_options: Any) -> int:
    """Start a node, run the app's setup, serve until SIGTERM/SIGINT, stop.

    Returns:
        0 after a clean stop, 1 if the app's setup raised, :data:`EXIT_FENCED`
        if the node fenced itself.
    """
    app = load_app(spec)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    async with shoal.Node(**node_options) as node:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: log.info("%s", dump_node(node)))
        try:
            await app(node)
        except Exception:
            log.exception("the application's setup %s raised; stopping", spec)
            return 1
        host, port = node.address or ("-", 0)
        print(f"shoal node {node.name} ready on {host}:{port} "
              f"(creation {node.creation})", flush=True)
        waits = [loop.create_task(stop.wait()), loop.create_task(node.wait_fenced())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if node.fenced is not None:
            return EXIT_FENCED  # the reason is logged, in one line, by the fence
        log.info("node %s stopping (signal)", node.name)
    return 0
