"""WatchView: a local copy of the keys under a prefix, fed by a watch.

Owns the consumer's side of Rule 3 of :mod:`shoal.store.base`: start from a
snapshot, apply each :class:`Changes`, *replace* everything on a
:class:`Resync`. Every item is checked before it is applied, so a store that
breaks the order (an event at or below the view's revision, revisions going
back inside a batch, a ``Changes.revision`` that is not its last event's, a
Resync from the past) is caught where it happens instead of silently
corrupting a membership cache. The contract suite checks adapters with it.

:class:`WatchView` is pure (no IO, no asyncio); :class:`WatchFollower` runs
one watch in a task it owns and lets a caller wait, with a bound, until the
view satisfies a condition (tests of every layer wait on it, never sleep).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

from shoal.store.base import Changes, Entry, Event, Snapshot, Store, WatchItem

__all__ = ["WatchFollower", "WatchOrderError", "WatchView"]


class WatchOrderError(AssertionError):
    """A store delivered watch items that break Rule 3 (an adapter bug)."""


class WatchView:
    """The keys under one prefix as of ``revision``.

    Args:
        revision: the revision the initial entries are consistent at.
        entries: the initial entries (usually ``snapshot.entries``).
    """

    def __init__(self, revision: int, entries: Mapping[str, Entry] | None = None) -> None:
        # Invariant: ``view`` is the store's content under the prefix at ``position``.
        self.view: dict[str, Entry] = dict(entries or {})
        self.position = revision
        self.events: list[Event] = []
        self.resyncs = 0

    @classmethod
    def of(cls, snapshot: Snapshot) -> WatchView:
        """A view starting from a snapshot.

        Args:
            snapshot: from ``store.snapshot(prefix)``.

        Returns:
            The view; watch from ``view.position``.
        """
        return cls(snapshot.revision, snapshot.entries)

    def apply(self, item: WatchItem) -> None:
        """Check one watch item against the view's position and apply it.

        Args:
            item: the next item of a watch started at this view's position.

        Raises:
            WatchOrderError: the item breaks the order rules; the view is unchanged.
        """
        if isinstance(item, Changes):
            self._check(item)
            for ev in item.events:
                self.events.append(ev)
                if ev.value is not None and ev.session is not None:  # a put (_check)
                    self.view[ev.key] = Entry(
                        key=ev.key, value=ev.value, session=ev.session, revision=ev.revision
                    )
                else:
                    self.view.pop(ev.key, None)
            self.position = item.revision
        else:
            if item.snapshot.revision < self.position:
                raise WatchOrderError(
                    f"Resync at {item.snapshot.revision} goes back from {self.position}"
                )
            self.resyncs += 1
            self.view = dict(item.snapshot.entries)
            self.position = item.snapshot.revision

    def _check(self, item: Changes) -> None:
        if not item.events:
            raise WatchOrderError("empty Changes")
        if item.revision != item.events[-1].revision:
            raise WatchOrderError(f"Changes.revision {item.revision} is not its last event's")
        last = self.position
        for ev in item.events:
            if ev.revision <= self.position:
                raise WatchOrderError(f"event {ev} at or below the view's {self.position}")
            if ev.revision < last:
                raise WatchOrderError(f"revisions go back inside {item}")
            if (ev.kind == "put") != (ev.value is not None):
                raise WatchOrderError(f"{ev.kind} event with value {ev.value!r}")
            if (ev.kind == "put") != (ev.session is not None):  # base Rule 3b
                raise WatchOrderError(f"{ev.kind} event with session {ev.session!r}")
            last = ev.revision


class WatchFollower(WatchView):
    """A WatchView kept current by a task consuming ``store.watch``.

    Create it inside a running event loop; the task is owned by the follower
    and ends at :meth:`aclose` or when the watch ends.

    Args:
        store: the store to watch.
        prefix: key prefix to follow.
        revision: the revision ``entries`` are consistent at.
        entries: the initial entries.
    """

    def __init__(
        self, store: Store, prefix: str, revision: int, entries: Mapping[str, Entry] | None = None
    ) -> None:
        super().__init__(revision, entries)
        self.finished = False
        self._iter = store.watch(prefix, revision)
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="shoal-follow")

    @classmethod
    async def start(cls, store: Store, prefix: str) -> WatchFollower:
        """Follow ``prefix`` from a fresh snapshot.

        Args:
            store: the store to watch.
            prefix: key prefix to follow.

        Returns:
            The running follower.
        """
        snap = await store.snapshot(prefix)
        return cls(store, prefix, snap.revision, snap.entries)

    async def _run(self) -> None:
        try:
            async for item in self._iter:
                self.apply(item)
                self._changed.set()
        finally:
            self.finished = True
            self._changed.set()

    async def wait_until(self, predicate: Callable[[], bool], what: str, timeout: float) -> None:
        """Wait until ``predicate()`` holds for the view.

        Args:
            predicate: checked after every applied item.
            what: what is awaited, for the error message.
            timeout: bound in seconds.

        Raises:
            TimeoutError: the bound passed first (the message names ``what``).
            WatchOrderError, StoreError: the watch failed; re-raised here.
            EOFError: the watch ended first.
        """
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    if self._task.done():
                        self._task.result()
                        raise EOFError(f"watch ended while waiting for {what}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            last = self.events[-5:]
            raise TimeoutError(
                f"timed out after {timeout}s waiting for {what}; last {last}"
            ) from None

    async def wait_revision(self, revision: int, timeout: float) -> None:
        """Wait until the view is at ``revision`` or later.

        Args:
            revision: the revision to reach.
            timeout: bound in seconds.

        Raises:
            TimeoutError: the bound passed first.
        """
        await self.wait_until(lambda: self.position >= revision, f"revision {revision}", timeout)

    async def aclose(self) -> None:
        """Stop following and close the watch. Idempotent."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        aclose = getattr(self._iter, "aclose", None)
        if aclose is not None:
            await aclose()
