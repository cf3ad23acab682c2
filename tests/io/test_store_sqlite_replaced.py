"""The embedded store's database deleted or replaced under running nodes.

Removing ``cluster.db`` (with its ``-wal`` and ``-shm``), or moving another
database into its place, must not leave a silent split in which running
nodes serve from the unlinked file while the path holds an empty cluster.
Each running node notices within its probe interval, logs an error, and
registers again in the file now at the path, with its memberships; a node
started afterwards sees them and can call them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.store import SqliteStore
from shoal.testing.cluster import wait_until

SECRET = "replaced-db-test-secret-0123456789"


class Echo(shoal.GenServer):
    # Set by the test once the nodes have found the file gone: a "slow" call
    # stays in flight through the whole loss and re-open.
    release: asyncio.Event | None = None

    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        if request == "slow":
            assert Echo.release is not None
            await Echo.release.wait()
        return request


def _remove_database(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_database_deleted_or_replaced_under_running_nodes_is_reopened_and_rejoined(
        tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="shoal")
    db = tmp_path / "cluster.db"
    url = f"sqlite://{db}"
    async with shoal.Node("a", store=url, secret=SECRET) as a, \
            shoal.Node("b", store=url, secret=SECRET) as b:
        pids = [await a.spawn(Echo) for _ in range(2)]
        for pid in pids:
            await a.groups.join("g", pid)
        await a.groups.sync()
        await wait_until(lambda: sorted(b.groups.get_members("g")) == sorted(pids),
                         what="a's members at b")
        # A call in flight: a is alive and connected, so losing the file is
        # no reason to fail it.
        Echo.release = asyncio.Event()
        in_flight = asyncio.ensure_future(b.call(pids[0], "slow", 10.0))

        if how == "deleted":
            _remove_database(db)
        else:
            other = tmp_path / "other" / "cluster.db"
            async with SqliteStore(other) as fresh:
                await fresh.snapshot("")  # creates an empty database there
            _remove_database(db)
            os.rename(other, db)

        await wait_until(lambda: any(
            r.levelno >= logging.ERROR and ("was deleted" in r.getMessage()
                                            or "was replaced" in r.getMessage())
            for r in caplog.records), timeout=5.0, what="the nodes to find the file gone")
        assert not in_flight.done()
        Echo.release.set()
        assert await in_flight == "slow"
        async with shoal.Node("c", store=url, secret=SECRET) as c:
            await wait_until(lambda: sorted(c.groups.get_members("g")) == sorted(pids),
                             timeout=5.0, what="a's members at a node started afterwards")
            assert await c.groups.call("g", "found", timeout=5.0) == "found"
            await wait_until(lambda: sorted(b.groups.get_members("g")) == sorted(pids),
                             timeout=5.0, what="a's members at b again")
            # Every running node registered again in the file at the path.
            await wait_until(lambda: c.cluster_view.names() == {"a", "b"}, timeout=5.0,
                             what="a and b registered in the new file")
            async with SqliteStore(db) as reader:
                names = set((await reader.snapshot("nodes/")).entries)
            assert names == {"nodes/a", "nodes/b", "nodes/c"}
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        # A deleted file is soon "replaced" by the one the new node created.
        assert any("was deleted" in m or "was replaced" in m for m in errors), errors
