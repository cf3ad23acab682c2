"""``python -m shoal.cli``: the ``shoal`` command without the console script."""

from shoal.cli.main import run

run()
