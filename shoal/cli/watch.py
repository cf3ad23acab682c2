"""``shoal run --reload``: reload the application's changed modules in place.

For development: instead of restarting the node when a source file
changes, the module is re-imported with ``Node.reload`` and the node's
processes running its classes move to the new code (see
``shoal/runtime/reload.py``); the node, its connections, its groups and the
processes' state stay.

Rules:

- Rule 1: what is watched: the module named in ``MODULE:FUNCTION``, every
  loaded module of the same top-level package (``myapp`` and ``myapp.*``
  for ``myapp.main:setup``), and every loaded module whose source file lies
  under the directory of the app's module, except installed packages
  (``site-packages``, ``dist-packages``) and shoal itself. Only modules
  loaded from a ``.py`` file. The set is taken again at each poll, so a
  module imported later is watched from then on.
- Rule 2: polling: every :data:`POLL_INTERVAL` seconds, one ``os.stat`` per
  watched file; a change of its mtime or size reloads the module. The
  table of stats holds one entry per watched module and drops modules no
  longer loaded.
- Rule 3: modules changed in one poll are reloaded one after the other, in
  name order. Each reload is logged by the node (what moved, what failed);
  a module that fails to import leaves the node on the old code and is
  tried again when its file changes again.
- Rule 4: the app's setup function is not run again: a reload changes code
  and moves processes; what setup started (processes, groups) stays.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import shoal

__all__ = ["POLL_INTERVAL", "SourceWatcher"]

log = logging.getLogger("shoal")

POLL_INTERVAL = 0.5
"""Seconds between two looks at the watched files' mtimes."""

_INSTALLED = frozenset({"site-packages", "dist-packages"})
_SHOAL_DIR = Path(shoal.__file__).resolve().parent


def _source_of(name: str) -> Path | None:
    module = sys.modules.get(name)
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py"):
        return None
    return Path(file).resolve()


class SourceWatcher:
    """The files of one application and which of them changed (see the header).

    Args:
        app_module: the module named in ``MODULE:FUNCTION`` (imported).
        interval: seconds between polls (:data:`POLL_INTERVAL`).
    """

    def __init__(self, app_module: str, *, interval: float = POLL_INTERVAL) -> None:
        self.app_module = app_module
        self.interval = interval
        self._package = app_module.partition(".")[0]
        source = _source_of(app_module)
        self._root = source.parent if source is not None else None
        # Invariant: one entry per module watched at the last poll.
        self._stats: dict[str, tuple[int, int]] = {}

    def watched(self) -> dict[str, Path]:
        """Module name -> source file, for every module watched now (Rule 1)."""
        found: dict[str, Path] = {}
        for name in list(sys.modules):
            source = _source_of(name)
            if source is None or name == "__main__" or source.is_relative_to(_SHOAL_DIR):
                continue
            if self._in_app(name, source):
                found[name] = source
        return found

    def _in_app(self, name: str, source: Path) -> bool:
        if name == self._package or name.startswith(self._package + "."):
            return True
        root = self._root
        return (root is not None and source.is_relative_to(root)
                and not _INSTALLED.intersection(source.relative_to(root).parts))

    def changed(self) -> list[str]:
        """One poll (Rule 2): the modules whose file changed since the last
        one, in name order. A module seen for the first time is not changed."""
        stats: dict[str, tuple[int, int]] = {}
        changed: list[str] = []
        for name, source in self.watched().items():
            try:
                st = os.stat(source)
            except OSError:
                continue  # being rewritten, or removed: looked at again next poll
            stats[name] = (st.st_mtime_ns, st.st_size)
            before = self._stats.get(name)
            if before is not None and before != stats[name]:
                changed.append(name)
        self._stats = stats
        return sorted(changed)

    async def run(self, node: shoal.Node) -> None:
        """Poll and reload until cancelled (Rule 3)."""
        self.changed()  # the baseline
        log.info("watching %d source file(s) of %s for changes (--reload)",
                 len(self._stats), self.app_module)
        while True:
            await asyncio.sleep(self.interval)
            for name in self.changed():
                try:
                    await node.reload(name)  # logs what moved and what failed
                except shoal.ShoalError as exc:
                    log.warning("reload of %s refused: %s", name, exc)
                except Exception:  # the node serves on whatever a reload did
                    log.exception("reload of %s failed", name)
