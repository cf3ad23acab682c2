"""``shoal run --reload``: a changed source file is reloaded in the running
node, whose processes move to the new code and keep their state; a file
that does not import leaves the node serving the old code."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.cli.watch import SourceWatcher
from shoal.testing.cluster import wait_until

pytestmark = pytest.mark.timeout(120)

SECRET = "run-reload-test-secret-0123456789abcdef"

APP = '''
import shoal

class Counter(shoal.GenServer):
    version = 1

    async def init(self):
        self.n = 0

    async def handle_call(self, request, caller):
        self.n += 1
        return ["{tag}", self.n]

    async def code_change(self, old_version, extra):
        self.n += 100  # shows the state was kept, and migrated

async def setup(node):
    pid = await node.spawn(Counter)
    await node.groups.join("counters", pid)
'''


def write_app(path: Path, tag: str, extra: str = "") -> None:
    path.write_text(textwrap.dedent(APP).replace("{tag}", tag) + extra, encoding="utf-8")


async def until(check: Callable[[], Awaitable[bool]], *, timeout: float, what: str) -> None:
    """Await ``check()`` until it is true, at most ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_run_reload_serves_the_new_code_of_a_rewritten_file_without_a_restart(
        tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    source = app_dir / "hotapp_for_run.py"
    write_app(source, "v1")
    log = tmp_path / "node.log"
    store = f"sqlite://{tmp_path}/cluster.db"
    env = dict(os.environ, SHOAL_SECRET=SECRET)
    with log.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shoal.cli", "run", "hotapp_for_run:setup", "--node",
            "hot", "--store", store, "--reload", cwd=app_dir, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=log_file)
    try:
        assert proc.stdout is not None
        assert b"ready" in await asyncio.wait_for(proc.stdout.readline(), 30)
        async with shoal.Node("client", store=store, secret=SECRET) as client:
            await wait_until(lambda: len(client.groups.get_members("counters")) == 1,
                             what="the counter at the client")
            [pid] = client.groups.get_members("counters")
            assert await client.call(pid, "n") == ["v1", 1]

            # A file that does not import: logged, and the old code serves on.
            write_app(source, "v2", extra="\ndef broken(:\n")
            await wait_until(lambda: "failed to import" in log.read_text(), timeout=30,
                             what="the failed import in the log")
            assert await client.call(pid, "n") == ["v1", 2]

            write_app(source, "v2")
            seen: list[Any] = []

            async def new_code() -> bool:
                seen.append(await client.call(pid, "n"))
                return seen[-1][0] == "v2"

            await until(new_code, timeout=30, what="the new code to answer")
            # The same process, its count kept and migrated by code_change.
            assert seen[-1] == ["v2", len(seen) + 2 + 100]
            assert client.groups.get_members("counters") == [pid]
        text = log.read_text()
        assert "reloaded hotapp_for_run: 1 process(es) moved" in text
        assert "reload of hotapp_for_run failed to import" in text
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0


def test_the_watcher_watches_the_apps_package_and_modules_beside_it_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "watchedpkg"
    (pkg / "sub").mkdir(parents=True)
    for path in (pkg / "__init__.py", pkg / "main.py", pkg / "sub" / "__init__.py",
                 pkg / "sub" / "deep.py", tmp_path / "elsewhere_for_watch.py"):
        path.write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ["watchedpkg", "watchedpkg.main", "watchedpkg.sub", "watchedpkg.sub.deep",
             "elsewhere_for_watch"]
    try:
        for name in names:
            __import__(name)
        watcher = SourceWatcher("watchedpkg.main")
        assert sorted(watcher.watched()) == names[:4]  # not shoal, not the module outside
        assert watcher.changed() == []  # the baseline
        (pkg / "sub" / "deep.py").write_text("x = 22\n")
        (tmp_path / "elsewhere_for_watch.py").write_text("x = 22\n")
        assert watcher.changed() == ["watchedpkg.sub.deep"]
        assert watcher.changed() == []
    finally:
        for name in names:
            sys.modules.pop(name, None)
