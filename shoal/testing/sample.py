"""A sample service for chaos runs and ``shoal demo``: a supervised group of workers.

``shoal run shoal.testing.sample:service`` starts :func:`service`'s
supervisor: :data:`WORKERS` workers in group ``"service"`` (scope
``"default"``), restarted one for one. Each worker answers ``[node_name,
request]``; the request ``"crash"`` makes it raise (its supervisor starts
a new one), ``["sleep", seconds]`` makes it sleep first (a slow handler).
Its ``terminate`` logs one INFO line ``terminate ran for <pid>``, so a
test can tell from a node's log which processes ran ``terminate`` when
the node stopped gracefully (G4).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import shoal

__all__ = ["GROUP", "TERMINATE_LINE", "WORKERS", "SampleCrash", "Worker", "service"]

GROUP = "service"
WORKERS = 4
TERMINATE_LINE = "terminate ran for"
"""The start of the line each worker logs in ``terminate`` (then its pid)."""

log = logging.getLogger("shoal.testing.sample")


class SampleCrash(Exception):
    """What a worker raises on the request ``"crash"``."""


class Worker(shoal.GenServer):
    """Answers ``[node_name, request]``; see the module header."""

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if request == "crash":
            raise SampleCrash(f"{self.pid} crashed on request")
        if isinstance(request, list) and len(request) == 2 and request[0] == "sleep" \
                and isinstance(request[1], (int, float)) and 0 <= request[1] <= 60:
            await asyncio.sleep(request[1])
        return [self.node.name, request]

    async def terminate(self, reason: shoal.Reason) -> None:
        log.info("%s %s", TERMINATE_LINE, self.pid)


def service() -> shoal.SupervisorSpec:
    """The supervisor spec ``shoal run`` starts: the workers, one for one,
    with room for many restarts (a chaos run crashes workers on purpose)."""
    children = [shoal.ChildSpec(f"worker-{i}", Worker, groups=[("default", GROUP)])
                for i in range(WORKERS)]
    return shoal.SupervisorSpec(children=children, strategy="one_for_one", intensity=100,
                                period=1.0)
