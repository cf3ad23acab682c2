"""shoal's version, below every layer.

A node stores it in its ``nodes/<name>`` record, and ``shoal.__version__``
re-exports it; keeping it here lets the runtime read it without importing
the top-level package, which imports the runtime (no import cycle).
Rule: it equals ``version`` in ``pyproject.toml``.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
