"""``shoal reload NODE MODULE`` on a real ``shoal run`` node: the app file is
changed and reloaded, and a call shows the new behaviour in the same
process; a file that does not import exits 1 and changes nothing; every
reload is in the audit log."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import shoal
from shoal.cli import audit, main
from shoal.testing.cluster import wait_until

pytestmark = pytest.mark.timeout(120)

SECRET = "reload-cmd-test-secret-0123456789abcdef"

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
        if extra == "boom":
            raise RuntimeError("the migration failed")
        self.n += extra if isinstance(extra, int) else 100

async def setup(node):
    pid = await node.spawn(Counter)
    await node.groups.join("counters", pid)
'''


def write_app(path: Path, tag: str, extra: str = "") -> None:
    path.write_text(textwrap.dedent(APP).replace("{tag}", tag) + extra, encoding="utf-8")


async def shell(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


class Served:
    def __init__(self, source: Path, store: str, client: shoal.Node, pid: shoal.Pid) -> None:
        self.source, self.store, self.client, self.pid = source, store, client, pid


@pytest.fixture
async def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    monkeypatch.setenv("SHOAL_SECRET", SECRET)
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    source = app_dir / "reload_cmd_app.py"
    write_app(source, "v1")
    store = f"sqlite://{tmp_path}/cluster.db"
    # No bytecode cache: a rewrite within the same second must not be read stale.
    env = dict(os.environ, SHOAL_SECRET=SECRET, PYTHONDONTWRITEBYTECODE="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shoal.cli", "run", "reload_cmd_app:setup", "--node", "svc-1",
        "--store", store, cwd=app_dir, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        assert b"ready" in await asyncio.wait_for(proc.stdout.readline(), 30)
        async with shoal.Node("client", store=store, secret=SECRET) as client:
            await wait_until(lambda: len(client.groups.get_members("counters")) == 1,
                             what="the counter at the client")
            [pid] = client.groups.get_members("counters")
            yield Served(source, store, client, pid)
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_reload_moves_the_running_process_to_the_changed_file(
        served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    client, pid = served.client, served.pid
    assert await client.call(pid, "n") == ["v1", 1]
    write_app(served.source, "v2")
    assert await shell("reload", "svc-1", "reload_cmd_app", "--extra", "1000", "--store",
                       served.store, "--yes", "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer == {"node": "svc-1", "module": "reload_cmd_app", "moved": [str(pid)],
                      "failed": [], "error": None}
    # The same process, its count kept and migrated by code_change(extra=1000).
    assert await client.call(pid, "n") == ["v2", 1002]

    write_app(served.source, "v3")
    assert await shell("reload", "svc-1", "reload_cmd_app", "--store", served.store,
                       "--yes") == 0
    assert capsys.readouterr().out.splitlines() == [
        "node svc-1: reload_cmd_app reloaded: 1 process(es) moved, 0 failed",
        f"  moved  {pid}"]
    assert await client.call(pid, "n") == ["v3", 1103]

    rows = await audit.read(served.store, None, 5)
    assert [(r["command"], r["outcome"]) for r in rows] == [("reload", "done")] * 2
    assert rows[1]["args"] == {"node": "svc-1", "module": "reload_cmd_app", "extra": 1000,
                               "timeout": 5.0}
    assert rows[1]["evidence"]["moved"] == [str(pid)]


async def test_a_file_that_does_not_import_exits_1_and_changes_nothing(
        served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    client, pid = served.client, served.pid
    assert await client.call(pid, "n") == ["v1", 1]
    write_app(served.source, "v2", extra="\ndef broken(:\n")
    assert await shell("reload", "svc-1", "reload_cmd_app", "--store", served.store,
                       "--yes") == 1
    out = capsys.readouterr().out
    assert out.startswith("node svc-1: reload_cmd_app failed to import; nothing changed: ")
    assert "SyntaxError" in out and out.count("\n") == 1
    assert await client.call(pid, "n") == ["v1", 2]  # the old code, its state untouched
    [row] = await audit.read(served.store, None, 5)
    assert row["outcome"] == "failed" and "failed to import" in row["why"]
    assert "SyntaxError" in row["evidence"]["error"]


async def test_a_process_whose_code_change_fails_keeps_its_old_code_and_exits_1(
        served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    client, pid = served.client, served.pid
    write_app(served.source, "v2")
    assert await shell("reload", "svc-1", "reload_cmd_app", "--extra", '"boom"', "--store",
                       served.store, "--yes") == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["node svc-1: reload_cmd_app reloaded: 0 process(es) moved, 1 failed",
                     f"  failed {pid}: RuntimeError: the migration failed"]
    assert await client.call(pid, "n") == ["v1", 1]
    [row] = await audit.read(served.store, None, 5)
    assert row["outcome"] == "failed" and row["evidence"]["failed"][0]["pid"] == str(pid)


async def test_reload_of_an_unknown_node_or_module_is_one_line_exit_1(
        served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    assert await shell("reload", "svc-9", "reload_cmd_app", "--store", served.store,
                       "--yes") == 1
    err = capsys.readouterr().err
    assert "no live node named 'svc-9'" in err and err.count("\n") == 1
    assert await shell("reload", "svc-1", "not_imported_anywhere", "--store", served.store,
                       "--yes") == 1
    err = capsys.readouterr().err
    assert "not_imported_anywhere" in err and err.count("\n") == 1
    rows = await audit.read(served.store, None, 5)
    assert [(r["args"]["node"], r["outcome"]) for r in rows] == [
        ("svc-1", "refused"), ("svc-9", "refused")]


@pytest.mark.parametrize("argv", [
    ["svc-1", "bad module"], ["svc-1", "m", "--timeout", "0"], ["svc-1", "m", "--extra", "{"],
    ["svc-1", "m"],  # no --yes, no terminal
    ["svc-1"],
])
def test_reload_bad_arguments_exit_2(argv: list[str], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reload", *argv, "--store", f"sqlite://{tmp_path}/c.db"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.lower().startswith("error")]) == 1
    assert list(tmp_path.iterdir()) == []
