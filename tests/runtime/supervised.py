"""Workers and helpers shared by the supervisor tests.

Every ``Worker`` writes what happens to it (start, terminate begun and
ended) into a ``Recorder`` the test holds, so a test waits on those entries
instead of sleeping.
"""

from __future__ import annotations

import asyncio
from typing import Any

from runtime_servers import Recorder

import shoal

__all__ = ["Recorder", "Worker", "live_pids", "spec", "started"]


class Worker(shoal.GenServer):
    """A supervised worker: casts ``"crash"`` (raise), ``("stop", reason)``;
    calls return the request; ``hang`` makes ``terminate`` never finish."""

    async def init(self, rec: Recorder, name: str, *extra: Any, fail: bool = False,
                   hang: bool = False, trap: bool = False) -> None:
        if fail:
            raise ValueError(f"{name} refuses to start")
        self.rec, self.name, self.hang, self.extra = rec, name, hang, extra
        self.trap_exit = trap
        rec.add("start", name, self.pid, extra)

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if request == "extra":
            return list(self.extra)
        if isinstance(request, asyncio.Event):  # crash once the test sets it
            await request.wait()
            raise ValueError(f"{self.name} crashed on purpose")
        return request

    async def handle_cast(self, request: Any) -> None:
        if request == "crash":
            raise ValueError(f"{self.name} crashed on purpose")
        if isinstance(request, tuple) and request[0] == "stop":
            self.stop(request[1])

    async def terminate(self, reason: shoal.Reason) -> None:
        self.rec.add("terminate", self.name, self.pid, reason)
        if self.hang:
            await asyncio.Event().wait()
        self.rec.add("terminated", self.name, self.pid, reason)


def spec(rec: Recorder, child_id: str, **options: Any) -> shoal.ChildSpec:
    """A child spec of a Worker called ``child_id`` (its id too)."""
    kwargs = {k: options.pop(k) for k in ("fail", "hang", "trap") if k in options}
    return shoal.ChildSpec(child_id, Worker, args=(rec, child_id), kwargs=kwargs, **options)


def started(rec: Recorder, name: str) -> list[shoal.Pid]:
    """Pids ``name`` started as, in order."""
    return [item[2] for item in rec.of("start") if item[1] == name]


async def live_pids(node: shoal.Node, sup: shoal.Pid) -> dict[str | None, shoal.Pid | None]:
    """Child id -> pid (None when not running), from ``which_children``."""
    return {c.id: c.pid for c in await shoal.supervisor.which_children(node, sup)}
