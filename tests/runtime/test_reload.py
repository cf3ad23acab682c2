"""Node.reload: a module re-imported, its live processes moved to the new
classes between two messages, state migrated by code_change; a failing
code_change or a failing import changes nothing for whom it failed."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reload_support import WORKER_V1, WORKER_V2, Modules, module_dir

import shoal
from shoal.runtime.codeload import current_class
from shoal.testing.cluster import wait_until


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Modules]:
    yield from module_dir(tmp_path, monkeypatch)


def rewrite_keeping_size_and_mtime(path: Path, cached: Path, text: str) -> None:
    assert cached.exists()  # the bytecode Python trusts by the source's size and mtime
    stat = path.stat()
    path.write_text(text, encoding="utf-8")
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def server_of(node: shoal.Node, pid: shoal.Pid) -> Any:
    proc = node.local_process(pid)
    assert proc is not None
    return proc.server


async def test_reload_moves_every_live_process_of_the_module_and_migrates_its_state(
        node: shoal.Node, modules: Modules) -> None:
    name = modules.new_name()
    mod = modules.load(name, WORKER_V1)
    pids = [await node.spawn(mod.Worker) for _ in range(3)]
    for pid in pids:
        await node.call(pid, "incr")
        await node.call(pid, "incr")
    modules.write(name, WORKER_V2)

    result = await node.reload(name, extra="deploy-7")

    assert isinstance(result, shoal.ReloadResult) and result.ok
    assert (result.module, result.error, dict(result.failed)) == (name, None, {})
    assert sorted(result.moved) == sorted(pids)
    for pid in pids:
        server = server_of(node, pid)
        assert type(server) is sys.modules[name].Worker
        assert server.migrated == (1, "deploy-7")  # the old class's version
        assert not hasattr(server, "count")
        assert await node.call(pid, "incr") == ("v2", 3)  # count 2 became total 2


async def test_a_failing_code_change_leaves_that_process_on_its_old_class_and_state(
        node: shoal.Node, modules: Modules) -> None:
    name = modules.new_name()
    mod = modules.load(name, WORKER_V1)
    old_class = mod.Worker
    healthy = await node.spawn(mod.Worker)
    poisoned = await node.spawn(mod.Worker)
    await node.call(poisoned, "poison")  # count 10000: v2's code_change refuses it
    before = dict(server_of(node, poisoned).__dict__)
    modules.write(name, WORKER_V2)

    result = await node.reload(name)

    assert result.moved == (healthy,) and not result.ok
    assert list(result.failed) == [poisoned]
    why = result.failed[poisoned]
    assert why.startswith("Traceback") and "ValueError: cannot migrate a count of 10000" in why
    server = server_of(node, poisoned)
    assert type(server) is old_class
    # code_change rebound count and added attributes before raising: undone.
    assert server.__dict__ == before
    assert await node.call(poisoned, "incr") == ("v1", 10_001)
    assert await node.call(healthy, "incr") == ("v2", 1)


SYNTAX_ERROR = WORKER_V2 + "\ndef broken(:\n"
RAISES_HALF_WAY = WORKER_V2 + "\nNEW_NAME = 1\nraise RuntimeError('config missing')\n"


@pytest.mark.parametrize(("source", "error"), [
    (SYNTAX_ERROR, "SyntaxError"),
    (RAISES_HALF_WAY, "RuntimeError: config missing"),
])
async def test_a_module_that_fails_to_import_changes_nothing(
        node: shoal.Node, modules: Modules, source: str, error: str) -> None:
    name = modules.new_name()
    mod = modules.load(name, WORKER_V1)
    pid = await node.spawn(mod.Worker)
    await node.call(pid, "incr")
    before = dict(mod.__dict__)
    modules.write(name, source)

    result = await node.reload(name)

    assert result.error is not None and "Traceback" in result.error and error in result.error
    assert (result.moved, dict(result.failed), result.ok) == ((), {}, False)
    assert sys.modules[name] is mod
    # The half-executed module is put back: the same names, the same objects.
    assert mod.__dict__.keys() == before.keys()
    assert all(mod.__dict__[key] is value for key, value in before.items())
    assert type(server_of(node, pid)) is mod.Worker
    assert await node.call(pid, "incr") == ("v1", 2)


async def test_a_handler_in_progress_finishes_on_the_old_code_and_the_next_message_runs_the_new(
        node: shoal.Node, modules: Modules) -> None:
    name = modules.new_name()
    mod = modules.load(name, WORKER_V1)
    gate, entered = asyncio.Event(), asyncio.Event()
    old_class = mod.Worker
    pid = await node.spawn(mod.Worker, gate, entered)
    blocked = asyncio.ensure_future(node.call(pid, "block"))
    await asyncio.wait_for(entered.wait(), 5.0)
    modules.write(name, WORKER_V2)

    reloading = asyncio.ensure_future(node.reload(name, timeout=10.0))
    proc = node.local_process(pid)
    assert proc is not None
    # The move waits in the mailbox behind the handler, which is not interrupted.
    await wait_until(lambda: len(proc.mailbox) == 1, timeout=5.0, what="the move queued")
    assert not reloading.done() and not blocked.done()
    assert type(proc.server) is old_class

    gate.set()
    assert await blocked == ("v1", "unblocked")
    result = await reloading
    assert result.moved == (pid,)
    assert await node.call(pid, "incr") == ("v2", 1)


async def test_a_process_busy_past_the_timeout_is_reported_not_moved_and_keeps_running(
        node: shoal.Node, modules: Modules) -> None:
    name = modules.new_name()
    mod = modules.load(name, WORKER_V1)
    gate, entered = asyncio.Event(), asyncio.Event()
    old_class = mod.Worker
    busy = await node.spawn(mod.Worker, gate, entered)
    idle = await node.spawn(mod.Worker)
    blocked = asyncio.ensure_future(node.call(busy, "block"))
    await asyncio.wait_for(entered.wait(), 5.0)
    modules.write(name, WORKER_V2)

    result = await node.reload(name, timeout=0.2)

    assert result.moved == (idle,)
    assert result.failed[busy].startswith("timeout")
    gate.set()
    assert await blocked == ("v1", "unblocked")
    # Its move was dropped, not run late: it stays on the old class.
    assert await node.call(busy, "incr") == ("v1", 1)
    assert type(server_of(node, busy)) is old_class


async def test_a_process_that_exits_while_its_move_waits_is_reported_at_once(
        node: shoal.Node, modules: Modules) -> None:
    name = modules.new_name()
    mod = modules.load(name, WORKER_V1)
    gate, entered = asyncio.Event(), asyncio.Event()
    pid = await node.spawn(mod.Worker, gate, entered)
    blocked = asyncio.ensure_future(node.call(pid, "block"))
    await asyncio.wait_for(entered.wait(), 5.0)
    modules.write(name, WORKER_V2)
    reloading = asyncio.ensure_future(node.reload(name, timeout=30.0))
    proc = node.local_process(pid)
    assert proc is not None
    await wait_until(lambda: len(proc.mailbox) == 1, timeout=5.0, what="the move queued")

    node.kill(pid)

    # Well before the 30 s timeout: the queued move is failed with its process.
    result = await asyncio.wait_for(reloading, 5.0)
    assert result.failed[pid] == "exited before it could move"
    with pytest.raises(shoal.ProcessExited):
        await blocked


async def test_a_process_killed_during_its_code_change_is_reported_and_the_rest_move(
        node: shoal.Node, modules: Modules) -> None:
    name = modules.new_name()
    mod = modules.load(name, WORKER_V1)
    entered = asyncio.Event()
    stuck = await node.spawn(mod.Worker, None, entered)
    modules.write(name, WORKER_V2.replace(
        "        self.total = self.count\n",
        "        self.total = self.count\n"
        "        if self.entered is not None:\n"
        "            self.entered.set()\n"
        "            await asyncio.Event().wait()\n"))
    other = await node.spawn(mod.Worker)

    reloading = asyncio.ensure_future(node.reload(name, timeout=30.0))
    await asyncio.wait_for(entered.wait(), 5.0)
    node.kill(stuck)

    result = await asyncio.wait_for(reloading, 5.0)
    assert result.moved == (other,)
    assert result.failed[stuck].startswith("exited while moving")


async def test_a_class_kept_for_later_starts_on_the_new_code_after_a_reload(
        node: shoal.Node, modules: Modules) -> None:
    name = modules.new_name()
    stored = modules.load(name, WORKER_V1).Worker  # as a child spec keeps it
    modules.write(name, WORKER_V2.replace("self.total += 1", "self.total = 42"))
    assert (await node.reload(name)).ok

    fresh = current_class(stored)
    assert fresh is sys.modules[name].Worker and fresh is not stored
    pid = await node.spawn(fresh)
    assert await node.call(pid, "incr") == ("v2", 42)


async def test_names_imported_elsewhere_keep_the_old_class(
        node: shoal.Node, modules: Modules) -> None:
    name = modules.new_name()
    mod = modules.load(name, WORKER_V1)
    other = modules.load(modules.new_name("user"), f"from {name} import Worker\n")
    modules.write(name, WORKER_V2)
    assert (await node.reload(name)).ok
    assert other.Worker is not mod.Worker and other.Worker.version == 1


@pytest.mark.parametrize(("module", "why"), [
    ("shoal.runtime.genserver", "shoal's own"),
    ("shoal", "shoal's own"),
    ("sys", "built-in"),
    ("no_such_module_anywhere", "already imported"),
    ("", "module name"),
    (42, "module name"),
])
async def test_reload_refuses_shoal_builtins_and_modules_not_imported(
        node: shoal.Node, module: Any, why: str) -> None:
    with pytest.raises(shoal.BadArgument, match=why):
        await node.reload(module)


async def test_each_reload_is_logged_once_at_info_with_what_moved_and_what_failed(
        node: shoal.Node, modules: Modules, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shoal")
    name = modules.new_name()
    mod = modules.load(name, WORKER_V1)
    moving = await node.spawn(mod.Worker)
    stuck = await node.spawn(mod.Worker)
    await node.call(stuck, "poison")
    modules.write(name, WORKER_V2)

    await node.reload(name)

    [line] = [r.getMessage() for r in caplog.records
              if r.levelno == logging.INFO and f"reloaded {name}" in r.getMessage()]
    assert f"1 process(es) moved [{moving}]" in line
    assert f"1 failed [{stuck} (ValueError: cannot migrate a count of 10000)]" in line


async def test_a_supervisor_restarts_its_child_on_the_new_class_after_node_reload(
        node: shoal.Node, modules: Modules) -> None:
    name = modules.new_name()
    mod = modules.load(name, WORKER_V1)
    sup = await node.spawn(shoal.Supervisor, shoal.SupervisorSpec(
        children=[shoal.ChildSpec("w", mod.Worker)], intensity=5))
    [first] = [c.pid for c in await shoal.supervisor.which_children(node, sup)]
    assert first is not None
    modules.write(name, WORKER_V2)

    result = await node.reload(name)

    assert result.moved == (first,)  # the running child moved; the supervisor is shoal's
    node.kill(first)
    await node.wait_exit(first)
    await wait_until(lambda: len(node.processes()) == 2, timeout=5.0, what="the restart")
    [second] = [c.pid for c in await shoal.supervisor.which_children(node, sup)]
    assert second is not None and second != first
    assert type(server_of(node, second)) is sys.modules[name].Worker


async def test_an_edit_of_the_same_size_within_the_same_second_is_reloaded(
        node: shoal.Node, modules: Modules, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as Python runs by default
    name = modules.new_name()
    source = "import shoal\n\nclass Worker(shoal.GenServer):\n    answer = {}\n"
    path = modules.write(name, source.format(1))
    mod = modules.load(name, source.format(1))
    rewrite_keeping_size_and_mtime(path, Path(mod.__cached__), source.format(2))
    assert (await node.reload(name)).ok
    assert mod.Worker.answer == 2
