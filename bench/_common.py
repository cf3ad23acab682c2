"""Shared helpers for the benchmarks: event loop choice, percentiles, output.

Every benchmark prints ``name: value unit`` lines and ends with its ratios,
measured against a baseline run in the same process run (machines here are
shared and noisy: absolute figures drift, ratios much less).
"""

from __future__ import annotations

import asyncio
import platform
import statistics
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main`` on uvloop when installed, else on the default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)


def emit(name: str, value: float, unit: str = "") -> None:
    text = f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    print(f"{name}: {text}{(' ' + unit) if unit else ''}", flush=True)


def machine() -> str:
    """The platform, and which build of shoal's wire code runs (C or pure
    Python, ``shoal.build_info()``): figures of the two builds differ."""
    import shoal

    return (f"{platform.machine()} {platform.python_implementation()} "
            f"{platform.python_version()}, shoal wire code: {shoal.build_info()['wire']}")


def settle(limit: float = 5.0, bound: float = 30.0) -> float | None:
    """Wait, at most ``bound`` seconds, until the host's CPU pressure (PSI
    ``some avg10``, %) is below ``limit``; return the pressure then (None
    where the kernel reports none). A phase that saturated both cores keeps
    the 10-second average high for a while after it, and a shoal node does
    not busy-poll under pressure (``runtime/spin.py``): each side of a
    comparison starts on a settled host, whichever ran before it."""
    import time

    from shoal.runtime import spin

    path = spin.pressure_file()
    if path is None:
        return None
    deadline = time.monotonic() + bound
    level = spin.read_pressure(path)
    while level is not None and level >= limit and time.monotonic() < deadline:
        time.sleep(0.5)  # the average moves every 2 s; bounded by ``bound``
        level = spin.read_pressure(path)
    return level
