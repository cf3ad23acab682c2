"""The ``shoal`` command: a thin layer over the public API.

``main(argv)`` returns the exit code, so tests call it directly; ``run`` is
the console-script entry point. Exit codes: 0 success; 1 the job itself
failed (any other ShoalError, an OSError such as a listen address in use,
for ``demo`` a violation or a failure it cannot explain); 2 bad usage (the
parser's errors and every :class:`~shoal.UsageError`: BadArgument,
ConfigError); 3 ``shoal run``'s node fenced itself; 130 ``shoal demo`` was
interrupted. README.md lists the cases.
"""

from shoal.cli.main import main, run

__all__ = ["main", "run"]
