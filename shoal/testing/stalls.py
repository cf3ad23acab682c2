"""How long the event loop was held: the longest gap between a ticker's ticks.

A task that sleeps 5 ms at a time records the longest interval between two
of its wake-ups; anything that holds the loop (a long synchronous piece of
work, a full garbage collection) shows up as a long gap. Used by the scale
benchmark (``bench/scale.py``) and the re-sync tests; usable in any test.
"""

from __future__ import annotations

import asyncio

__all__ = ["LoopStalls"]

TICK = 0.005  # seconds between ticks


class LoopStalls:
    """Start measuring on construction (inside a running loop); ``stop``
    returns the longest gap seen, in seconds."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._stop = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not self._stop.is_set():
            await asyncio.sleep(TICK)
            now = loop.time()
            self.longest = max(self.longest, now - last)
            last = now

    async def stop(self) -> float:
        self._stop.set()
        await self._task
        return self.longest
