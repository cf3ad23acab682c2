"""Which build of the wire's hot loops runs: the C extension or Python.

Owns: the choice, made once at import, and why it was made.

Rules:

1. The Python modules (``_frames.py``, ``_codec.py``) are the reference and
   always present. ``_speedups`` (``_speedups.c``), built by ``pip install``
   when a C compiler and Python's headers are there, stands in for their
   hot loops and hands every unusual case back to them.
2. The extension is used when it imports, is of :data:`ABI`, and
   ``SHOAL_PURE_PYTHON`` is not ``1``. A build of another ABI (a checkout
   whose C file changed since its last install) is never used: a warning
   says so once and the Python code runs.
3. ``SHOAL_PURE_PYTHON`` takes ``0``, ``1`` or nothing; anything else is a
   ``BadArgument`` naming it at import, not a silent choice.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType
from typing import Final

from shoal.errors import BadArgument

__all__ = ["ABI", "ENV", "WIRE", "WIRE_REASON", "load", "speedups"]

ENV: Final = "SHOAL_PURE_PYTHON"
ABI: Final = 4
"""The ``SPEEDUPS_ABI`` of ``_speedups.c`` this Python code calls."""


def load() -> tuple[ModuleType | None, str]:
    """The extension to use (or None) and why, by the rules above; read
    once at import into :data:`speedups` and :data:`WIRE_REASON`."""
    raw = os.environ.get(ENV, "").strip()
    if raw not in ("", "0", "1"):
        raise BadArgument(ENV, raw, "0 or 1 (1: run the pure-Python wire code)")
    if raw == "1":
        return None, f"{ENV}=1"
    try:
        _speedups = importlib.import_module("shoal.wire._speedups")
    except ImportError:
        return None, "the C extension is not built (no compiler at install time)"
    built = getattr(_speedups, "SPEEDUPS_ABI", None)
    if built != ABI:
        reason = (f"the C extension's ABI is {built}, this code needs {ABI}: "
                  "reinstall shoal (pip install -e .) to rebuild it")
        warnings.warn(f"shoal: running the pure-Python wire code: {reason}", stacklevel=2)
        return None, reason
    return _speedups, "the C extension is built and in use"


speedups, WIRE_REASON = load()
WIRE: Final = "c" if speedups is not None else "python"
"""``"c"`` when the wire's hot loops run in the C extension, else ``"python"``."""
