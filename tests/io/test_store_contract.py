"""Every store adapter against the one contract suite (shoal.testing.store_contract).

One test per check per adapter. The memory harness drives TTLs with a manual
clock; the SQLite harness uses a fresh database file per test and real time
with a short TTL.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shoal.store import MemorySession, MemoryStore, SqliteSession, SqliteStore
from shoal.store.base import Session, Store
from shoal.testing.store_contract import (
    CHECKS,
    ManualClock,
    StoreFactory,
    StoreHarness,
    check_owner_death_ends_session_on_probe,
)


def memory_factory() -> StoreFactory:
    @contextlib.asynccontextmanager
    async def factory() -> AsyncIterator[StoreHarness]:
        clock = ManualClock()
        store = MemoryStore(clock=clock, sleep=clock.sleep, log_limit=10_000, probe_interval=0.05)

        @contextlib.asynccontextmanager
        async def another() -> AsyncIterator[Store]:
            other = store.another_client()
            try:
                yield other
            finally:
                await other.close()

        async def suspend(session: Session) -> None:
            assert isinstance(session, MemorySession)
            session.pause_keepalive()

        async def compact() -> None:
            store.compact()

        try:
            yield StoreHarness(
                store=store,
                another_client=another,
                ttl=1.0,
                timeout=5.0,
                advance=clock.advance,
                suspend=suspend,
                compact=compact,
            )
        finally:
            await store.close()

    return factory


def sqlite_factory(path: Path) -> StoreFactory:
    @contextlib.asynccontextmanager
    async def factory() -> AsyncIterator[StoreHarness]:
        db = path / f"db{next(_counter)}" / "cluster.db"
        store = SqliteStore(db, probe_interval=0.05)

        @contextlib.asynccontextmanager
        async def another() -> AsyncIterator[Store]:
            async with SqliteStore(db, probe_interval=0.05) as other:
                yield other

        async def suspend(session: Session) -> None:
            # A hung owner's held lock keeps its session alive; the TTL
            # applies only once the lock file is gone (store.md).
            assert isinstance(session, SqliteSession)
            session.pause_keepalive()
            (db.with_name(db.name + ".locks") / session.id).unlink()

        async def kill_owner(session: Session) -> None:
            assert isinstance(session, SqliteSession)
            await session.abandon()

        async def compact() -> None:
            await store.compact(keep=0)

        try:
            yield StoreHarness(
                store=store,
                another_client=another,
                ttl=0.4,
                timeout=5.0,
                suspend=suspend,
                kill_owner=kill_owner,
                compact=compact,
            )
        finally:
            await store.close()

    return factory


_counter = iter(range(1_000_000))


# A memory session's owner is the store's own process: it cannot die while
# the store lives, so the owner-death check has nothing to run against there.
CASES = [
    pytest.param(adapter, check, id=f"{adapter}-{check.__name__.removeprefix('check_')}")
    for adapter in ("memory", "sqlite")
    for check in CHECKS
    if not (adapter == "memory" and check is check_owner_death_ends_session_on_probe)
]


@pytest.mark.parametrize(("adapter", "check"), CASES)
async def test_store_contract(adapter: str, check: object, tmp_path: Path) -> None:
    factory = memory_factory() if adapter == "memory" else sqlite_factory(tmp_path)
    await check(factory)  # type: ignore[operator]
