"""The program a ``LocalCluster`` node runs: test workers and a control server.

Each node process runs ``shoal run shoal.testing.agent:setup``. ``setup``
spawns a ``Control`` process and joins it to the group named after the node
in the scope ``shoal-testing``; the test drives the node by calling it, over
shoal's own distribution. Workers:

- ``Echo``: answers ``request`` with ``[node name, request]``; ``["sleep", s]``
  sleeps ``s`` seconds first; ``"crash"`` raises; ``"sys.exit"`` calls
  ``sys.exit(3)``; ``"os._exit"`` ends the node's OS process at once;
  ``"pid"`` answers its pid.
- ``Recorder``: keeps what ``handle_info`` received (messages, Down, Exit);
  ``"received"`` answers them as text; traps exits.

``Control`` commands (``cluster.control(name, command, *args)``): ``spawn``,
``kill``, ``members``, ``group_call``, ``call``, ``call_many`` (a list of
``[delay, pid]``, request, timeout: each call starts ``delay`` seconds from
now, all concurrently; one ``call`` answer per pid), ``creation``, ``link``
(two pids, one local), ``alive`` (a local pid) and ``register_global`` (a
name, a local pid: ``["ok"]`` or ``["error", type, message]``). For large
groups: ``join``
(scope, group, local pids; answers once the store has them), ``count``
(scope, group: how many members this node sees) and ``wait_count`` (scope,
group, count, timeout: wait until this node sees at least ``count``
members; answers ``["ok", t]`` with ``t`` the ``time.monotonic()`` at which
it saw them, or ``["timeout", seen]``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import shoal

__all__ = ["CONTROL_SCOPE", "Control", "Echo", "Recorder", "setup", "wait_count"]

CONTROL_SCOPE = "shoal-testing"


class Echo(shoal.GenServer):
    """A worker answering ``[node, request]`` (see the module docstring)."""

    async def init(self) -> None:
        self.served = 0

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        self.served += 1
        if request == "crash":
            raise RuntimeError("crash requested")
        if request == "sys.exit":
            sys.exit(3)  # ends this process only (a crash), not the node
        if request == "os._exit":
            os._exit(5)  # ends the whole OS process at once, as kill -9 would
        if request == "pid":
            return self.pid
        if request == "served":
            return self.served
        if isinstance(request, list) and len(request) == 2 and request[0] == "sleep":
            await asyncio.sleep(float(request[1]))
        return [self.node.name, request]

    async def handle_cast(self, request: Any) -> None:
        self.served += 1


class Recorder(shoal.GenServer):
    """Records what arrives in ``handle_info``; traps exits."""

    async def init(self) -> None:
        self.trap_exit = True
        self.received: list[str] = []

    async def handle_info(self, message: Any) -> None:
        if isinstance(message, shoal.Down):
            self.received.append(f"down {message.pid} {message.reason}")
        elif isinstance(message, shoal.Exit):
            self.received.append(f"exit {message.pid} {message.reason}")
        else:
            self.received.append(f"info {message!r}")

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if request == "received":
            return list(self.received)
        if isinstance(request, list) and request[:1] == ["monitor"]:
            self.monitor(request[1])
            return "ok"
        if isinstance(request, list) and request[:1] == ["link"]:
            self.link(request[1])
            return "ok"
        raise shoal.BadRequest(request)


KINDS: dict[str, type[shoal.GenServer]] = {"echo": Echo, "recorder": Recorder}


async def _call(node: shoal.Node, pid: shoal.Pid, request: Any, timeout: float,
                delay: float = 0.0) -> list[Any]:
    if delay > 0:
        await asyncio.sleep(delay)  # the scenario's start time, not a synchronisation
    try:
        return ["ok", await node.call(pid, request, timeout)]
    except shoal.ShoalError as exc:
        return ["error", type(exc).__name__, str(exc)]


class Control(shoal.GenServer):
    """Carries out a test's commands on its node."""

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if not isinstance(request, list) or not request:
            raise shoal.BadRequest(request)
        command, args = request[0], request[1:]
        node = self.node
        if command == "spawn":
            kind, group, count, scope = args
            pids = [await node.spawn(KINDS[kind]) for _ in range(count)]
            if group:
                await node.scope(scope).join(group, pids)
            return pids
        if command == "kill":
            node.kill(args[0])
            return "ok"
        if command == "members":
            scope, group = args
            return (await node.open_scope(scope)).get_members(group)
        if command == "group_call":
            group, req, timeout, strategy, idempotent = args
            try:
                return ["ok", await node.groups.call(group, req, timeout=timeout,
                                                     strategy=strategy,
                                                     idempotent=idempotent)]
            except shoal.ShoalError as exc:
                return ["error", type(exc).__name__, str(exc)]
        if command == "call":
            pid, req, timeout = args
            try:
                return ["ok", await node.call(pid, req, timeout)]
            except shoal.ShoalError as exc:
                return ["error", type(exc).__name__, str(exc)]
        if command == "call_many":  # calls at set moments, for crossing first calls
            starts, req, timeout = args
            return list(await asyncio.gather(*(_call(node, pid, req, timeout, delay)
                                               for delay, pid in starts)))
        if command == "register_global":  # ["ok"] or ["error", type, message]
            name, pid = args
            try:
                await node.register_global(name, pid)
            except shoal.ShoalError as exc:
                return ["error", type(exc).__name__, str(exc)]
            return ["ok"]
        if command == "creation":
            return node.creation
        if command == "link":
            node.link(args[0], args[1])
            return "ok"
        if command == "alive":
            return node.is_alive(args[0])
        if command == "join":  # answers once the store has the joins
            scope, group, pids = args
            await node.scope(scope).join(group, pids)
            await node.scope(scope).sync(120.0)
            return "ok"
        if command == "count":
            scope, group = args
            return len(node.scope(scope).get_members(group))
        if command == "wait_count":
            return await wait_count(node, *args)
        raise shoal.BadRequest(request)


async def wait_count(node: shoal.Node, scope: str, group: str, count: int,
                     timeout: float) -> list[Any]:
    """Wait until ``node`` sees ``count`` members of the group.

    Returns:
        ``["ok", monotonic time it saw them]`` or ``["timeout", members seen]``.
    """
    # Counts from the subscription's events rather than re-reading the group
    # on each one: a group of 40,000 members grows by 40,000 events.
    sub = node.scope(scope).subscribe(group, limit=10**7)
    seen = len(sub.members)
    try:
        async with asyncio.timeout(timeout):
            while seen < count:
                event = await sub.get()
                seen += len(event.pids) if event.kind == "join" else -len(event.pids)
    except TimeoutError:
        return ["timeout", seen]
    finally:
        sub.close()
    return ["ok", time.monotonic()]


async def setup(node: shoal.Node) -> None:
    """``shoal run`` entry point of a LocalCluster node.

    ``SHOAL_AGENT_WORKERS="group:count[:kind],..."`` in the environment
    spawns ``count`` workers of ``kind`` (default ``echo``) joined to
    ``group`` (scope ``default``) before the node reports ready, so a test
    can have members on a node its client never connected to.
    """
    control = await node.spawn(Control)
    for spec in filter(None, os.environ.get("SHOAL_AGENT_WORKERS", "").split(",")):
        group, count, kind = [*spec.split(":"), "echo"][:3]
        pids = [await node.spawn(KINDS[kind]) for _ in range(int(count))]
        await node.groups.join(group, pids)
    await node.scope(CONTROL_SCOPE).join(node.name, control)
