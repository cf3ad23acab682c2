"""The ``shoal`` command: a thin layer over the public API.

``main(argv)`` returns the exit code, so tests call it directly; ``run`` is
the console-script entry point. Exit codes: 0 success, 1 the job itself
failed (for ``demo``: a caller saw a failure), 2 bad usage.
"""

from shoal.cli.main import main, run

__all__ = ["main", "run"]
