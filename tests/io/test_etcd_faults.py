"""EtcdStore under etcd faults: a restarted server, a stopped leader.

Each test starts its own throwaway etcd (shoal.testing.etcd_server) because
it stops members. Waits are on watch progress with bounds, never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from shoal.errors import StoreUnavailable
from shoal.store.base import Changes, Entry, Event, Put, Resync, WatchItem
from shoal.store.etcd import EtcdSession, EtcdStore
from shoal.testing.etcd_server import start_etcd

WAIT = 15.0  # bound on every wait, seconds


class _View:
    """Consumes a watch in a task, keeping the view and every event."""

    def __init__(self, iterator: AsyncIterator[WatchItem], revision: int) -> None:
        self.iterator = iterator
        self.position = revision
        self.events: list[Event] = []
        self.view: dict[str, Entry] = {}
        self.resyncs = 0
        self.changed = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        async for item in self.iterator:
            if isinstance(item, Resync):
                self.resyncs += 1
                self.view = dict(item.snapshot.entries)
                self.position = item.snapshot.revision
            else:
                assert isinstance(item, Changes)
                for event in item.events:
                    assert event.revision > self.position, f"{event} repeats or goes back"
                    self.events.append(event)
                    if event.kind == "put":
                        assert event.value is not None and event.session is not None
                        self.view[event.key] = Entry(
                            key=event.key,
                            value=event.value,
                            session=event.session,
                            revision=event.revision,
                        )
                    else:
                        self.view.pop(event.key, None)
                self.position = item.revision
            self.changed.set()

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(WAIT):
                while not predicate():
                    if self.task.done():
                        self.task.result()
                        raise AssertionError("watch ended")
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None

    async def aclose(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def _apply_retrying(session: EtcdSession, key: str, attempts: int = 5) -> int:
    """One put, retried while etcd is unreachable (bounded)."""
    for attempt in range(attempts):
        try:
            return await session.apply([Put(key=key, value=b"x")])
        except StoreUnavailable:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _assert_no_gap_no_duplicate(view: _View, revisions: list[int], keys: list[str]) -> None:
    seen = [(e.revision, e.key) for e in view.events]
    assert len(seen) == len(set(seen)), "an event was delivered twice"
    got = {e.revision for e in view.events}
    missing = [r for r in revisions if r not in got]
    assert not missing, f"watch skipped revisions {missing}"
    assert {e.key for e in view.events} >= set(keys)


async def test_etcd_restarted_while_watching_resumes_without_gap_and_session_survives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="shoal.store.etcd")
    with start_etcd() as etcd:
        store = EtcdStore(etcd.endpoints, cluster=f"r-{uuid.uuid4().hex[:8]}", timeout=WAIT)
        session = await store.open_session("survivor", b"", 5.0)
        start = await store.snapshot("r/")
        view = _View(store.watch("r/", start.revision), start.revision)
        try:
            keys = [f"r/{i}" for i in range(40)]
            revisions = [await _apply_retrying(session, k) for k in keys[:20]]
            await view.until(lambda: view.position >= revisions[-1], "writes before restart")
            restart = asyncio.get_running_loop().create_task(
                asyncio.to_thread(etcd.restart_member, 0)
            )
            # Writes race the restart; each retries until etcd answers again.
            revisions += [await _apply_retrying(session, k) for k in keys[20:]]
            await restart
            await view.until(lambda: view.position >= revisions[-1], "writes after restart")
            _assert_no_gap_no_duplicate(view, revisions, keys)
            assert view.resyncs == 0
            assert "resumes at revision" in caplog.text, "the watch never broke"
            assert view.view == dict((await store.snapshot("r/")).entries)
            assert await session.check(), "the lease should have survived the restart"
            assert not session.ended
        finally:
            await view.aclose()
            await store.close()


async def test_lease_not_kept_alive_across_restart_is_reported_expired() -> None:
    with start_etcd() as etcd:
        store = EtcdStore(etcd.endpoints, cluster=f"e-{uuid.uuid4().hex[:8]}", timeout=WAIT)
        try:
            session = await store.open_session("hung", b"", 1.0)
            session.pause_keepalive()
            await asyncio.to_thread(etcd.restart_member, 0)
            async with asyncio.timeout(WAIT):
                assert await session.wait_ended() == "expired"
            assert "nodes/hung" not in (await store.snapshot("")).entries
        finally:
            await store.close()


async def test_three_members_leader_stopped_while_writing_writes_and_watches_continue(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="shoal.store.etcd")
    with start_etcd(members=3) as etcd:
        leader = etcd.leader()
        order = [leader, *(i for i in range(3) if i != leader)]
        store = EtcdStore(
            [etcd.members[i].endpoint for i in order],
            cluster=f"l-{uuid.uuid4().hex[:8]}",
            timeout=WAIT,
        )
        session = await store.open_session("writer", b"", 5.0)
        start = await store.snapshot("w/")
        view = _View(store.watch("w/", start.revision), start.revision)
        keys = [f"w/{i}" for i in range(150)]
        revisions: list[int] = []
        written = asyncio.Event()

        async def writer() -> None:
            for key in keys:
                revisions.append(await _apply_retrying(session, key))
                if len(revisions) == 30:
                    written.set()

        try:
            task = asyncio.get_running_loop().create_task(writer())
            async with asyncio.timeout(WAIT):
                await written.wait()
            await asyncio.to_thread(etcd.stop_member, leader)
            async with asyncio.timeout(WAIT * 2):
                await task
            await view.until(lambda: view.position >= revisions[-1], "all writes")
            assert "resumes at revision" in caplog.text, "the watch never broke"
            _assert_no_gap_no_duplicate(view, revisions, keys)
            assert view.view == dict((await store.snapshot("w/")).entries)
            assert etcd.leader() != leader
            assert await session.check() and not session.ended
        finally:
            await view.aclose()
            await store.close()
