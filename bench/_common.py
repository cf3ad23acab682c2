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
    return f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}"
