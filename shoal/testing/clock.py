"""A manual clock for tests: time that moves only when a test says so.

Owns :class:`ManualClock`, a clock and sleep pair of the types adapters take
for time (``Clock`` and ``Sleep`` of :mod:`shoal.store.base`). MemoryStore
takes both, so TTL expiry is tested without sleeping; the contract suite
drives it through ``StoreHarness.advance``.

Rule: a sleeper wakes when the clock reaches its deadline, in deadline
order, and :meth:`ManualClock.advance` moves in small steps and yields to the
event loop between them, so a keepalive that is due gets to run before a
deadline it would have pushed back is checked (as in real time).
"""

from __future__ import annotations

import asyncio

__all__ = ["ManualClock"]


class ManualClock:
    """A clock and sleep pair that only move when told to.

    Pass ``clock`` as the clock and ``clock.sleep`` as the sleep.

    Args:
        start: the initial time in seconds.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        # Invariant: every unfinished sleeper's deadline is above ``now``.
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        """Returns: the current manual time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has been advanced by ``seconds``.

        Args:
            seconds: how long to wait in manual time; ``<= 0`` only yields.
        """
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, fut))
        await fut

    async def advance(self, seconds: float, *, steps: int = 20) -> None:
        """Move time forward in ``steps`` equal steps, letting woken tasks run.

        Args:
            seconds: total time to add.
            steps: how many increments (keepalives must get a turn between them).
        """
        for _ in range(steps):
            self.now += seconds / steps
            due = sorted((t, i, f) for i, (t, f) in enumerate(self._sleepers) if t <= self.now)
            self._sleepers = [(t, f) for t, f in self._sleepers if t > self.now]
            for _, _, fut in due:
                if not fut.done():
                    fut.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)
