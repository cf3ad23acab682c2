"""Call deadlines without a timer per call.

Every call has a deadline (G6). A timer per call (``loop.call_later`` plus
``cancel``) costs about 2.8 µs, as much as the rest of a local call. Calls
with the same timeout expire in the order they were made, so deadlines are
kept in FIFO buckets keyed by the timeout rounded to the millisecond, with
one timer per bucket armed for its oldest entry.

Rules:

- Rule 1: an entry whose future is already done (answered, failed,
  cancelled) is dropped without effect, whenever it is met.
- Rule 2: completed entries are pruned from the head on every add, and a
  bucket is compacted when it grows past twice its live size, so memory
  stays proportional to the calls actually in flight.
- Rule 3: within a bucket deadlines are ordered to within one millisecond
  (the rounding), so a call may time out up to 1 ms late; never early.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from shoal.errors import CallTimeout

__all__ = ["Deadlines"]

_MIN_COMPACT = 4096


class _Bucket:
    __slots__ = ("entries", "limit", "timer")

    def __init__(self) -> None:
        # Invariant: (deadline, future, target, timeout), in insertion order.
        self.entries: deque[tuple[float, asyncio.Future[Any], Any, float]] = deque()
        # Invariant: timer is armed iff entries is non-empty.
        self.timer: asyncio.TimerHandle | None = None
        self.limit = _MIN_COMPACT


class Deadlines:
    """Fails call futures with :class:`~shoal.CallTimeout` at their deadline."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._time = loop.time
        self._buckets: dict[int, _Bucket] = {}

    def add(self, future: asyncio.Future[Any], timeout: float, target: Any) -> None:
        """Fail ``future`` with ``CallTimeout(target, timeout)`` unless it is
        done within ``timeout`` seconds."""
        key = int(timeout * 1000)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket()
        entries = bucket.entries
        if entries and entries[0][1].done():
            entries.popleft()
            while entries and entries[0][1].done():
                entries.popleft()
        entries.append((self._time() + timeout, future, target, timeout))
        if bucket.timer is None:
            bucket.timer = self._loop.call_at(entries[0][0], self._fire, key)
        elif len(entries) > bucket.limit:
            live = [entry for entry in entries if not entry[1].done()]
            entries.clear()
            entries.extend(live)
            bucket.limit = max(_MIN_COMPACT, 2 * len(live))

    def _fire(self, key: int) -> None:
        bucket = self._buckets.get(key)
        if bucket is None:
            return
        bucket.timer = None
        entries = bucket.entries
        now = self._loop.time()
        while entries:
            deadline, future, target, timeout = entries[0]
            if future.done():
                entries.popleft()
            elif deadline <= now:
                entries.popleft()
                future.set_exception(CallTimeout(target, timeout))
            else:
                break
        if entries:
            bucket.timer = self._loop.call_at(entries[0][0], self._fire, key)
        else:
            del self._buckets[key]

    def pending(self) -> int:
        """Entries held now, done or not (for leak checks and statistics)."""
        return sum(len(b.entries) for b in self._buckets.values())

    def close(self) -> None:
        """Cancel every timer (the node is stopping)."""
        for bucket in self._buckets.values():
            if bucket.timer is not None:
                bucket.timer.cancel()
        self._buckets.clear()
