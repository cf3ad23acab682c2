"""The harness and helpers of the store contract suite (``store_contract.py``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from shoal.store.base import Entry, Session, Store
from shoal.testing.clock import ManualClock
from shoal.testing.view import WatchFollower

__all__ = ["Hook", "ManualClock", "StoreFactory", "StoreHarness", "Unsupported", "Watcher",
           "bounded", "expect", "pass_time", "watching"]

Hook = Callable[[Session], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class StoreHarness:
    """What an adapter gives the contract suite.

    Attributes:
        store: a fresh, empty store client.
        another_client: opens a second client on the same data (another node).
        ttl: session TTL the expiry checks use (short, but above the adapter's floor).
        timeout: bound in seconds on every wait of a check.
        advance: move the adapter's injected clock forward (``None``: real time).
        suspend: stop a session's keepalive as a hung owner would.
        kill_owner: make a session's owner die without closing it.
        compact: make the store forget its whole change history.
    """

    store: Store
    another_client: Callable[[], AbstractAsyncContextManager[Store]]
    ttl: float = 1.0
    timeout: float = 5.0
    advance: Callable[[float], Awaitable[None]] | None = None
    suspend: Hook | None = None
    kill_owner: Hook | None = None
    compact: Callable[[], Awaitable[None]] | None = None


StoreFactory = Callable[[], AbstractAsyncContextManager[StoreHarness]]
"""Returns an async context manager yielding a harness around an empty store."""


class Unsupported(Exception):
    """The harness lacks a hook that a check needs; the check did nothing."""


# --- helpers ---------------------------------------------------------------


class Watcher(WatchFollower):
    """A follower whose waits use the harness's bound."""

    def __init__(
        self,
        store: Store,
        prefix: str,
        revision: int,
        timeout: float,
        entries: Mapping[str, Entry] | None = None,
    ) -> None:
        super().__init__(store, prefix, revision, entries)
        self._timeout = timeout

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        await self.wait_until(predicate, what, self._timeout)

    async def reach(self, revision: int) -> None:
        await self.wait_revision(revision, self._timeout)


@contextlib.asynccontextmanager
async def watching(store: Store, prefix: str, h: StoreHarness) -> AsyncIterator[Watcher]:
    snap = await store.snapshot(prefix)
    w = Watcher(store, prefix, snap.revision, h.timeout, dict(snap.entries))
    try:
        yield w
    finally:
        await w.aclose()


async def bounded(h: StoreHarness, aw: Awaitable[Any]) -> Any:
    async with asyncio.timeout(h.timeout):
        return await aw


async def pass_time(h: StoreHarness, seconds: float) -> None:
    if h.advance is not None:
        await h.advance(seconds)
    else:
        await asyncio.sleep(seconds)  # nothing must happen meanwhile; no event to wait on


async def expect(exc: type[BaseException], aw: Awaitable[Any]) -> BaseException:
    try:
        await aw
    except exc as caught:
        return caught
    raise AssertionError(f"expected {exc.__name__}")


# --- the checks ---------------------------------------------------------------
# Each check takes the adapter's factory and raises AssertionError on a breach.
