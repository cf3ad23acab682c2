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
- Rule 3 (bounded memory): a generation is a dict future -> target that
  :meth:`Deadlines.add` returns; a caller that stops waiting removes its
  entry at once (``calls.pop(future, None)``), and closing a generation
  drops what is answered and was not removed, so what is kept is the calls
  in flight plus one tick of new ones.
- Rule 4: a bucket's timeout is the caller's timeout rounded *up* to the
  millisecond (rule 1 holds), so computed timeouts share buckets.
- Rule 5 (nothing kept after the answer): the hot paths remove their entry
  when the call ends, so an answered call's future is freed then, not a
  tick later. Kept until the tick, every call's future and entry outlived
  the cyclic collector's young generation and were promoted, and the
  collections they caused cost a local call as much as a tenth of its time.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Any

from shoal.errors import CallTimeout
from shoal.runtime.checks import MAX_TIMEOUT

__all__ = ["Deadlines"]

# No timeout: a float no caller can pass (it is this module's own object).
_NONE = float("nan")
_MIN_TICK = 0.001
_MAX_TICK = 0.025


class _Bucket:
    __slots__ = ("current", "generations", "key", "tick", "timeout", "timer")

    def __init__(self, key: int) -> None:
        self.key = key
        self.timeout = key / 1000
        self.tick = min(max(self.timeout / 200, _MIN_TICK), _MAX_TICK)
        # Invariant: calls made since the last tick (future -> target), less
        # those their callers removed; answered ones may remain until the tick.
        self.current: dict[asyncio.Future[Any], Any] = {}
        # Invariant: (close time, calls pending at close), oldest first; a
        # generation's dict is the one its calls were added to (callers
        # remove their entries from it as they end), never empty at close.
        self.generations: deque[tuple[float, dict[asyncio.Future[Any], Any]]] = deque()
        # Invariant: armed iff current or generations is non-empty.
        self.timer: asyncio.TimerHandle | None = None


class Deadlines:
    """Fails call futures with :class:`~shoal.CallTimeout` after their timeout."""

    def __init__(self) -> None:
        # Set by start(); no deadline is added before it.
        self._loop: asyncio.AbstractEventLoop
        self._buckets: dict[int, _Bucket] = {}
        # A cache from the exact timeout to its bucket, so the hot path skips
        # the rounding (and the check: every key is a timeout that passed
        # check_timeout, a float in (0, MAX_TIMEOUT]). Invariant: every value
        # is in _buckets, and armed.
        self.by_timeout: dict[float, _Bucket] = {}
        # The timeout object of the last call add() took, and its bucket: the
        # hot paths compare the caller's timeout by identity (a constant or
        # the default is the same float call after call), which skips the
        # check, the float's hash and the cache lookup. Invariant:
        # last_timeout is _NONE (no caller holds that object) or a key of
        # by_timeout whose value is last_bucket.
        self.last_timeout: float = _NONE
        self.last_bucket: _Bucket | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the timers on ``loop`` (the node's, when it starts)."""
        self._loop = loop

    def add(self, future: asyncio.Future[Any], timeout: float,
            target: Any) -> dict[asyncio.Future[Any], Any]:
        """Fail ``future`` with ``CallTimeout(target, timeout)`` unless it is
        done within ``timeout`` seconds (see the rules for the precision).

        Returns the generation it joined: the caller removes ``future`` from
        it when it stops waiting (Rule 5), else the tick drops it."""
        bucket = self.by_timeout.get(timeout)
        if bucket is None:
            bucket = self._bucket(timeout)
        elif type(timeout) is float:  # a key: checked (an equal int must not pass for it)
            self.last_timeout = timeout
            self.last_bucket = bucket
        calls = bucket.current
        calls[future] = target
        if bucket.timer is None:
            bucket.timer = self._loop.call_later(bucket.tick, self._tick, bucket)
        return calls

    def _bucket(self, timeout: float) -> _Bucket:
        key = max(1, math.ceil(timeout * 1000))
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(key)
        if len(self.by_timeout) > 1024:
            self.by_timeout.clear()  # computed timeouts (retries) must not pile up
            self.last_timeout, self.last_bucket = _NONE, None
        if type(timeout) is float and 0 < timeout <= MAX_TIMEOUT:  # the cache's invariant
            self.by_timeout[timeout] = bucket
            self.last_timeout = timeout
            self.last_bucket = bucket
        return bucket

    def _tick(self, bucket: _Bucket) -> None:
        now = self._loop.time()
        calls = bucket.current
        if calls:
            bucket.current = {}
            answered = [future for future in calls if future.done()]
            for future in answered:
                del calls[future]
            if calls:
                bucket.generations.append((now, calls))
        generations = bucket.generations
        timeout = bucket.timeout
        while generations and generations[0][0] + timeout <= now:
            _, calls = generations.popleft()
            for future, target in list(calls.items()):
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
            if self.last_bucket is bucket:
                self.last_timeout, self.last_bucket = _NONE, None

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
        self.last_timeout, self.last_bucket = _NONE, None
