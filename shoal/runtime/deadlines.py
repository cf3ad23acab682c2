"""Call deadlines without a timer per call.

Every call has a deadline (G6). A timer per call (``loop.call_later`` plus
``cancel``) costs about 2.8 µs, as much as the rest of a local call, and
even a sorted queue of deadlines costs a clock read and a tuple per call.
So calls are kept in *generations*: each timeout value has a bucket whose
``current`` list takes every new call (one append); a timer ticks every
``tick`` seconds, closes the current generation, keeping only the calls
still pending, and fails every pending call of generations closed at least
``timeout`` seconds ago.

Rules:

- Rule 1 (never early): a call made before a generation closed at time
  ``c`` is failed no sooner than ``c + timeout``, which is after its own
  deadline.
- Rule 2 (bounded lateness): a call is failed at most two ticks after its
  deadline; ``tick`` is 1/200 of the timeout, between 1 ms and 25 ms (a 5 s
  call times out at most 50 ms late, a 200 ms call at most 2 ms late).
- Rule 3 (bounded memory): closing a generation drops the calls already
  answered, so what is kept is the calls in flight plus one tick of new ones.
- Rule 4: a bucket's timeout is the caller's timeout rounded *up* to the
  millisecond (rule 1 holds), so computed timeouts share buckets.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Any

from shoal.errors import CallTimeout

__all__ = ["Deadlines"]

_MIN_TICK = 0.001
_MAX_TICK = 0.025


class _Bucket:
    __slots__ = ("current", "generations", "key", "tick", "timeout", "timer")

    def __init__(self, key: int) -> None:
        self.key = key
        self.timeout = key / 1000
        self.tick = min(max(self.timeout / 200, _MIN_TICK), _MAX_TICK)
        # Invariant: calls made since the last tick, answered or not.
        self.current: list[tuple[asyncio.Future[Any], Any]] = []
        # Invariant: (close time, calls pending at close), oldest first.
        self.generations: deque[tuple[float, list[tuple[asyncio.Future[Any], Any]]]] = deque()
        # Invariant: armed iff current or generations is non-empty.
        self.timer: asyncio.TimerHandle | None = None


class Deadlines:
    """Fails call futures with :class:`~shoal.CallTimeout` after their timeout."""

    def __init__(self) -> None:
        # Set by start(); no deadline is added before it.
        self._loop: asyncio.AbstractEventLoop
        self._buckets: dict[int, _Bucket] = {}
        # A cache from the exact timeout to its bucket, so the hot path skips
        # the rounding. Invariant: every value is in _buckets.
        self.by_timeout: dict[float, _Bucket] = {}

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the timers on ``loop`` (the node's, when it starts)."""
        self._loop = loop

    def add(self, future: asyncio.Future[Any], timeout: float, target: Any) -> None:
        """Fail ``future`` with ``CallTimeout(target, timeout)`` unless it is
        done within ``timeout`` seconds (see the rules for the precision)."""
        bucket = self.by_timeout.get(timeout)
        if bucket is None:
            bucket = self._bucket(timeout)
        bucket.current.append((future, target))
        if bucket.timer is None:
            bucket.timer = self._loop.call_later(bucket.tick, self._tick, bucket)

    def _bucket(self, timeout: float) -> _Bucket:
        key = max(1, math.ceil(timeout * 1000))
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(key)
        if len(self.by_timeout) > 1024:
            self.by_timeout.clear()  # computed timeouts (retries) must not pile up
        self.by_timeout[timeout] = bucket
        return bucket

    def _tick(self, bucket: _Bucket) -> None:
        now = self._loop.time()
        if bucket.current:
            live = [entry for entry in bucket.current if not entry[0].done()]
            bucket.current = []
            if live:
                bucket.generations.append((now, live))
        generations = bucket.generations
        timeout = bucket.timeout
        while generations and generations[0][0] + timeout <= now:
            _, entries = generations.popleft()
            for future, target in entries:
                if not future.done():
                    future.set_exception(CallTimeout(target, timeout))
        if generations:
            bucket.timer = self._loop.call_later(bucket.tick, self._tick, bucket)
        else:
            bucket.timer = None
            # Nothing pending: forget the bucket (its cache entries too), so
            # one-off timeouts do not accumulate.
            del self._buckets[bucket.key]
            self.by_timeout = {t: b for t, b in self.by_timeout.items() if b is not bucket}

    def pending(self) -> int:
        """Calls held now, answered or not (for leak checks and statistics)."""
        return sum(len(b.current) + sum(len(g) for _, g in b.generations)
                   for b in self._buckets.values())

    def close(self) -> None:
        """Cancel every timer (the node is stopping)."""
        for bucket in self._buckets.values():
            if bucket.timer is not None:
                bucket.timer.cancel()
        self._buckets.clear()
        self.by_timeout.clear()
