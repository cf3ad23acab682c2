"""Liveness and readiness of a node, as ``/healthz`` and ``/readyz`` report them.

Owns: the loop-lag probe's task and its two figures, and the "application
set up" flag; reads the rest of readiness from the node's parts.

Rules:

- Rule 1 (liveness): a probe task asks to wake every ``LAG_INTERVAL``
  seconds and records how late it woke (its *lag*) and when. The node is
  healthy while the last lag and the time since the probe last ran are both
  within ``bound``. The HTTP server runs on the same loop, so a loop blocked
  for good cannot answer at all (the probe's client times out, which a
  Kubernetes liveness probe counts as a failure); a loop that was blocked
  past the bound and runs again answers 503 until the probe has run on
  time once more: the probe's timer is due when the loop wakes, and runs
  before the request that waited in the socket is handled.
- Rule 2 (readiness): ready only when the node is started (registered in
  the store), its application said it is set up (:meth:`Readiness.set_ready`,
  which ``shoal run`` calls once the setup function returned or the top
  supervisor started), it is not stopping or fenced, and the store has
  confirmed this node's joins (its writes are flushed). Each check that
  fails is named in the answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["DEFAULT_LAG_BOUND", "LAG_INTERVAL", "LoopProbe", "Readiness"]

LAG_INTERVAL = 0.1
"""Seconds between two runs of the loop-lag probe."""
DEFAULT_LAG_BOUND = 1.0
"""Default longest loop lag (seconds) ``/healthz`` accepts (``SHOAL_HEALTH_LAG``)."""


class LoopProbe:
    """Measures the event loop's lateness (Rule 1)."""

    def __init__(self, bound: float = DEFAULT_LAG_BOUND) -> None:
        self.bound = bound
        # Invariant: lag >= 0, the lateness of the probe's last wake-up;
        # beat is the time.monotonic() of that wake-up.
        self.lag = 0.0
        self.beat = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start probing on the running loop."""
        self.beat = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="shoal-loop-probe")

    async def _run(self) -> None:
        while True:
            expected = time.monotonic() + LAG_INTERVAL
            await asyncio.sleep(LAG_INTERVAL)
            now = time.monotonic()
            self.lag, self.beat = max(0.0, now - expected), now

    def problem(self) -> str | None:
        """Why the loop is unhealthy, or None."""
        since = time.monotonic() - self.beat
        if self.lag > self.bound:
            return f"event loop lag {self.lag:.3f}s exceeds {self.bound:g}s"
        if since > self.bound + LAG_INTERVAL:
            return f"event loop probe last ran {since:.3f}s ago (bound {self.bound:g}s)"
        return None

    async def stop(self) -> None:
        """Stop probing."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class Readiness:
    """Whether a node should receive traffic (Rule 2).

    Args:
        state: answers the node's lifecycle problem now (``"starting"``,
            ``"draining"``, ``"fenced: ..."``) or None when it is running.
        confirmed: waits up to the given seconds for the store to confirm
            the node's own memberships; whether it did.
    """

    CONFIRM_WAIT = 1.0
    """Seconds ``/readyz`` waits for the store to confirm the joins."""

    def __init__(self, state: Callable[[], str | None],
                 confirmed: Callable[[float], Awaitable[bool]]) -> None:
        self._state = state
        self._confirmed = confirmed
        # Invariant: set once, by set_ready; never cleared.
        self.app_ready = False

    def set_ready(self) -> None:
        """The application finished setting the node up."""
        self.app_ready = True

    async def problems(self) -> list[str]:
        """What keeps the node from being ready; empty when it is."""
        state = self._state()
        if state is not None:
            return [state]
        if not self.app_ready:
            return ["the application is not set up yet"]
        if not await self._confirmed(self.CONFIRM_WAIT):
            return ["the store has not confirmed this node's group joins"]
        return []
