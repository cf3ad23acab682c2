"""The one retry schedule: capped, jittered exponential backoff.

Owns: the delays every retrying loop of shoal sleeps between attempts —
the transport's dials, the runtime's redials, store watch and session
re-opening, membership writes, and the etcd adapter's endpoint retries.

Rules:

1. Every loop that retries after a failure takes its delays from
   :func:`backoff_delays`; none computes its own (``tests/pure`` checks the
   source for hand-rolled ``delay * 2`` and ``2 ** attempt``).
2. Delays are jittered: each is scaled by a random factor in
   ``[1 - jitter, 1]``. Nodes that lost the store (or a peer) together
   would otherwise retry together, in lockstep, for as long as it is down.
3. Delays are bounded: never above ``maximum``, never below
   ``initial * (1 - jitter)``.

It sits beside ``pid.py`` and ``errors.py``, below every layer, so that the
transport, the stores and the runtime share it without importing each other.
Pure: no IO, no clock; the random source is injected for repeatable tests.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from shoal.errors import BadArgument

__all__ = ["backoff_delays"]


def backoff_delays(
    *,
    initial: float,
    maximum: float,
    multiplier: float = 2.0,
    jitter: float = 0.5,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """The delays between successive attempts of a retrying loop.

    Start a fresh iterator when the loop succeeds, so the next failure
    starts again from ``initial``.

    Args:
        initial: the first delay before jitter, seconds (> 0).
        maximum: the cap before jitter, seconds (>= ``initial``).
        multiplier: growth per attempt (>= 1).
        jitter: each delay is scaled by a random factor in ``[1 - jitter, 1]``
            (0 <= jitter < 1).
        rng: the random source (injected so tests are repeatable); default
            the ``random`` module's.

    Returns:
        An endless iterator of delays in seconds: exponential, capped, jittered.

    Raises:
        BadArgument: a parameter is out of its range.
    """
    for name, value in (("initial", initial), ("maximum", maximum)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise BadArgument(name, value, "a number > 0")
    if not maximum >= initial:
        raise BadArgument("maximum", maximum, f"a number >= initial ({initial})")
    if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) \
            or not multiplier >= 1:
        raise BadArgument("multiplier", multiplier, "a number >= 1")
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter < 1:
        raise BadArgument("jitter", jitter, "a number in [0, 1)")
    draw = rng.random if rng is not None else random.random
    return _delays(float(initial), float(maximum), float(multiplier), float(jitter), draw)


def _delays(initial: float, maximum: float, multiplier: float, jitter: float,
            draw: Callable[[], float]) -> Iterator[float]:
    # A generator apart from the checks above, so a bad argument raises at
    # the call, not at the first next().
    delay = initial
    while True:
        yield delay * (1.0 - jitter * draw())
        delay = min(delay * multiplier, maximum)
