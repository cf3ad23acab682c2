"""The owner is authoritative for its memberships: keys of a live node that
someone else deletes or overwrites in the store (an operator's ``etcdctl
del``, a script) are written back by the owner within a second, with a
warning naming the keys and the revision. On SQLite and on a real etcd.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.store import Delete, Put, Store, open_store
from shoal.testing.cluster import wait_until
from shoal.testing.etcd_server import EtcdCluster, start_etcd

SECRET = "reassert-test-secret-0123456789ab"
BOUND = 1.0  # seconds within which the owner writes its keys back


class Echo(shoal.GenServer):
    async def handle_call(self, request: Any, caller: shoal.Caller) -> Any:
        return request


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with start_etcd() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "etcd"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/cluster.db"
    etcd: EtcdCluster = request.getfixturevalue("etcd")
    return etcd.url(cluster=f"reassert-{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def operator(store_url: str) -> AsyncIterator[Store]:
    """Someone else's client of the same store."""
    store = open_store(store_url)
    try:
        yield store
    finally:
        await store.close()


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float,
                     what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.01)  # pacing store reads, not synchronising


async def test_membership_keys_deleted_by_someone_else_are_written_back_within_a_second(
        store_url: str, operator: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="shoal")
    async with shoal.Node("owner", store=store_url, secret=SECRET) as owner, \
            shoal.Node("caller", store=store_url, secret=SECRET) as caller:
        pids = [await owner.spawn(Echo) for _ in range(3)]
        for pid in pids:
            await owner.groups.join("g", pid)
        await owner.groups.sync(timeout=5.0)
        await wait_until(lambda: sorted(caller.groups.get_members("g")) == sorted(pids),
                         what="the owner's members at the caller")
        prefix = f"scopes/default/owner/{owner.creation}/"
        before = {k: e.value for k, e in (await operator.snapshot(prefix)).entries.items()}
        assert before

        intruder = await operator.open_session("operator-script", b"", 5.0)
        loop = asyncio.get_running_loop()
        deleted_at = loop.time()
        revision = await intruder.apply([Delete(key=k) for k in before])

        async def restored() -> bool:
            now = {k: e.value for k, e in (await operator.snapshot(prefix)).entries.items()}
            return now == before
        await eventually(restored, timeout=BOUND + 1.0, what="the owner to restore its keys")
        assert loop.time() - deleted_at < BOUND + 0.5
        await wait_until(lambda: sorted(caller.groups.get_members("g")) == sorted(pids),
                         timeout=BOUND, what="the members back at the caller")
        assert await caller.groups.call("g", "still here", timeout=5.0) == "still here"
        warnings = [r.getMessage() for r in caplog.records
                    if "changed by someone else" in r.getMessage()]
        assert len(warnings) == 1, warnings
        assert f"revision {revision}" in warnings[0]
        assert all(key in warnings[0] for key in before)

        # An overwrite is undone the same way; the owner's own writes are not
        # mistaken for someone else's.
        key = next(iter(before))
        await intruder.apply([Put(key=key, value=b"\x90")])  # an empty member list
        await eventually(restored, timeout=BOUND + 1.0, what="the overwritten key restored")
        more = await owner.spawn(Echo)
        await owner.groups.join("g", more)
        await owner.groups.sync(timeout=5.0)
        await owner.groups.leave("g", [more])
        await owner.groups.sync(timeout=5.0)
        await eventually(restored, timeout=BOUND + 1.0, what="the owner's own changes")
        assert len([r for r in caplog.records
                    if "changed by someone else" in r.getMessage()]) == 2


async def test_a_live_nodes_registration_deleted_by_someone_else_comes_back_with_its_members(
        store_url: str, operator: Store, caplog: pytest.LogCaptureFixture) -> None:
    # Peers take a deleted nodes/<name> for the end of that node's session
    # and drop its members; the owner, alive, registers again and rewrites.
    caplog.set_level(logging.WARNING, logger="shoal")
    async with shoal.Node("owner", store=store_url, secret=SECRET) as owner, \
            shoal.Node("caller", store=store_url, secret=SECRET) as caller:
        pids = [await owner.spawn(Echo) for _ in range(2)]
        await owner.groups.join("g", pids)
        await owner.groups.sync(timeout=5.0)
        await wait_until(lambda: sorted(caller.groups.get_members("g")) == sorted(pids),
                         what="the owner's members at the caller")
        intruder = await operator.open_session("operator-script", b"", 5.0)
        revision = await intruder.apply([Delete(key="nodes/owner")])

        async def registered() -> bool:
            return "nodes/owner" in (await operator.snapshot("nodes/")).entries
        await eventually(registered, timeout=BOUND + 1.0, what="the registration restored")
        await wait_until(lambda: sorted(caller.groups.get_members("g")) == sorted(pids),
                         timeout=BOUND + 1.0, what="the members back at the caller")
        assert caller.cluster_view.peer("owner").creation == owner.creation
        assert await caller.groups.call("g", "back", timeout=5.0) == "back"
        assert any(f"nodes/owner was deleted by someone else at revision {revision}"
                   in r.getMessage() for r in caplog.records)


async def test_a_lease_that_ran_out_is_not_reported_as_someone_elses_deletion(
        etcd: EtcdCluster, caplog: pytest.LogCaptureFixture) -> None:
    # A node hung past its lease wakes to the deletes the expiry made: they
    # are its session's end, not an operator's doing, and the log says so
    # (an operator at 3 a.m. should not go looking for a rogue script).
    url = etcd.url(cluster=f"reassert-{uuid.uuid4().hex[:12]}")
    caplog.set_level(logging.INFO, logger="shoal")
    async with shoal.Node("owner", store=url, secret=SECRET, session_ttl=1.0) as owner:
        pids = [await owner.spawn(Echo) for _ in range(2)]
        await owner.groups.join("g", pids)
        await owner.groups.sync(timeout=5.0)
        assert owner._replication is not None and owner._replication.session is not None
        lapsed = owner._replication.session
        lapsed.pause_keepalive()  # type: ignore[attr-defined]  # the hang, as etcd sees it
        await wait_until(lambda: owner._replication is not None
                         and owner._replication.session is not lapsed, timeout=15,
                         what="a new session")
        await owner.groups.sync(timeout=5.0)  # every membership written again
        messages = [r.getMessage() for r in caplog.records]
        assert any("store session ended (expired)" in m for m in messages), messages
        assert not any("someone else" in m for m in messages), messages
