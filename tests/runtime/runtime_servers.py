"""Behaviours and a recorder shared by the runtime tests.

``Probe`` runs any function a call carries (``node.call(pid, fn)`` runs
``fn(server, caller)`` inside the process), so a test states what the
handler does right where it matters. Everything a probe receives or does
on exit goes to a ``Recorder`` the test can wait on without sleeping.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import shoal

WAIT = 2.0  # seconds any single wait in a test may take before it fails


class Recorder:
    """An append-only log with a bounded wait for an entry."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, ...]] = []
        self._changed: asyncio.Future[None] | None = None

    def add(self, *item: Any) -> None:
        self.items.append(item)
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [item for item in self.items if item[0] == kind]

    async def wait(self, match: Callable[[tuple[Any, ...]], bool],
                   timeout: float = WAIT) -> tuple[Any, ...]:
        """The first entry matching ``match``, waiting up to ``timeout``."""
        async with asyncio.timeout(timeout):
            while True:
                for item in self.items:
                    if match(item):
                        return item
                self._changed = asyncio.get_running_loop().create_future()
                await self._changed

    async def wait_for(self, kind: str, pid: shoal.Pid | None = None,
                       timeout: float = WAIT) -> tuple[Any, ...]:
        return await self.wait(
            lambda item: item[0] == kind and (pid is None or item[1] == pid), timeout)


class Probe(shoal.GenServer):
    """Runs the function a call carries; records casts, infos and terminate."""

    async def init(self, rec: Recorder | None = None, *, trap: bool = False) -> None:
        self.rec = rec if rec is not None else Recorder()
        self.trap_exit = trap
        self.handled = 0
        self.kept: list[shoal.Caller] = []

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        self.handled += 1
        if callable(request):
            result = request(self, caller)
            if inspect.isawaitable(result):
                result = await result
            return result
        return request

    async def handle_cast(self, request: Any) -> None:
        self.rec.add("cast", self.pid, request)
        if callable(request):
            result = request(self)
            if inspect.isawaitable(result):
                await result

    async def handle_info(self, message: Any) -> None:
        self.rec.add("info", self.pid, message)
        if callable(message):
            result = message(self)
            if inspect.isawaitable(result):
                await result

    async def terminate(self, reason: shoal.Reason) -> None:
        self.rec.add("terminate", self.pid, reason)


def crash(message: str = "boom") -> Callable[..., Any]:
    """A call/cast/info body that raises ValueError(message)."""

    def explode_in_handler(server: Any, *_: Any) -> Any:
        raise ValueError(message)

    return explode_in_handler


def stop(reason: shoal.Reason = "normal", **kwargs: Any) -> Callable[..., Any]:
    """A call/cast/info body that stops the process with ``reason``."""

    def stop_now(server: Any, *_: Any) -> Any:
        raise shoal.Stop(reason, **kwargs)

    return stop_now


def block(release: asyncio.Event, started: asyncio.Event | None = None,
          result: Any = "released") -> Callable[..., Any]:
    """A call body that waits for ``release`` (setting ``started`` first)."""

    async def blocked(server: Any, *_: Any) -> Any:
        if started is not None:
            started.set()
        await release.wait()
        return result

    return blocked
