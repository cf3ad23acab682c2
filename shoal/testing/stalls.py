"""How long the event loop was held: the longest gap between a ticker's ticks.

A task that sleeps 5 ms at a time records the longest interval between two
of its wake-ups; anything that holds the loop (a long synchronous piece of
work, a full garbage collection) shows up as a long gap. Used by the scale
benchmark (``bench/scale.py``) and the re-sync tests; usable in any test.

On a shared host a gap also holds the time the process waited for a core;
``longest_cpu`` is the longest gap counted in this thread's CPU time (the
work that held the loop, whatever the host's load).
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["LoopStalls"]

TICK = 0.005  # seconds between ticks


class LoopStalls:
    """Start measuring on construction (inside a running loop); ``stop``
    returns the longest gap seen, in seconds."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.longest_cpu = 0.0
        self._stop = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last, last_cpu = loop.time(), time.thread_time()
        while not self._stop.is_set():
            await asyncio.sleep(TICK)
            now, cpu = loop.time(), time.thread_time()
            self.longest = max(self.longest, now - last)
            self.longest_cpu = max(self.longest_cpu, cpu - last_cpu)
            last, last_cpu = now, cpu

    async def stop(self) -> float:
        self._stop.set()
        await self._task
        return self.longest
