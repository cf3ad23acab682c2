"""EtcdStore against a real, throwaway etcd (shoal.testing.etcd_server).

The shared contract suite runs one test per check; the rest covers what only
etcd has: lease expiry and revocation seen by watchers, endpoint failover,
deadlines when nothing answers, and the ``etcd://`` URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.errors import ConfigError, SessionEnded, StoreUnavailable
from shoal.store.base import Changes, Delete, Event, Put, Session, Store, WatchItem
from shoal.store.etcd import EtcdSession, EtcdStore
from shoal.testing.etcd_server import EtcdCluster, start_etcd
from shoal.testing.store_contract import (
    CHECKS,
    StoreFactory,
    StoreHarness,
    check_owner_death_ends_session_on_probe,
)

WAIT = 10.0  # bound on every wait in this module, seconds


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with start_etcd() as cluster:
        yield cluster


def _cluster_name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def etcd_factory(etcd: EtcdCluster) -> StoreFactory:
    @contextlib.asynccontextmanager
    async def factory() -> AsyncIterator[StoreHarness]:
        name = _cluster_name()
        store = EtcdStore(etcd.endpoints, cluster=name)

        @contextlib.asynccontextmanager
        async def another() -> AsyncIterator[Store]:
            other = EtcdStore(etcd.endpoints, cluster=name)
            try:
                yield other
            finally:
                await other.close()

        async def suspend(session: Session) -> None:
            assert isinstance(session, EtcdSession)
            session.pause_keepalive()

        async def compact() -> None:
            await asyncio.to_thread(etcd.compact)

        try:
            yield StoreHarness(
                store=store,
                another_client=another,
                ttl=1.0,
                timeout=WAIT,
                suspend=suspend,
                compact=compact,
            )
        finally:
            await store.close()

    return factory


# etcd has no "owner died" signal besides lease expiry, which
# test_keepalive_stopped_* covers; probe() cannot end a live lease, so the
# owner-death check does not apply to this adapter.
ETCD_CHECKS = [c for c in CHECKS if c is not check_owner_death_ends_session_on_probe]


@pytest.mark.parametrize("check", ETCD_CHECKS, ids=[c.__name__ for c in ETCD_CHECKS])
async def test_contract(
    etcd: EtcdCluster, check: Callable[[StoreFactory], Awaitable[None]]
) -> None:
    await check(etcd_factory(etcd))


class _Collector:
    """Consumes a watch in a task; waits on conditions with a bound."""

    def __init__(self, iterator: AsyncIterator[WatchItem]) -> None:
        self.iterator = iterator
        self.events: list[Event] = []
        self.items: list[WatchItem] = []
        self.changed = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        async for item in self.iterator:
            self.items.append(item)
            if isinstance(item, Changes):
                self.events.extend(item.events)
            self.changed.set()

    async def until(self, predicate: Callable[[], bool], within: float = WAIT) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                if self.task.done():
                    self.task.result()
                    raise AssertionError("watch ended")
                self.changed.clear()
                await self.changed.wait()

    async def aclose(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def test_keepalive_stopped_keys_gone_within_ttl_plus_one_second(etcd: EtcdCluster) -> None:
    async with contextlib.AsyncExitStack() as stack:
        store = EtcdStore(etcd.endpoints, cluster=_cluster_name())
        stack.push_async_callback(store.close)
        session = await store.open_session("hung", b"", 1.0)
        assert isinstance(session, EtcdSession) and session.ttl == 1
        await session.apply([Put(key="g/1", value=b"x"), Put(key="g/2", value=b"y")])
        start = await store.snapshot("")
        watcher = _Collector(store.watch("", start.revision))
        stack.push_async_callback(watcher.aclose)
        session.pause_keepalive()
        stopped = time.monotonic()
        await watcher.until(lambda: len([e for e in watcher.events if e.kind == "delete"]) == 3)
        elapsed = time.monotonic() - stopped
        deletes = [e for e in watcher.events if e.kind == "delete"]
        assert {e.key for e in deletes} == {"g/1", "g/2", "nodes/hung"}
        assert {e.session for e in deletes} == {None}  # no prev_kv asked for
        assert len({e.revision for e in deletes}) == 1
        assert elapsed <= session.ttl + 1.0, f"keys outlived the lease: {elapsed:.2f}s"
        async with asyncio.timeout(WAIT):
            assert await session.wait_ended() == "expired"
        with pytest.raises(SessionEnded):
            await session.apply([Put(key="g/3", value=b"z")])


async def test_lease_revoked_by_operator_reports_revoked(etcd: EtcdCluster) -> None:
    store = EtcdStore(etcd.endpoints, cluster=_cluster_name())
    try:
        session = await store.open_session("victim", b"", 3.0)
        await asyncio.to_thread(etcd.revoke_lease, int(session.id, 16))
        with pytest.raises(SessionEnded):
            await session.apply([Put(key="k", value=b"v")])
        async with asyncio.timeout(WAIT):
            assert await session.wait_ended() == "revoked"
        assert not (await store.snapshot("")).entries
    finally:
        await store.close()


async def test_put_to_watch_latency_is_small(etcd: EtcdCluster) -> None:
    store = EtcdStore(etcd.endpoints, cluster=_cluster_name())
    try:
        session = await store.open_session("fast", b"", 5.0)
        start = await store.snapshot("l/")
        iterator = store.watch("l/", start.revision)
        await session.apply([Put(key="l/warm", value=b"")])
        async with asyncio.timeout(WAIT):
            await anext(iterator)  # the stream is open from here on
        samples = []
        for i in range(50):
            began = time.perf_counter()
            await session.apply([Put(key=f"l/{i}", value=b"x")])
            async with asyncio.timeout(WAIT):
                await anext(iterator)
            samples.append(time.perf_counter() - began)
        samples.sort()
        median, p95 = samples[len(samples) // 2], samples[int(len(samples) * 0.95)]
        print(f"put-to-watch latency: median {median * 1e3:.2f} ms, p95 {p95 * 1e3:.2f} ms")
        assert median < 0.1
        await iterator.aclose()  # type: ignore[attr-defined]
    finally:
        await store.close()


async def test_dead_first_endpoint_fails_over_to_the_next(etcd: EtcdCluster) -> None:
    with contextlib.closing(__import__("socket").socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused
        store = EtcdStore([dead, etcd.endpoint], cluster=_cluster_name(), timeout=WAIT)
        try:
            session = await store.open_session("n", b"", 2.0)
            revision = await session.apply([Put(key="a", value=b"1"), Delete(key="b")])
            assert (await store.snapshot("")).revision >= revision
        finally:
            await store.close()


async def test_unreachable_store_raises_store_unavailable_within_deadline() -> None:
    endpoints = ["127.0.0.1:9", "127.0.0.1:19"]
    store = EtcdStore(endpoints, timeout=0.5, attempt_timeout=0.2, watch_give_up=0.5)
    try:
        operations: list[Callable[[], Awaitable[object]]] = [
            lambda: store.snapshot(""),
            lambda: store.open_session("n", b"", 1.0),
            lambda: anext(store.watch("", 0)),
        ]
        for operation in operations:
            began = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                await operation()
            assert time.monotonic() - began < 5.0
            assert all(e in str(caught.value) for e in endpoints), caught.value
    finally:
        await store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.snapshot("")


def test_from_url_reads_endpoints_and_options(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"not checked until dialling")
    store = EtcdStore.from_url(
        f"etcd://h1:1,h2,[::1]:3/?cluster=prod&timeout=2.5&ca={ca}&user=u&password=p%26w"
    )
    assert store.endpoints == ("h1:1", "h2:2379", "[::1]:3")
    assert store.cluster == "prod"


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:1",
        "etcd://",
        "etcd://h:99999",
        "etcd://h:1?clustr=x",
        "etcd://h:1?cluster=a&cluster=b",
        "etcd://h:1?timeout=-1",
        "etcd://h:1?cert=/c.pem",
        "etcd://h:1?user=u",
        "etcd://h:1?ca=/nonexistent/ca.pem",
        "etcd://h:1/path",
    ],
)
def test_from_url_refuses_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        EtcdStore.from_url(url)


async def test_closing_the_store_while_a_watch_is_being_opened_ends_that_watch(
        etcd: EtcdCluster) -> None:
    """A watch whose stream is still being opened when the store closes must
    end, not open its stream on a channel dialled anew after the close (which
    nobody would ever close: the watch would hang for good)."""
    store = EtcdStore(etcd.endpoints, cluster=_cluster_name())
    conn = store._conns[0]
    opening = asyncio.Event()
    release = asyncio.Event()
    real_open = conn.open_watch

    async def held_open(prefix: bytes, start: int, seconds: float) -> Any:
        opening.set()
        await release.wait()
        return await real_open(prefix, start, seconds)

    conn.open_watch = held_open  # type: ignore[method-assign]

    async def consume() -> None:
        async for _ in store.watch("", 0):
            pass

    watcher = asyncio.ensure_future(consume())
    await asyncio.wait_for(opening.wait(), 5)
    await store.close()
    release.set()
    await asyncio.wait_for(watcher, 5)
    assert conn._channel is None  # nothing dialled after the close
