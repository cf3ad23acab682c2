"""Modules written to a temporary directory for hot-reload tests.

``Modules`` writes a module's source, imports it from a directory put first
on ``sys.path``, rewrites it for a reload, and removes every module it
imported from ``sys.modules`` when the test ends. Module names are unique
per test, so no test sees another's code.
"""

from __future__ import annotations

import importlib
import itertools
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

__all__ = ["WORKER_V1", "WORKER_V2", "Modules", "module_dir"]

_serial = itertools.count(1)

WORKER_V1 = '''
import asyncio
import shoal

class Worker(shoal.GenServer):
    version = 1

    async def init(self, gate=None, entered=None):
        self.count = 0
        self.gate = gate
        self.entered = entered

    async def handle_call(self, request, caller):
        if request == "block":
            self.entered.set()
            await self.gate.wait()
            return ("v1", "unblocked")
        if request == "poison":
            self.count = 9_999
        self.count += 1
        return ("v1", self.count)
'''

WORKER_V2 = '''
import asyncio
import shoal

class Worker(shoal.GenServer):
    version = 2

    async def handle_call(self, request, caller):
        self.total += 1
        return ("v2", self.total)

    async def code_change(self, old_version, extra):
        self.total = self.count
        self.count = None
        self.migrated = (old_version, extra)
        if self.total >= 10_000:
            raise ValueError(f"cannot migrate a count of {self.total}")
        del self.count
'''


class Modules:
    """Source modules under ``root``, importable by name (see the header)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.names: list[str] = []

    def new_name(self, stem: str = "reloadable") -> str:
        name = f"{stem}_{next(_serial)}"
        self.names.append(name)
        return name

    def write(self, name: str, source: str) -> Path:
        path = self.root / f"{name}.py"
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        return path

    def load(self, name: str, source: str) -> ModuleType:
        self.write(name, source)
        return importlib.import_module(name)


def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Modules]:
    """The body of a test module's ``modules`` fixture."""
    root = tmp_path / "src"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    made = Modules(root)
    try:
        yield made
    finally:
        for name in made.names:
            sys.modules.pop(name, None)
