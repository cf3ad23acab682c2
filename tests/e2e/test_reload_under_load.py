"""A hot reload under steady group calls from another node loses none.

Node ``a`` hosts the workers of a module written for the test; node ``b``
(same cluster, a shared SQLite store, TCP on 127.0.0.1) keeps group calls
in flight through the reload. Every call is answered, calls made after
the reload returned see the new code, and no count is lost in the state
migrated by ``code_change``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import wait_until
from reload_support import WORKER_V1, WORKER_V2, Modules, module_dir

import shoal

pytestmark = [pytest.mark.timeout(120), pytest.mark.e2e_stores("sqlite")]

SECRET = "reload-under-load-secret-0123456789"
WORKERS, CALLERS, CALLS_PER_CALLER = 4, 8, 300
RELOAD_AFTER = 600  # calls answered before the reload starts


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Modules]:
    yield from module_dir(tmp_path, monkeypatch)


async def test_reload_under_group_calls_from_another_node_fails_none(
        tmp_path: Path, modules: Modules) -> None:
    name = modules.new_name()
    mod = modules.load(name, WORKER_V1)
    url = f"sqlite://{tmp_path / 'cluster.db'}"
    answers: list[tuple[float, tuple[str, int]]] = []  # (start, reply)
    failures: list[BaseException] = []
    async with shoal.Node("a", store=url, secret=SECRET) as a, \
            shoal.Node("b", store=url, secret=SECRET) as b:
        pids = [await a.spawn(mod.Worker) for _ in range(WORKERS)]
        await a.groups.join("workers", pids)
        await a.groups.sync()
        await wait_until(lambda: len(b.groups.get_members("workers")) == WORKERS,
                         what="a's workers at b")
        loop = asyncio.get_running_loop()

        async def caller() -> None:
            for _ in range(CALLS_PER_CALLER):
                start = loop.time()
                try:
                    answers.append((start, await b.groups.call("workers", "incr",
                                                               timeout=5.0)))
                except shoal.ShoalError as exc:
                    failures.append(exc)

        callers = [asyncio.ensure_future(caller()) for _ in range(CALLERS)]
        try:
            await wait_until(lambda: len(answers) + len(failures) >= RELOAD_AFTER,
                             what=f"{RELOAD_AFTER} calls answered")
            modules.write(name, WORKER_V2)
            result = await a.reload(name)
            reloaded_at = loop.time()
            await asyncio.gather(*callers)
        finally:
            for task in callers:
                task.cancel()

        assert failures == []
        assert len(answers) == CALLERS * CALLS_PER_CALLER
        assert result.ok and sorted(result.moved) == sorted(pids)
        versions = {reply[0] for _, reply in answers}
        assert versions == {"v1", "v2"}
        after = [reply for start, reply in answers if start > reloaded_at]
        assert after and all(version == "v2" for version, _ in after)
        # code_change carried every count over: the workers' totals add up to
        # every call answered.
        totals = [(await a.call(pid, "incr"))[1] - 1 for pid in pids]
        assert sum(totals) == len(answers)
